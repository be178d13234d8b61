#!/usr/bin/env bash
# One-H200 check of the scale/precision switches (not run in CI: needs a CUDA GPU).
#   1. SDPA really dispatches to flash attention (bf16, causal) on this GPU;
#   2. a GPT-2-124M-shaped model (--preset gpt2) trains in bf16-mixed with --compile on the
#      built-in corpus for a few hundred steps, printing tokens/s and MFU against the H200's
#      dense bf16 peak (989 TFLOP/s; the trainer picks it from the device name);
#   3. (2 GPUs or more only) the same run under torchrun DDP for a few steps;
#   4. batch-1 greedy decoding of the same GPT-2-124M shape in bf16: plmlab (eager and --compile)
#      against transformers' generate on the same weights, tokens/s (issue 14 item 5).
# Without a CUDA device it prints one "no GPU" line and exits 0 (nothing to check).
# Budget: under 10 minutes on one H200.   Usage: bash bench/gpu_check.sh [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
STEPS=${1:-300}
OUT=${OUT:-/tmp/plmlab-gpu-check}
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
export PLMLAB_CACHE=${PLMLAB_CACHE:-$OUT/cache}

"$PY" -c "import torch" 2>/dev/null || { echo "gpu_check: $PY cannot import torch (set PYTHON=...)"; exit 2; }
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "no GPU: torch.cuda.is_available() is False on this machine; bench/gpu_check.sh needs a CUDA device, nothing run"
  exit 0
fi

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

echo "== 4. decode, GPT-2-124M shape, bf16, batch 1 greedy: plmlab (eager, --compile) vs transformers"
"$PY" - <<'PY'
import statistics, tempfile, time
import torch
import plmlab
from transformers import AutoModelForCausalLM

torch.manual_seed(0)
ours = plmlab.build_model("gpt2").eval()
with tempfile.TemporaryDirectory() as d:
    plmlab.save_pretrained(ours, d)
    hf = AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.bfloat16, attn_implementation="sdpa").cuda().eval()
ours = ours.to("cuda", torch.bfloat16)
prompt = torch.randint(0, 50257, (1, 16), device="cuda")
NEW = 128

def timed(fn):
    fn(); torch.cuda.synchronize()  # warm-up (and compilation)
    ts = []
    for _ in range(5):
        start = time.perf_counter(); fn(); torch.cuda.synchronize(); ts.append(time.perf_counter() - start)
    return NEW / statistics.median(ts)

def hf_fn():
    with torch.no_grad():
        return hf.generate(prompt, max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False, pad_token_id=0)
runs = {"transformers": hf_fn,
        "plmlab": lambda: plmlab.generate(ours, prompt, max_new_tokens=NEW, eos_token_id=None),
        "plmlab --compile": lambda: plmlab.generate(ours, prompt, max_new_tokens=NEW, eos_token_id=None, compile=True)}
speed = {k: timed(fn) for k, fn in runs.items()}
for k, v in speed.items():
    print(f"{k:<18} {v:8.1f} tokens/s  (x{v / speed['transformers']:.2f} transformers)")
PY
