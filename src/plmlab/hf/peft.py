"""LoRA adapters in PEFT's format: `adapter_config.json` + `adapter_model.safetensors`.

    base_model.model.<transformers module name>.lora_A.weight   (r, in)
    base_model.model.<transformers module name>.lora_B.weight   (out, r)

Module names come from the same rule tables as the weights (hf/<family>.py): plmlab's
`decoder.layers.0.attn.qkv` is GPT-2's `transformer.h.0.attn.c_attn` and LLaMA's
`model.layers.0.self_attn.{q,k,v}_proj`. GPT-2 stores that weight transposed (Conv1D,
[in, out]), but PEFT keeps lora_A / lora_B in nn.Linear's layout there too and transposes
only when merging (`fan_in_fan_out`), so the adapter matrices copy unchanged.

Fused projections (plmlab's QKV and gate/up; transformers' separate q/k/v or gate/up):
    saving, exact: W_q + s B_q A, W_k + s B_k A, W_v + s B_v A   (B = [B_q; B_k; B_v] split by
        rows, the one A shared, same r and alpha): the per-projection updates are exactly the
        fused one's rows.
    loading, exact: a PEFT adapter with its own A_q, A_k, A_v (ranks r_q, r_k, r_v) becomes one
        adapter of rank r_q + r_k + r_v:   A = [A_q; A_k; A_v],  B = blockdiag(s_q B_q, s_k B_k, s_v B_v),
        scaling 1, so B A = [s_q B_q A_q; s_k B_k A_k; s_v B_v A_v]. Projections the adapter leaves
        out get zero rows. When every part has the same A (an adapter plmlab saved) it is fused
        back at rank r instead.
Head parameters trained alongside (PEFT's `modules_to_save`) are stored under
`base_model.model.<transformers key>` and loaded into the model's weights.

A fine-tune's model is not its base model: a classifier head with its labels where the MLM head
was, a vocabulary grown by a chat template. PEFT leaves building it to its user
(`AutoModelForSequenceClassification(num_labels=...)`); plmlab saves that model's Config beside the
adapter (`plmlab_config.json`), so `merge_adapter` builds the fine-tuned architecture from the base
model's weights and the adapter's own.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import torch
from safetensors import SafetensorError

from ..config import Config
from ..errors import PlmlabError
from ..modeling import build_model, copy_matching
from ..nn.lora import lora_layers, merge_into_base, wrap
from ..tokenizers import load_tokenizer
from . import choose_adapter, load_pretrained, resolve_dir
from .adapter import Adapter, Rule, _cat, _uncopy, _untranspose
from .io import _open, read_json, write_json, write_safetensors

CONFIG, WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
MODEL_CONFIG = "plmlab_config.json"  # the Config of the model the adapter was trained in
PREFIX = "base_model.model."
# PEFT's task_type picks its PeftModelFor* wrapper; a fine-tune's classifier decides first
TASK_TYPES = {"sequence": "SEQ_CLS", "token": "TOKEN_CLS", "decoder": "CAUSAL_LM", "encoder-decoder": "SEQ_2_SEQ_LM"}


def _family(model) -> Adapter | None:
    return choose_adapter(model.config)


def _weight_rules(model) -> dict[str, Rule]:
    """Our parameter name -> the rule naming it in transformers' layout (identity without one)."""
    adapter = _family(model)
    if adapter is None:  # no transformers class: plmlab's own names
        return {k: Rule(k, (k,)) for k in model.state_dict()}
    return {r.ours: r for r in adapter.expanded_rules(model.config)}


def _theirs(rule: Rule, ours: str) -> list[str]:
    """The transformers module names of one adapted module (several for a fused projection)."""
    if len(rule.theirs) > 1 and rule.to_ours is not _cat:
        raise PlmlabError(f"{ours}: its transformers layout is not a row split; PEFT cannot hold its adapter")
    if len(rule.theirs) == 1 and rule.to_theirs not in (_uncopy, _untranspose):
        raise PlmlabError(f"{ours}: its transformers layout transforms the weight; PEFT cannot hold its adapter")
    return [t.removesuffix(".weight") for t in rule.theirs]


