"""Load and save checkpoints in the Hugging Face layout (or plmlab's own, for architectures
that no Hugging Face class represents).

`config.json` always carries our full Config under the key "plmlab", so a round trip through
the HF layout loses nothing (transformers ignores the extra key); the HF fields win when both
are present, so a hand-edited HF config is honoured.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from ..config import Config
from ..errors import PlmlabError, not_found
from ..modeling import check_fits
from ..models import SKELETONS, PretrainedModel
from ..registry import import_present
from .adapter import Adapter
from .hfconfig import HFConfig
from .io import SHARD_INDEX, SINGLE, CheckpointReader, iter_unique, read_json, write_json, write_safetensors
from .manifest import MANIFEST, CheckpointError, latest_complete, list_checkpoints, verify

# One module per family, each with `ADAPTERS: list[Adapter]`. Order matters when saving:
# the first adapter that can represent a config is used.
FAMILY_MODULES = ("gpt", "llama", "bert", "t5", "glm", "glm4", "mistral",
                  "distilbert", "xlm", "bart", "ernie")  # issue 15


ADAPTERS: dict[str, Adapter] = {
    a.model_type: a for module in import_present(__name__, FAMILY_MODULES) for a in module.ADAPTERS
}
NATIVE = "plmlab"
SOURCE_NOTE = "hf_model_type"  # Config.notes key: the model_type a foreign checkpoint came as
# a native config.json without these cannot say what shape its tensors have
NATIVE_REQUIRED = ("arch", "vocab_size", "d_model", "n_layers", "n_heads", "d_ff")
MAX_SHARD_BYTES = 5 * 1024**3


def resolve_dir(path: str | Path) -> Path:
    """A checkpoint directory, or a training run directory: its final/, else its newest
    checkpoint that verifies against its manifest (each one skipped is a warning on stderr)."""
    if not Path(path).exists():
        raise not_found(path, "checkpoint directory")
    path = Path(path)
    if (path / "config.json").is_file():
        if (path / MANIFEST).is_file():  # a trainer checkpoint named directly: it must verify
            try:
                verify(path)
            except CheckpointError as e:
                raise CheckpointError(f"{path}: {e} (to load it unchecked, delete its {MANIFEST})") from None
        return path
    if (path / "final" / "config.json").is_file():
        return path / "final"
    found = latest_complete(path / "checkpoints", ("config.json",),
                            on_skip=lambda why: print(f"plmlab: {path}: skipping checkpoint {why}", file=sys.stderr))
    if found is not None:
        return found[1]
    if list_checkpoints(path / "checkpoints"):
        raise PlmlabError(f"{path}: no checkpoint under checkpoints/ matches its manifest (see above); "
                          "none is complete enough to load")
    raise PlmlabError(f"{path}: no config.json (not a model checkpoint or training run directory)")


def load_config(path: str | Path) -> Config:
    path = resolve_dir(path)
    config, adapter = _config_and_adapter(path)
    if adapter is None:
        return config
    try:  # a config-only directory is fine here: nothing to refine from
        reader = CheckpointReader(path)
    except PlmlabError:
        return config
    return adapter.refine(config, reader)


def _config_and_adapter(path: Path) -> tuple[Config, Adapter | None]:
    source = path / "config.json"
    hf = HFConfig(read_json(source), source)
    model_type = hf.data.get("model_type")
    ours = hf.mapping(NATIVE) or {}
    if model_type == NATIVE:
        missing = [k for k in NATIVE_REQUIRED if k not in ours]
        if missing:
            raise hf.error(f"the plmlab config lacks {', '.join(missing)}")
        return _config(source, ours), None
    if not isinstance(model_type, str) or model_type not in ADAPTERS:
        raise PlmlabError(
            f"{path}: model_type {model_type!r} is not supported (plmlab reads {', '.join(sorted(ADAPTERS))})"
        )
    adapter = ADAPTERS[model_type]
    fields = adapter.config_from_hf(hf)
    fields.pop("notes", None)
    if not ours:  # a checkpoint from elsewhere: saving it again keeps its layout (a Mistral
        # without a window is LLaMA's network, but its user expects MistralForCausalLM back)
        fields["notes"] = {SOURCE_NOTE: model_type}
    return _config(source, {**ours, **fields}), adapter


def _config(source: Path, fields: dict) -> Config:
    """Config.from_dict, its one-line error naming the file it came from."""
    try:
        return Config.from_dict(fields)
    except PlmlabError as e:
        raise PlmlabError(f"{source}: {e}") from None


def load_pretrained(path: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> PretrainedModel:
    """A model in eval mode, with the head the checkpoint carries."""
    path = resolve_dir(path)
    config, adapter = _config_and_adapter(path)
    reader = CheckpointReader(path)
    if adapter is not None:
        config = adapter.refine(config, reader)
    check_fits(config, torch.device(device), f"{path}: the model")
    with torch.device(device):
        model = SKELETONS[config.arch](config)
    expected = model.state_dict()
    state = _native_state(reader) if adapter is None else _from_hf(reader, adapter, config)
    _check_complete(path, state, expected, model)
    model.load_state_dict(state, strict=False)
    model.tie_weights()
    return model.to(dtype=dtype).eval()


def _native_state(reader: CheckpointReader) -> dict[str, torch.Tensor]:
    return {k: reader.get(k) for k in reader.keys()}


def _from_hf(reader: CheckpointReader, adapter: Adapter, config: Config) -> dict[str, torch.Tensor]:
    keys = set(reader.keys())
    stored = {k: k for k in keys}  # our view of a key -> its name in the file
    if not any(k.startswith(adapter.prefix) for k in keys):  # a bare base model (e.g. GPT2Model)
        stored = {adapter.prefix + k: k for k in keys}
        keys = set(stored)
    state, used = {}, set()
    for rule in adapter.expanded_rules(config):
        if all(t in keys for t in rule.theirs):
            state[rule.ours] = rule.to_ours([reader.get(stored[t]) for t in rule.theirs], config)
            used.update(rule.theirs)
    unexpected = sorted(k for k in keys - used if not any(p in k for p in adapter.ignored))
    if unexpected:
        raise PlmlabError(
            f"{reader.path}: {len(unexpected)} tensor(s) plmlab does not know for {adapter.model_type}, "
            f"e.g. {', '.join(unexpected[:3])}"
        )
    return state


def _check_complete(path: Path, state: dict, expected: dict, model: PretrainedModel) -> None:
    tied = {"head.proj.weight"} if model.config.tie_embeddings else set()
    missing = sorted(k for k in expected if k not in state and k not in tied)
    if missing:
        raise PlmlabError(f"{path}: checkpoint lacks {len(missing)} tensor(s), e.g. {', '.join(missing[:3])}")
    for k, v in state.items():
        if k not in expected:
            raise PlmlabError(f"{path}: unexpected tensor {k}")
        if tuple(v.shape) != tuple(expected[k].shape):
            raise PlmlabError(
                f"{path}: tensor {k} has shape {tuple(v.shape)} but the config expects {tuple(expected[k].shape)}"
            )


# --- saving ----------------------------------------------------------------------------------
def choose_adapter(config: Config, keys=None) -> Adapter | None:
    """The layout a checkpoint was loaded from when it still fits, else the first that does.
    With the model's state `keys`, a layout that has no place for one of them does not fit."""
    def fits(adapter: Adapter | None) -> bool:
        return adapter is not None and adapter.mismatch(config) is None and not unmapped(adapter, config, keys or ())

    source = ADAPTERS.get(config.notes.get(SOURCE_NOTE))
    if fits(source):
        return source
    return next((adapter for adapter in ADAPTERS.values() if fits(adapter)), None)


