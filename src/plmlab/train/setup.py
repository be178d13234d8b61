"""Set-up of a new pretraining run: the model config, the tokenizer and the device."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import time
from pathlib import Path

import torch

from ..config import Config
from ..errors import PlmlabError
from ..presets import get_preset
from ..tokenizers import builtin_tokenizer, load_tokenizer, train_tokenizer
from .options import PretrainOptions


def build_config(o: PretrainOptions) -> Config:
    """preset, then the config file's fields, then overrides, then --vocab-size."""
    if o.preset is None and o.config_file is None:
        raise PlmlabError("pass --preset NAME (plmlab info --list shows them) or --config FILE")
    fields = get_preset(o.preset).to_dict() if o.preset else {}
    if o.config_file:
        fields.update(read_config_file(o.config_file))
    fields = with_overrides(fields, o.overrides)
    if o.vocab_size is not None:
        fields["vocab_size"] = o.vocab_size
    return Config.from_dict(fields)


def with_overrides(fields: dict, overrides: dict) -> dict:
    """`fields` updated by `--set` overrides. Switching `norm` switches `norm_bias` with it
    (LayerNorm has a bias, RMSNorm none) unless `norm_bias` is set too: otherwise `--set
    norm=layernorm` on a LLaMA preset would give a bias-less LayerNorm nobody asked for."""
    out = {**fields, **overrides}
    if "norm" in overrides and "norm_bias" not in overrides and overrides["norm"] != fields.get("norm"):
        out["norm_bias"] = overrides["norm"] == "layernorm"
    return out


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
            import yaml  # ~30 ms to import, a tenth of the CLI's own start-up: only a YAML file pays
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


def make_tokenizer(o: PretrainOptions, config: Config, documents: list[list[str]], say=None):
    """The run's tokenizer: --tokenizer DIR, else one of the preset's style trained on the corpus
    (the built-in corpus's is cached); its ids must fit the model's vocabulary. `say` gets a
    status line before a tokenizer is trained."""
    if o.tokenizer:
        tokenizer = load_tokenizer(o.tokenizer)
    elif not o.corpus:
        tokenizer = builtin_tokenizer(config.tokenizer, config.vocab_size, say=say)
    else:
        if say is not None:
            say(f"tokenizer: training a {config.tokenizer}-style tokenizer of {config.vocab_size:,} ids on the corpus")
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


# Past a few threads a small model's matrices are too small to split well, and on a shared host
# more threads mostly wait for each other.
MAX_DEFAULT_THREADS = 8


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask: what a container or taskset allows)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_threads() -> int:
    """--threads' default: torch's own count (the physical cores, or OMP_NUM_THREADS), no more than
    the CPUs this process may use, at most MAX_DEFAULT_THREADS."""
    return max(1, min(torch.get_num_threads(), usable_cpus(), MAX_DEFAULT_THREADS))


def busy_cpus(window_s: float = 0.25) -> int:
    """About how many CPUs other processes keep busy now: the busy share of /proc/stat's CPU time
    over a short window (Linux), else the 1-minute load average. Not the load average where the
    window can be read: it still counts the minute before (right after `make install`, a quiet
    machine has a load of 1)."""
    def times() -> tuple[int, int] | None:
        try:
            with open("/proc/stat", encoding="ascii") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        return sum(fields[3:5]), sum(fields)  # (idle + iowait, all) in clock ticks
    first = times()
    if first is None:
        return round(os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0
    time.sleep(window_s)
    second = times()
    idle, total = second[0] - first[0], second[1] - first[1]
    return round((1 - idle / total) * (os.cpu_count() or 1)) if total > 0 else 0


def threads_text(threads: int) -> str:
    """` with 2 threads (--threads N to change)`, and a warning when other processes already keep
    CPUs busy: an OpenMP team with more threads than free cores waits on its slowest member
    (gpt-mini on a 2-core machine with one core taken: 2 threads ran 3.7x slower than 1)."""
    note = "--threads N to change"
    if threads == 1:  # one thread always fits: no need to sample the CPUs (busy_cpus waits 0.25 s)
        return f" with 1 thread ({note})"
    busy = busy_cpus()
    free = max(1, usable_cpus() - busy)
    if threads > free:
        note += f"; other processes keep about {busy} of the {usable_cpus()} CPUs busy: --threads {free} may be faster"
    return f" with {threads} thread{'s' if threads > 1 else ''} ({note})"


def package_version() -> str:
    """plmlab's installed version (the package metadata pip wrote)."""
    try:
        return importlib.metadata.version("plmlab")
    except importlib.metadata.PackageNotFoundError:  # imported from a source tree, never installed
        return "(not installed)"


def machine_info(device: torch.device) -> dict:
    """What ran a run, for its summary.json: versions, the CPU's vector extensions (torch picks its
    kernels by them: AVX512 and AVX2 machines differ in speed, bf16 most), threads and device."""
    return {"plmlab": package_version(), "torch": torch.__version__, "python": platform.python_version(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpus": usable_cpus(),
            "threads": torch.get_num_threads(), "device": str(device)}
