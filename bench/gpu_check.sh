#!/usr/bin/env bash
# One-H200 check of the scale/precision switches (not run in CI: needs a CUDA GPU).
#   1. SDPA really dispatches to flash attention (bf16, causal) on this GPU;
#   2. a GPT-2-124M-shaped model (--preset gpt2) trains in bf16-mixed with --compile on the
#      built-in corpus for a few hundred steps, printing tokens/s and MFU against the H200's
#      dense bf16 peak (989 TFLOP/s; the trainer picks it from the device name);
#   3. (2 GPUs or more only) the same run under torchrun DDP for a few steps.
# Budget: under 8 minutes on one H200.   Usage: bash bench/gpu_check.sh [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
STEPS=${1:-300}
OUT=${OUT:-/tmp/plmlab-gpu-check}
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
export PLMLAB_CACHE=${PLMLAB_CACHE:-$OUT/cache}

echo "== 1. flash attention through SDPA"
"$PY" - <<'PY'
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
import torch.nn.functional as F
assert torch.cuda.is_available(), "no CUDA device"
print(torch.cuda.get_device_name(), "torch", torch.__version__)
q, k, v = (torch.randn(8, 12, 1024, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3))
with sdpa_kernel(SDPBackend.FLASH_ATTENTION):  # raises if flash cannot run these inputs
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True)
err = (out.float() - ref).abs().max().item()
print(f"flash attention OK (max abs err vs fp32 math {err:.3g})")
assert err < 5e-2
PY

echo "== 2. gpt2 (124M) bf16-mixed + compile, $STEPS steps"
rm -rf "$OUT/gpt2"
start=$(date +%s)
"$PY" -m plmlab pretrain --preset gpt2 --out "$OUT/gpt2" --device cuda --precision bf16-mixed --compile \
  --seq-len 1024 --batch-size 16 --global-batch-tokens 131072 --max-steps "$STEPS" --lr 6e-4 --warmup 50 \
  --eval-every 100 --eval-batches 10 --save-every 0 --progress plain --sample-tokens 32 --oom-backoff
echo "wall: $(( $(date +%s) - start )) s"
"$PY" - "$OUT/gpt2/metrics.jsonl" <<'PY'
import json, sys, statistics
recs = [json.loads(l) for l in open(sys.argv[1])]
tail = recs[len(recs) // 2:]  # past compilation and warm-up
tps = statistics.median(r["tokens_per_s"] for r in tail)
mfu = [r["mfu"] for r in tail if "mfu" in r]
print(f"median tokens/s {tps:,.0f}" + (f", median MFU {statistics.median(mfu):.1%} of 989 TFLOP/s bf16" if mfu else ", no MFU (unknown GPU: pass --peak-flops)"))
print(f"loss {recs[0]['loss']:.3f} -> {recs[-1]['loss']:.3f}")
PY

NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if [ "$NGPU" -ge 2 ]; then
  echo "== 3. torchrun DDP on $NGPU GPUs, 20 steps"
  rm -rf "$OUT/ddp"
  "$PY" -m torch.distributed.run --nproc_per_node "$NGPU" -m plmlab pretrain --preset gpt2 --out "$OUT/ddp" \
    --precision bf16-mixed --seq-len 1024 --batch-size 8 --max-steps 20 --save-every 0 --eval-every 0 \
    --progress plain --sample-tokens 0
else
  echo "== 3. skipped: DDP needs 2+ GPUs (the CPU test suite covers DDP/FSDP2 with gloo)"
fi