def unmapped(adapter: Adapter, config: Config, keys) -> list[str]:
    """State keys the layout's table would silently drop (a module no family of it has, such as
    XLM's language embeddings under BERT's names); the tied output is stored once, by design."""
    ours = {rule.ours for rule in adapter.expanded_rules(config)}
    return sorted(k for k in keys if k not in ours and not (k == "head.proj.weight" and config.tie_embeddings))


def save_pretrained(model: PretrainedModel, path: str | Path, tokenizer=None, format: str = "auto") -> Path:
    """Write config.json + safetensors (+ tokenizer, generation config) to `path`.

    format: "auto" (Hugging Face layout when a family represents the config, else plmlab's),
    "hf" (error when none does), "plmlab", or a model_type naming one layout ("chatglm": the
    ChatGLM authors' keys rather than transformers' GlmForCausalLM).
    """
    if getattr(model, "quantized", None):  # its linear layers hold int8 packs, not weights
        raise PlmlabError("an int8-quantized model cannot be saved: save the fp32 model")
    if not isinstance(model, PretrainedModel):
        raise PlmlabError(f"save_pretrained takes a plmlab model (plmlab.build_model / load_pretrained), "
                          f"not {type(model).__name__}")
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file of that name, a read-only parent, a full disk
        raise PlmlabError(f"cannot write {path}: {e.strerror}") from None
    config = model.config
    state = model.state_dict()
    if format != NATIVE:
        _refuse_adapters(state)  # before a layout is chosen: none has a place for them
    adapter = None if format == NATIVE else ADAPTERS.get(format) or choose_adapter(config, state)
    if format in ADAPTERS and adapter.mismatch(config) is not None:
        raise PlmlabError(f"the {format} layout cannot represent this config: it needs {adapter.mismatch(config)}")
    if format in ADAPTERS and unmapped(adapter, config, state):
        raise PlmlabError(f"the {format} layout has no place for {', '.join(unmapped(adapter, config, state)[:3])}")
    if format == "hf" and adapter is None:
        reasons = "; ".join(f"{a.model_type}: needs {a.mismatch(config)}" for a in ADAPTERS.values())
        raise PlmlabError(f"no Hugging Face architecture represents this config ({reasons})")
    if adapter is None:
        tensors = dict(iter_unique(state))
        hf_config = {"model_type": NATIVE, "architectures": ["plmlab"]}
    else:
        tensors = _to_hf(state, adapter, config)
        hf_config = adapter.config_to_hf(config)
    dtype = next(iter(tensors.values())).dtype
    hf_config.update(dtype=str(dtype).removeprefix("torch."), **{NATIVE: config.to_dict()})
    _write_weights(tensors, path)
    write_json(hf_config, path / "config.json")
    gen = {k: getattr(config, k) for k in ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")
           if getattr(config, k) is not None}
    write_json(gen, path / "generation_config.json")
    if tokenizer is not None:
        tokenizer.save(path)
    return path


