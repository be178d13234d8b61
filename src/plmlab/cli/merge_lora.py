"""`plmlab merge-lora --model BASE_DIR --adapter ADAPTER_DIR --out OUT`: fold LoRA adapters (PEFT's
format, as `plmlab finetune --lora-r ...` saves them) into the base weights (plmlab.hf.peft), building
the fine-tuned model (a classifier head, a grown vocabulary) where the adapter's directory says so."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("merge-lora", help="fold a LoRA adapter into its base model's weights")
    p.add_argument("--model", required=True, help="base model directory (plmlab or Hugging Face)")
    p.add_argument("--adapter", required=True, help="adapter directory (adapter_config.json + adapter_model.safetensors)")
    p.add_argument("--out", required=True, help="where to write the merged model (Hugging Face layout where possible)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..train.lora import merge_lora_dir

    print(f"saved {merge_lora_dir(args.model, args.adapter, args.out, args.overwrite)}")
    return 0
