"""Set-up of a new pretraining run: the model config, the tokenizer and the device."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..config import Config
from ..errors import PlmlabError
from ..presets import get_preset
from .options import PretrainOptions


def build_config(o: PretrainOptions) -> Config:
    """preset, then the config file's fields, then overrides, then --vocab-size."""
    if o.preset is None and o.config_file is None:
        raise PlmlabError("pass --preset NAME (plmlab info --list shows them) or --config FILE")
    fields = get_preset(o.preset).to_dict() if o.preset else {}
    if o.config_file:
        fields.update(read_config_file(o.config_file))
    fields.update(o.overrides)
    if o.vocab_size is not None:
        fields["vocab_size"] = o.vocab_size
    return Config.from_dict(fields)


def read_config_file(path: str) -> dict:
    """A JSON or YAML object of Config fields."""
    data = read_json_or_yaml(path, "config file")
    if not isinstance(data, dict):
        raise PlmlabError(f"{path}: expected an object of Config fields")
    return data


def read_json_or_yaml(path: str, what: str):
    """The value a .json / .yaml / .yml file holds; one-line errors for unreadable or bad files."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise PlmlabError(f"cannot read {what} {path}: {e.strerror}") from None
    if path.endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError:
            raise PlmlabError(f"{path}: reading YAML needs PyYAML (pip install pyyaml); or write JSON") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise PlmlabError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    else:
        try:
            data = json.loads(text)
        except ValueError as e:
            raise PlmlabError(f"{path}: invalid JSON ({e})") from None
    return data


def make_tokenizer(o: PretrainOptions, config: Config, documents: list[list[str]]):
    """The run's tokenizer: --tokenizer DIR, else one of the preset's style trained on the corpus
    (the built-in corpus's is cached); its ids must fit the model's vocabulary."""
    from ..tokenizers import builtin_tokenizer, load_tokenizer, train_tokenizer

    if o.tokenizer:
        tokenizer = load_tokenizer(o.tokenizer)
    elif not o.corpus:
        tokenizer = builtin_tokenizer(config.tokenizer, config.vocab_size)
    else:
        tokenizer = train_tokenizer((s for doc in documents for s in doc), config.tokenizer, config.vocab_size)
    if tokenizer.vocab_size > config.vocab_size:
        raise PlmlabError(f"tokenizer has {tokenizer.vocab_size} ids but the model's vocabulary has "
                          f"{config.vocab_size} (pass --vocab-size {tokenizer.vocab_size})")
    return tokenizer


def choose_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise PlmlabError(f"unknown device {name!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PlmlabError("--device cuda, but this torch build or machine has no CUDA device")
    return device