def _refuse_adapters(state: dict[str, torch.Tensor]) -> None:
    if any(k.endswith((".lora_A", ".lora_B")) or ".lora_A." in k or ".lora_B." in k for k in state):
        # the rule tables know the base weights only: saving would silently drop the adapters
        raise PlmlabError("the model carries LoRA adapters: merge them first (plmlab.nn.lora.merge_into_base) "
                          "or save them with plmlab.hf.peft.save_adapter")


def _to_hf(state: dict[str, torch.Tensor], adapter: Adapter, config: Config) -> dict[str, torch.Tensor]:
    out = {}
    for rule in adapter.expanded_rules(config):
        if rule.ours not in state:
            continue
        if rule.ours == "head.proj.weight" and config.tie_embeddings:
            continue  # tied weights are stored once, under the embedding's name
        for name, t in zip(rule.theirs, rule.to_theirs(state[rule.ours], config)):
            out[name] = t
    return out


def _write_weights(tensors: dict[str, torch.Tensor], path: Path) -> None:
    sizes = {k: v.numel() * v.element_size() for k, v in tensors.items()}
    if sum(sizes.values()) <= MAX_SHARD_BYTES:
        write_safetensors(tensors, path / SINGLE)
        (path / SHARD_INDEX).unlink(missing_ok=True)
        return
    shards: list[dict[str, torch.Tensor]] = [{}]
    used = 0
    for k, v in tensors.items():
        if used and used + sizes[k] > MAX_SHARD_BYTES:
            shards.append({})
            used = 0
        shards[-1][k] = v
        used += sizes[k]
    weight_map = {}
    for n, shard in enumerate(shards, 1):
        name = f"model-{n:05d}-of-{len(shards):05d}.safetensors"
        write_safetensors(shard, path / name)
        weight_map.update({k: name for k in shard})
    write_json({"metadata": {"total_size": sum(sizes.values())}, "weight_map": weight_map}, path / SHARD_INDEX)
    (path / SINGLE).unlink(missing_ok=True)
