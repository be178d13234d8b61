"""`--init-from DIR`: a new pretraining run that starts from another run's weights.

Unlike `--resume` (the same run, continued: its optimizer, schedule, step and data cursor),
a run initialised from DIR is a new run: a fresh optimizer, schedule, step counter and data
order, and its own options -- typically another objective (ERNIE 1.0's basic -> phrase ->
entity masking stages, Sun et al. 2019 section 3.2, each starting from the previous stage's
model). What it takes from DIR:

    weights    DIR's model (a run dir -> its final/, else its newest complete checkpoint;
               a checkpoint dir; any Hugging Face dir plmlab loads; safetensors only)
    config     DIR's; a --preset / --config / Config override given too must agree on every
               architecture field; an explicit override of another field (`NOT_ARCHITECTURE`:
               dropout, ...) applies
    tokenizer  DIR's; a --tokenizer given too must have the same vocabulary

With `--resume` as well, resume wins when `out` holds a run (it continues; the run keeps the
source it started from); otherwise a new run starts from DIR.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import Config
from ..errors import PlmlabError
from ..hf import load_config, load_pretrained, resolve_dir
from ..hf.manifest import MANIFEST, sha256_file
from ..tokenizers import load_tokenizer
from .options import PretrainOptions
from .setup import build_config, read_config_file

# Config fields that do not change the network's weights or what it computes at evaluation:
# a later stage may set them anew (dropout for the new objective; ids come from the tokenizer;
# XLM's language names label rows the source already has).
NOT_ARCHITECTURE = frozenset({"dropout", "attn_dropout", "classifier_dropout", "init_std", "scaled_residual_init",
                              "notes", "pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id",
                              "tokenizer", "languages"})


@dataclass(frozen=True)
class InitSource:
    folder: Path  # the checkpoint directory the weights come from
    manifest_sha256: str | None  # of its manifest.json (trainer checkpoints have one)
    config: Config

    def record(self, given: str) -> dict:
        """What the new run's metadata says about where it started."""
        return {"path": given, "folder": str(self.folder.resolve()), "manifest_sha256": self.manifest_sha256}


def find_source(path: str) -> InitSource:
    """The checkpoint behind `path` and its config (one line if there is none)."""
    folder = resolve_dir(path)
    if not any(folder.glob("*.safetensors")):
        raise PlmlabError(f"--init-from {path}: no *.safetensors weights in {folder} (plmlab reads safetensors only)")
    manifest = folder / MANIFEST
    return InitSource(folder, sha256_file(manifest) if manifest.is_file() else None, load_config(folder))


def init_config(o: PretrainOptions, source: InitSource) -> Config:
    """The source's config. A given preset / config file / override is checked against it on every
    architecture field; of what the config file and overrides set explicitly, the fields outside
    the architecture (dropout, ...) apply."""
    fields = source.config.to_dict()
    explicit = {**(read_config_file(o.config_file) if o.config_file else {}), **o.overrides}
    if o.preset is not None or o.config_file is not None:
        given = build_config(o).to_dict()
    else:
        given = {**fields, **explicit, **({"vocab_size": o.vocab_size} if o.vocab_size is not None else {})}
    for name, value in given.items():
        if name not in NOT_ARCHITECTURE and fields.get(name) != value:
            raise PlmlabError(f"--init-from {o.init_from}: the model there has {name}={fields.get(name)!r}, but the "
                              f"given config has {name}={value!r}; drop --preset / --config / the override "
                              "or make them agree")
    return Config.from_dict({**fields, **{k: v for k, v in explicit.items() if k in NOT_ARCHITECTURE}})


def init_tokenizer(o: PretrainOptions, source: InitSource, config: Config):
    """The source's tokenizer; a given --tokenizer must have the same vocabulary."""
    has_own = (source.folder / "tokenizer.json").is_file() or (source.folder / "vocab.txt").is_file()
    ours = load_tokenizer(source.folder) if has_own else None
    given = load_tokenizer(o.tokenizer) if o.tokenizer else None
    if ours is None and given is None:
        raise PlmlabError(f"--init-from {o.init_from}: {source.folder} holds no tokenizer; pass --tokenizer DIR "
                          "(the one the model was trained with)")
    if ours is not None and given is not None and ours.backend.get_vocab() != given.backend.get_vocab():
        raise PlmlabError(f"--tokenizer {o.tokenizer} has another vocabulary than the model of --init-from "
                          f"{o.init_from} ({given.vocab_size} vs {ours.vocab_size} ids); drop --tokenizer")
    tokenizer = ours or given
    if tokenizer.vocab_size > config.vocab_size:
        raise PlmlabError(f"--tokenizer {o.tokenizer} has {tokenizer.vocab_size} ids but the model of --init-from "
                          f"{o.init_from} has {config.vocab_size}")
    return tokenizer


def load_source_weights(model, source: InitSource) -> None:
    """Copy the source's weights into the freshly built model (same config: every key matches)."""
    model.load_state_dict(load_pretrained(source.folder).state_dict())
