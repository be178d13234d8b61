"""Loading a tokenizer directory written by plmlab or by transformers, a bare tokenizer.json,
or a BERT vocab.txt-only folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import tokenizers as hf
from tokenizers import normalizers, pre_tokenizers

from plmlab.errors import PlmlabError, not_found, warn
from plmlab.tokenizers.styles import ROLES, STYLES, post_processor
from plmlab.tokenizers.tokenizer import Tokenizer, guess_roles
from plmlab.tokenizers.wordpiece import token_text, wordpiece_from_vocab


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Load a directory written by :meth:`Tokenizer.save` or by transformers (``tokenizer.json``
    plus optional config files), a bare ``tokenizer.json``, a BERT ``vocab.txt``-only folder, or a
    training run directory (its ``final/``)."""
    if not isinstance(path, (str, os.PathLike)):
        raise PlmlabError(f"load_tokenizer takes a directory or tokenizer.json path, not {type(path).__name__}")
    if not Path(path).exists():
        raise not_found(path, "tokenizer directory or tokenizer.json")
    path = Path(path)
    if path.is_file() and path.suffix == ".json":
        return Tokenizer(_read_backend(path))
    if not path.is_dir():
        raise PlmlabError(f"{path}: not a tokenizer directory or tokenizer.json")
    if not (path / "tokenizer.json").is_file() and (path / "final" / "tokenizer.json").is_file():
        path = path / "final"  # a training run directory: its final model's tokenizer (as --model takes it)
    config = read_json(path / "tokenizer_config.json")
    if (path / "tokenizer.json").is_file():
        backend = _read_backend(path / "tokenizer.json")
    elif (path / "vocab.txt").is_file():
        backend = wordpiece_from_vocab(path / "vocab.txt", config)
        config = {"tokenizer_class": "BertTokenizerFast", "do_lower_case": True, **config}
    else:
        raise PlmlabError(f"no tokenizer.json or vocab.txt in {path}")
    style, roles = _style_and_roles(config, read_json(path / "special_tokens_map.json"), backend)
    ours = config.get("plmlab") if isinstance(config.get("plmlab"), dict) else {}
    options = ours.get("options")
    if not isinstance(options, dict):  # a transformers directory: read the family's flags
        hf_options = STYLES[style].hf_options if style in STYLES else {}
        options = {opt: config[key] for key, opt in hf_options.items() if key in config}
        _follow_class_flags(backend, style, config)
    max_len = config.get("model_max_length")
    # As transformers reads it: the config's value, never the truncation a tokenizer.json stores;
    # absent or 1e30 (transformers' "no limit"): None.
    max_len = max_len if isinstance(max_len, int) and 0 < max_len < 10**9 else None
    if isinstance(ours.get("style"), str) and style in STYLES:
        _current_template(backend, style, options, path)
    return Tokenizer(backend, style, roles, max_len, options, chat_template=_chat_template(config, path))


def _follow_class_flags(backend: hf.Tokenizer, style: str, config: dict) -> None:
    """Where tokenizer_config.json's flags and tokenizer.json disagree, transformers' family class
    follows the flags, or its defaults where a flag is absent (transformers 4 and 5 alike):
    BertTokenizer's normaliser takes do_lower_case (default true), strip_accents and
    tokenize_chinese_chars; GPT-2's, RoBERTa's and BART's ByteLevel pre-tokenizer takes
    add_prefix_space (default false). So does this tokenizer, to give transformers' ids."""
    if style == "bert" and isinstance(backend.normalizer, normalizers.BertNormalizer):
        backend.normalizer.lowercase = bool(config.get("do_lower_case", True))
        backend.normalizer.strip_accents = config.get("strip_accents")
        backend.normalizer.handle_chinese_chars = bool(config.get("tokenize_chinese_chars", True))
    elif style in ("gpt2", "roberta", "bart") and isinstance(backend.pre_tokenizer, pre_tokenizers.ByteLevel):
        backend.pre_tokenizer.add_prefix_space = bool(config.get("add_prefix_space", False))


def _chat_template(config: dict, folder: Path) -> str | None:
    """The template where transformers reads it: tokenizer_config.json's ``chat_template`` (a
    string, or a list of named ones: "default" is taken), else a chat_template.jinja file."""
    found = config.get("chat_template")
    if isinstance(found, list):
        named = {t.get("name"): t.get("template") for t in found if isinstance(t, dict)}
        found = named.get("default")
    if not isinstance(found, str) and (folder / "chat_template.jinja").is_file():
        found = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    return found if isinstance(found, str) and found else None


def _current_template(backend: hf.Tokenizer, style: str, options: dict, where: Path) -> None:
    """Give a tokenizer saved by an older plmlab today's template for its style, with a warning
    (GLM's used to end every encoded prompt with <|endoftext|>): what `encode` adds must not
    depend on when the directory was written. Saving it again updates the directory."""
    spec = STYLES[style]
    try:
        expected = post_processor(spec, backend, {**spec.options, **options})
    except (KeyError, TypeError, ValueError):  # specials missing: not ours to repair
        return
    current = backend.post_processor
    if current is not None and current.__getstate__() == expected.__getstate__():
        return
    backend.post_processor = expected
    warn(f"{where}: this {style} tokenizer was saved by an older plmlab and adds other special tokens "
         "than plmlab does today; using today's (save it again to update the directory)")


def read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise PlmlabError(f"{path}: not valid JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise PlmlabError(f"{path}: expected a JSON object")
    return data


def _read_backend(path: Path) -> hf.Tokenizer:
    try:
        return hf.Tokenizer.from_file(str(path))
    except Exception as e:  # the Rust side raises plain Exception for any parse error
        reason = (str(e).splitlines() or ["unreadable"])[0]
        raise PlmlabError(f"{path}: not a valid tokenizer.json ({reason})") from None


def _style_and_roles(config: dict, special_map: dict, backend: hf.Tokenizer) -> tuple[str, dict[str, str]]:
    ours = config.get("plmlab") if isinstance(config.get("plmlab"), dict) else {}
    roles = ours.get("special_tokens") if isinstance(ours.get("special_tokens"), dict) else None
    if roles is None:
        roles = guess_roles(backend)
        for role in ROLES:
            text = token_text(config.get(f"{role}_token", special_map.get(f"{role}_token")))
            if text is not None:
                roles[role] = text
            elif f"{role}_token" in config:  # explicitly null in the config
                roles.pop(role, None)
    style = ours.get("style")
    if not isinstance(style, str):
        cls = str(config.get("tokenizer_class", "")).lower()
        known = ("roberta", "albert", "bart", "bert", "gpt2", "llama", "t5")  # "roberta" before "bert"
        style = next((s for s in known if cls.startswith(s)), "custom")
    return style, {r: t for r, t in roles.items() if isinstance(t, str)}