# --- saving ----------------------------------------------------------------------------------
def save_adapter(model, path: str | Path, base_model: str | None = None) -> Path:
    """Write `model`'s adapters (and its other trainable parameters) in PEFT's format."""
    layers = lora_layers(model)
    if not layers:
        raise PlmlabError("the model has no LoRA adapters to save")
    rules, config = _weight_rules(model), model.config
    tensors, ranks, alphas, transposed = {}, {}, {}, False
    for ours, layer in layers.items():
        rule = rules.get(ours + ".weight")
        if rule is None:
            raise PlmlabError(f"{ours}: no transformers name for this module; its adapter cannot be saved")
        names = _theirs(rule, ours)
        transposed |= rule.to_theirs is _untranspose
        parts = rule.to_theirs(layer.lora_B.detach(), config) if len(names) > 1 else [layer.lora_B.detach()]
        for name, b in zip(names, parts):  # the A matrix is shared by every part
            tensors[f"{PREFIX}{name}.lora_A.weight"] = layer.lora_A.detach().clone()  # (r, in), a copy each
            tensors[f"{PREFIX}{name}.lora_B.weight"] = b  # (out_part, r)
            ranks[name], alphas[name] = layer.r, layer.alpha
    extra = _saved_extras(model, rules)
    tensors.update({PREFIX + k: v for k, v in extra.items()})
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    write_safetensors(tensors, out / WEIGHTS)
    dropout = next(iter(layers.values())).lora_dropout
    write_json(_config_json(ranks, alphas, getattr(dropout, "p", 0.0), transposed, extra, config,
                            _base_path(base_model)), out / CONFIG)
    write_json(config.to_dict(), out / MODEL_CONFIG)
    return out


def _base_path(base_model: str | Path | None) -> str | None:
    """`base_model_name_or_path` as PEFT needs it to load the base by itself
    (`AutoPeftModelForCausalLM.from_pretrained(adapter)`): the directory transformers reads --
    a run directory's final/ (else the checkpoint plmlab loads), not the run directory -- and
    absolute, since PEFT resolves a relative path from the working directory, not from the
    adapter. It holds while the base stays where it is (the adapter may move); a name that is no
    local path (a Hub id) is kept as given."""
    if base_model is None or not Path(base_model).exists():
        return None if base_model is None else str(base_model)
    return str(resolve_dir(base_model).resolve())


def _saved_extras(model, rules: dict[str, Rule]) -> dict[str, torch.Tensor]:
    """Trainable non-adapter parameters (a new head) under their transformers keys."""
    out = {}
    for name, p in model.named_parameters():
        if not p.requires_grad or name.endswith((".lora_A", ".lora_B")):
            continue
        rule = rules.get(name)
        if rule is None:
            raise PlmlabError(f"{name}: trainable, but no transformers key names it; the adapter cannot hold it")
        out.update(zip(rule.theirs, rule.to_theirs(p.detach(), model.config)))
    return out


def _task_type(config) -> str | None:
    if config.classifier != "none":
        return TASK_TYPES.get(config.classifier)
    return TASK_TYPES.get(config.arch) if config.head == "lm" else None


def _config_json(ranks, alphas, dropout, transposed, extra, config, base_model) -> dict:
    r = Counter(ranks.values()).most_common(1)[0][0]
    alpha = Counter(alphas.values()).most_common(1)[0][0]
    return {
        "peft_type": "LORA", "task_type": _task_type(config),
        "base_model_name_or_path": base_model, "r": r, "lora_alpha": alpha, "lora_dropout": dropout,
        "target_modules": sorted(ranks), "fan_in_fan_out": transposed, "bias": "none",
        "modules_to_save": sorted({k.rsplit(".", 1)[0] for k in extra}) or None,
        "rank_pattern": {n: v for n, v in ranks.items() if v != r},
        "alpha_pattern": {n: v for n, v in alphas.items() if v != alpha},
        "init_lora_weights": True, "use_rslora": False, "use_dora": False, "inference_mode": True,
        "layers_to_transform": None, "layers_pattern": None, "revision": None,
    }


# --- loading ---------------------------------------------------------------------------------
def load_adapter(model, path: str | Path, required: tuple[str, ...] = ()) -> list[str]:
    """Add the adapters of a PEFT (or plmlab-saved) adapter directory to `model`; the names adapted.
    `required`: parameters the adapter must hold (a fine-tune's new head, which the base lacks).

    An adapter made for another base model (names or shapes that do not fit) is one line."""
    path = Path(path)
    settings = _read_config(path)
    tensors = _read_tensors(path)
    rules = _weight_rules(model)
    by_module, extras = _group(tensors, path)
    owners = _owners(model, rules, by_module, path)
    adapted = []
    for ours, (rule, names) in owners.items():
        layer = model.get_submodule(ours)
        parts = [_part(by_module.get(n), n, settings, path) for n in names]
        a, b, r, alpha = _fuse(parts, _part_sizes(rule, layer, model.config), layer, ours, path)
        wrap(model, [ours], r, alpha, settings.get("lora_dropout") or 0.0)
        new = model.get_submodule(ours)
        with torch.no_grad():
            new.lora_A.copy_(a)
            new.lora_B.copy_(b)
        adapted.append(ours)
    missing = set(required) - _load_extras(model, rules, extras, path)
    if missing:
        raise PlmlabError(f"{path}: the adapter's model needs {', '.join(sorted(missing)[:3])}, which neither the "
                          "adapter nor the base model holds in that shape (an adapter for a different base model?)")
    return adapted


