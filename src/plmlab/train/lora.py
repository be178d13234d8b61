"""LoRA as an option of any Trainer task: `LoraOptions`, its flags, `apply_lora`, `lora_disabled`.

    parser -> add_lora_arguments(parser)          --lora-r --lora-alpha --lora-dropout --lora-targets
    args   -> lora_options(args)                  LoraOptions, or None without --lora-r
    model  -> apply_lora(model, options)          adapters on the targets, everything else frozen
           -> make_optimizer(model, ...)          AdamW over requires_grad params: adapter state only
    end    -> plmlab.hf.peft.save_adapter(model, DIR)   PEFT's adapter_config.json + safetensors

Target names: `attention` is every attention projection (plmlab's fused QKV `attn.qkv`, the
output `attn.o`, and T5's cross-attention `cross.q`, `cross.kv`, `cross.o`), `mlp` every
feed-forward projection (`mlp.up` or the fused gate/up `mlp.gate_up`, and `mlp.down`). Any other
name is a module-name suffix (`attn.qkv`, `layers.0.mlp.down`). Parameters named in `train_also`
(a fine-tune's new classifier head) stay trainable, as PEFT's `modules_to_save` do.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import re
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ..errors import PlmlabError
from ..hf import resolve_dir, save_pretrained
from ..hf.io import CheckpointReader
from ..hf.peft import merge_adapter, save_adapter
from ..nn.lora import LoRALinear, lora_layers, wrap
from .rundir import check_folder, write_aside, write_folder

ALIASES = {
    "attention": ("attn.qkv", "attn.o", "cross.q", "cross.kv", "cross.o"),
    "mlp": ("mlp.up", "mlp.gate_up", "mlp.down"),
}
FLAGS = ("lora_r", "lora_alpha", "lora_dropout", "lora_targets")  # the argparse dests this module adds


@dataclass(frozen=True)
class LoraOptions:
    r: int = 8  # rank of the update B A
    alpha: float = 16.0  # the update is scaled by alpha / r (Hu et al. 2021, section 4.1)
    dropout: float = 0.0  # dropout on the adapter's input
    targets: str = "attention,mlp"  # comma-separated aliases or module-name suffixes

    def __post_init__(self) -> None:
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r < 1:
            raise PlmlabError(f"--lora-r must be a positive integer, got {self.r!r}")
        if not isinstance(self.alpha, (int, float)) or not math.isfinite(self.alpha) or self.alpha <= 0:
            raise PlmlabError(f"--lora-alpha must be a positive number, got {self.alpha!r}")
        if not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise PlmlabError(f"--lora-dropout must be in [0, 1), got {self.dropout!r}")
        if not self.target_list():
            raise PlmlabError("--lora-targets names no module")

    def target_list(self) -> list[str]:
        return [t.strip() for t in str(self.targets).split(",") if t.strip()]


def add_lora_arguments(parser: argparse.ArgumentParser) -> None:
    """The four LoRA flags; LoRA is on when --lora-r is given. Values are checked by
    LoraOptions (one line, exit 2), so the CLI and the Python API refuse the same things."""
    d = LoraOptions()
    parser.add_argument("--lora-r", type=int, help="train LoRA adapters of this rank instead of every weight")
    parser.add_argument("--lora-alpha", type=float, default=d.alpha, help="LoRA scaling numerator: alpha / r")
    parser.add_argument("--lora-dropout", type=float, default=d.dropout, help="dropout on the adapters' input")
    parser.add_argument("--lora-targets", default=d.targets,
                        help="comma-separated: attention, mlp, or module-name suffixes such as attn.qkv")


def lora_options(args) -> LoraOptions | None:
    """The LoraOptions of parsed flags (None without --lora-r)."""
    if getattr(args, "lora_r", None) is None:
        return None
    return LoraOptions(args.lora_r, args.lora_alpha, args.lora_dropout, args.lora_targets)


def target_modules(model: nn.Module, options: LoraOptions) -> list[str]:
    """Names of the nn.Linear modules the targets select; none selected is an error."""
    suffixes = [s for t in options.target_list() for s in ALIASES.get(t, (t,))]
    linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and not isinstance(m, LoRALinear)]
    chosen = [n for n in linear if any(n == s or n.endswith("." + s) for s in suffixes)]
    if not chosen:
        shown = sorted({n.split(".", 3)[-1] if ".layers." in n else n for n in linear})
        raise PlmlabError(f"--lora-targets {options.targets!r} matches no linear layer of this model "
                          f"(use attention, mlp or a suffix of: {', '.join(shown)})")
    return chosen


def apply_lora(model: nn.Module, options: LoraOptions, train_also: tuple[str, ...] = ()) -> list[str]:
    """Freeze `model`, add adapters on the targets; only they (and `train_also`) train.

    `train_also`: parameter names kept trainable (a new head). Returns the adapted module names."""
    names = target_modules(model, options)
    for p in model.parameters():
        p.requires_grad_(False)
    wrap(model, names, options.r, options.alpha, options.dropout)
    params = dict(model.named_parameters())
    unknown = [n for n in train_also if n not in params]
    if unknown:
        raise ValueError(f"train_also names no parameter: {unknown}")
    for name in train_also:
        params[name].requires_grad_(True)
    return names


@contextlib.contextmanager
def lora_disabled(model: nn.Module):
    """The base model: every adapter off inside the block (DPO's frozen reference, for free)."""
    layers = list(lora_layers(model).values())
    before = [layer.enabled for layer in layers]
    for layer in layers:
        layer.enabled = False
    try:
        yield model
    finally:
        for layer, was in zip(layers, before):
            layer.enabled = was


def describe_lora(model: nn.Module) -> str:
    """One line, as PEFT's print_trainable_parameters, for the start of a LoRA run: the trainable
    parameters of the total (tied ones once), where the adapters are, and what else trains (a new
    head: PEFT's modules_to_save) -- so that a run shows it trains a small part of the model."""
    params = dict(model.named_parameters())
    trainable = sum(p.numel() for p in params.values() if p.requires_grad)
    total = sum(p.numel() for p in params.values())
    layers = lora_layers(model)
    targets = dict.fromkeys(re.sub(r"^(.*\.)?layers\.\d+\.", "", name) for name in layers)
    also = dict.fromkeys(n.rsplit(".", 1)[0] for n, p in params.items()
                         if p.requires_grad and not n.endswith((".lora_A", ".lora_B")))
    r = next(iter(layers.values())).r if layers else 0
    line = (f"LoRA: {trainable:,} trainable parameters of {total:,} ({100 * trainable / max(total, 1):.2f} %), "
            f"rank-{r} adapters on {', '.join(targets)} ({len(layers)} modules)")
    return line + (f"; also trained: {', '.join(also)}" if also else "")


def new_parameters(model: nn.Module, base: nn.Module) -> tuple[str, ...]:
    """Parameters of `model` that `base` has no same-shaped match for (a fine-tune's new head):
    the ones to keep trainable under LoRA."""
    theirs = base.state_dict()
    return tuple(n for n, p in model.named_parameters() if n not in theirs or theirs[n].shape != p.shape)


def save_adapter_dir(model: nn.Module, out: Path, base_model: str | None = None, tokenizer=None) -> Path:
    """OUT/adapter in PEFT's format, with the tokenizer (as TRL saves it beside an adapter: a chat
    template's tokens are part of the fine-tune), written aside and renamed into place (an earlier
    one is kept until the new one is complete)."""
    def write(tmp: Path) -> None:
        save_adapter(model, tmp, base_model=base_model)
        if tokenizer is not None:
            tokenizer.save(tmp)

    return write_aside(out / "adapter", write)


def merge_lora_dir(model_dir: str, adapter_dir: str, out: str, overwrite: bool = False) -> Path:
    """`plmlab merge-lora`: the merged model (hf.peft.merge_adapter) saved at `out` under the
    run-directory rules (train/rundir.write_folder); weights that came out NaN or infinite (an
    adapter's lora_alpha of NaN, corrupt adapter tensors) are refused, not written."""
    inputs = (resolve_dir(model_dir), Path(adapter_dir))
    check_folder(out, overwrite, inputs)  # refused before the work, not after it
    model, tokenizer = merge_adapter(model_dir, adapter_dir)
    bad = [name for name, t in model.state_dict().items() if t.is_floating_point() and not t.isfinite().all()]
    if bad:
        raise PlmlabError(f"merging {adapter_dir} gives non-finite weights in {len(bad)} tensors ({bad[0]}, ...); "
                          f"check its adapter_config.json (r, lora_alpha) and tensors; nothing written")
    return write_folder(out, lambda tmp: save_pretrained(model, tmp, tokenizer=tokenizer), overwrite, inputs)


def load_lora_checkpoint(model: nn.Module, folder: Path) -> None:
    """A trainer checkpoint of a LoRA run (plmlab layout: base weights + lora_A / lora_B) into
    `model`, which already carries its adapters (load_pretrained builds no adapters)."""
    reader = CheckpointReader(folder)
    missing, unexpected = model.load_state_dict({k: reader.get(k) for k in reader.keys()}, strict=False)
    tied = {"head.proj.weight"} if model.config.tie_embeddings else set()
    if unexpected or set(missing) - tied:
        shown = ", ".join((unexpected or sorted(set(missing) - tied))[:3])
        raise PlmlabError(f"{folder}: not a checkpoint of this LoRA run ({shown})")
    model.tie_weights()
