"""What to try after a run: a few commands naming the real run directory, fit for the model.

`plmlab pretrain` prints them after its summary; other training verbs can print theirs the same
way. What fits is read from the config (never from a preset's name):

    kind          first                          then
    causal        generate a continuation        the built-in suite, SFT, the loss plot
    blanks        fill-blanks (GLM, 2-D)         the built-in suite, SFT, the loss plot
    masked        fill-mask (BERT, RoBERTa ...)  the built-in suite, fine-tune a classifier, the loss plot
    seq2seq       generate into a sentinel       the built-in suite, fine-tune text to text, the loss plot
"""

from __future__ import annotations

import shlex
from pathlib import Path

from ..config import Config
from ..families import family_of
from ..tokenizers.styles import STYLES

T5_SENTINEL = "<extra_id_0>"  # the first of T5's sentinels; a tokenizer style without a mask token has them


def next_steps(config: Config, run_dir: str | Path) -> list[str]:
    """Command lines to try on the model in `run_dir` (a run directory or a model folder)."""
    run = shlex.quote(str(run_dir).rstrip("/"))
    mask = STYLES[config.tokenizer].specials.get("mask", T5_SENTINEL) if config.tokenizer in STYLES else T5_SENTINEL
    first = {
        "causal": f'plmlab generate --model {run} --prompt "The function returns"',
        "blanks": f'plmlab fill-blanks --model {run} "A tuple is an {mask} sequence."',
        "masked": f'plmlab fill-mask --model {run} "The {mask} of a list is its length."',
        "seq2seq": f'plmlab generate --model {run} "The {mask} of a list is its length."',
    }
    tune = {
        "causal": f"plmlab sft --model {run} --out {_beside(run_dir, 'sft')}",
        "blanks": f"plmlab sft --model {run} --out {_beside(run_dir, 'sft')}",
        # the checkout's examples/ (run from its root); your own data takes the same shape
        "masked": f"plmlab finetune --model {run} --task classification --train examples/sentiment-train.csv "
                  f"--eval examples/sentiment-dev.csv --out {_beside(run_dir, 'cls')}",
        "seq2seq": f"plmlab finetune --model {run} --task text2text --prefix 'sentiment: ' "
                   f"--train examples/text2text-train.jsonl --eval examples/text2text-dev.jsonl "
                   f"--out {_beside(run_dir, 'sentiment')}",
    }
    kind = family_of(config).next_steps  # causal, blanks (a 2-D GLM), masked or seq2seq
    return [first[kind], f"plmlab evaluate --model {run} --suite builtin", tune[kind], f"plmlab plot {run}"]


def _beside(run_dir: str | Path, suffix: str) -> str:
    """runs/gpt-mini -> runs/gpt-mini-sft (a model folder's run: runs/gpt-mini/final -> runs/gpt-mini-sft)."""
    path = Path(run_dir)
    if path.name == "final":
        path = path.parent
    return shlex.quote(f"{path}-{suffix}")