def _read_config(path: Path) -> dict:
    settings = read_json(path / CONFIG)
    if settings.get("peft_type") != "LORA":
        raise PlmlabError(f"{path / CONFIG}: peft_type {settings.get('peft_type')!r}; plmlab reads LORA adapters")
    for flag in ("use_dora", "use_rslora"):
        if settings.get(flag):
            raise PlmlabError(f"{path / CONFIG}: {flag} adapters are not supported")
    for key in ("rank_pattern", "alpha_pattern"):
        if settings.get(key) is not None and not isinstance(settings[key], dict):
            raise PlmlabError(f"{path / CONFIG}: {key} must be an object of module names")
    if settings.get("bias", "none") != "none":
        raise PlmlabError(f"{path / CONFIG}: bias {settings['bias']!r} is not supported (only 'none')")
    return settings


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    file = path / WEIGHTS
    if not file.is_file():
        raise PlmlabError(f"{path}: no {WEIGHTS} (plmlab reads safetensors adapters only)")
    handle = _open(file)
    try:
        return {k: handle.get_tensor(k) for k in handle.keys()}
    except SafetensorError as e:
        raise PlmlabError(f"{file}: corrupt or truncated adapter ({e})") from None


def _group(tensors: dict[str, torch.Tensor], path: Path):
    """({transformers module: {"A": .., "B": ..}}, {other transformers key: tensor})."""
    by_module: dict[str, dict[str, torch.Tensor]] = {}
    extras = {}
    for key, t in tensors.items():
        name = key.removeprefix(PREFIX)
        for part in ("A", "B"):
            suffix = f".lora_{part}.weight"
            if name.endswith(suffix):
                by_module.setdefault(name.removesuffix(suffix), {})[part] = t
                break
        else:
            extras[name] = t
    return by_module, extras


def _owners(model, rules: dict[str, Rule], by_module: dict, path: Path) -> dict[str, tuple[Rule, list[str]]]:
    """Our module -> (its rule, its transformers module names), for every module the adapter names."""
    theirs_to_ours = {}
    for ours, rule in rules.items():
        if ours.endswith(".weight") and isinstance(_module(model, ours), torch.nn.Linear):
            for t in rule.theirs:
                theirs_to_ours[t.removesuffix(".weight")] = ours.removesuffix(".weight")
    owners = {}
    for name in by_module:
        ours = theirs_to_ours.get(name)
        if ours is None:
            raise PlmlabError(f"{path}: the adapter names {name}, which this model does not have "
                              "(an adapter for a different base model?)")
        rule = rules[ours + ".weight"]
        owners[ours] = (rule, _theirs(rule, ours))
    return owners


def _module(model, param: str):
    try:
        return model.get_submodule(param.rsplit(".", 1)[0])
    except AttributeError:
        return None


def _part_sizes(rule: Rule, layer, config) -> list[int]:
    """Output rows of each transformers projection inside our (possibly fused) layer."""
    if len(rule.theirs) == 1:
        return [layer.out_features]
    return [t.shape[0] for t in rule.to_theirs(layer.weight.detach(), config)]


def _part(found: dict | None, name: str, settings: dict, path: Path):
    """(A, B, scaling) of one transformers module, or None where the adapter leaves it out."""
    if found is None:
        return None
    if set(found) != {"A", "B"}:
        raise PlmlabError(f"{path}: {name} has lora_{'A' if 'A' not in found else 'B'} missing")
    a, b = found["A"], found["B"]
    r = _pattern(settings.get("rank_pattern"), name, settings.get("r", 8))
    alpha = _pattern(settings.get("alpha_pattern"), name, settings.get("lora_alpha", 8))
    if not isinstance(r, int) or isinstance(r, bool) or r <= 0:
        raise PlmlabError(f"{path / CONFIG}: r for {name} is {r!r}; expected a positive integer")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not math.isfinite(alpha):
        raise PlmlabError(f"{path / CONFIG}: lora_alpha for {name} is {alpha!r}; expected a finite number")
    if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[1] or a.shape[0] != r:
        raise PlmlabError(f"{path}: {name}'s lora_A {tuple(a.shape)} and lora_B {tuple(b.shape)} do not make "
                          f"a rank-{r} update")
    return a, b, alpha / r


def _pattern(patterns: dict | None, name: str, default):
    """PEFT's rank_pattern / alpha_pattern: a key matches a module name that ends with it."""
    for key, value in (patterns or {}).items():
        if name == key or name.endswith("." + key):
            return value
    return default


def _fuse(parts, sizes: list[int], layer, ours: str, path: Path):
    """(A, B, r, alpha) of our layer from its parts (see the module docstring)."""
    present = [p for p in parts if p is not None]
    for p, rows in zip(parts, sizes):
        if p is not None and (p[0].shape[1] != layer.in_features or p[1].shape[0] != rows):
            raise PlmlabError(f"{path}: the adapter of {ours} is {tuple(p[1].shape)} x {tuple(p[0].shape)}, but "
                              f"the model's layer takes {layer.in_features} inputs and gives {rows} outputs "
                              "(an adapter for a different base model?)")
    first_a, first_s = present[0][0], present[0][2]
    if all(p is not None and torch.equal(p[0], first_a) and p[2] == first_s for p in parts):
        r = first_a.shape[0]
        return first_a, torch.cat([p[1] for p in parts]), r, first_s * r  # shared A: rank r, as saved
    ranks = [0 if p is None else p[0].shape[0] for p in parts]
    a = torch.cat([p[0] for p in present])  # (sum r, in)
    b = torch.zeros(sum(sizes), sum(ranks), dtype=a.dtype)  # (out, sum r): blockdiag(s_i B_i)
    row = col = 0
    for p, rows, r in zip(parts, sizes, ranks):
        if p is not None:
            b[row:row + rows, col:col + r] = p[1] * p[2]
        row, col = row + rows, col + r
    return a, b, sum(ranks), float(sum(ranks))  # scaling alpha / r = 1: s_i is inside B


def _load_extras(model, rules: dict[str, Rule], extras: dict[str, torch.Tensor], path: Path) -> set[str]:
    """Head parameters stored beside the adapters (modules_to_save) replace the model's; the names loaded."""
    loaded: set[str] = set()
    if not extras:
        return loaded
    params = dict(model.named_parameters())
    for ours, rule in rules.items():
        if all(t in extras for t in rule.theirs) and ours in params:
            value = rule.to_ours([extras.pop(t) for t in rule.theirs], model.config)
            if value.shape != params[ours].shape:
                raise PlmlabError(f"{path}: {rule.theirs[0]} has shape {tuple(value.shape)} but the model's is "
                                  f"{tuple(params[ours].shape)} (an adapter for a different base model?)")
            with torch.no_grad():
                params[ours].copy_(value)
            loaded.add(ours)
    if extras:
        raise PlmlabError(f"{path}: the adapter holds {', '.join(sorted(extras)[:3])}, which this model does not have")
    return loaded


# --- merging ---------------------------------------------------------------------------------
def merge_adapter(model_dir: str | Path, adapter_dir: str | Path):
    """(the model with the adapter folded into its weights, its tokenizer or None): the fine-tuned
    architecture (`plmlab_config.json` beside the adapter; else the base model's) with the base
    model's weights, the adapter's head parameters and its adapters merged -- what a LoRA fine-tune
    saves as final/. The tokenizer is the adapter directory's where it has one (a chat template's
    tokens), else the base model's."""
    adapter_dir = Path(adapter_dir)
    base = load_pretrained(resolve_dir(model_dir))
    model, new = base, ()
    if (adapter_dir / MODEL_CONFIG).is_file():
        model = build_model(_model_config(adapter_dir / MODEL_CONFIG))
        new = copy_matching(base, model)
    load_adapter(model, adapter_dir, required=new)
    merge_into_base(model)
    for source in (adapter_dir, resolve_dir(model_dir)):
        try:
            return model.eval(), load_tokenizer(source)
        except PlmlabError:  # no tokenizer there: the next place, else the weights alone
            continue
    return model.eval(), None


def _model_config(path: Path) -> Config:
    data = read_json(path)
    try:
        return Config.from_dict(data)
    except PlmlabError as e:
        raise PlmlabError(f"{path}: {e}") from None
