"""Preference tuning with DPO (Rafailov et al., 2023), a task of the one Trainer.

    plmlab dpo --model SFT_DIR --data prefs.jsonl --out OUT [--beta 0.1]

Data: JSONL lines {"prompt", "chosen", "rejected"}. Each response is scored by its log-prob
given the prompt, summed over the response's tokens only (the prompt's tokens carry no loss).
The DPO loss of a pair (equation 7 of the paper) is

    -log sigmoid(beta * ((logp_c - ref_c) - (logp_r - ref_r)))

where ref_* are the log-probs under the reference model: the starting checkpoint, frozen.
`beta * (logp - ref)` is a response's implicit reward (section 5); reward accuracy is the
share of pairs whose chosen reward beats the rejected one, the margin their difference.

One batch of B pairs is one forward over a concatenated, right-padded batch of 2B rows:

    row 0 .. B-1     prompt_i + chosen_i   + eos  pad ...
    row B .. 2B-1    prompt_i + rejected_i + eos  pad ...
    labels           -100 ... -100 | response ids  | -100 (prompt and padding carry no loss)

GLM's 2-D-position models (GLM, ChatGLM-6B) score a response as the blank after the prompt,
`prompt [gMASK] | <sop> response <eop>`, SFT's layout (finetune/sft_glm.py), one row each.

The reference log-probs are computed once, up front, under no_grad in eval mode, with the
starting weights (before a resumed run loads its checkpoint), and cached with every example:
no second copy of the model is held during training, and a resumed run gets the same values.
The run itself (lock, --overwrite / --resume, checkpoints, final/ with the tokenizer,
metrics.jsonl, precision, DDP) is fine-tuning's (finetune/run.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..data.records import read_records, require_field
from ..errors import PlmlabError
from ..masks import IGNORE_INDEX
from ..objectives.glm_layout import TWO_D_POSITIONS
from ..objectives.base import pad_and_stack
from ..train.parallel import Dist
from ..train.lora import apply_lora
from ..train.precision import Precision
from ..train.setup import choose_device
from . import run
from .options import FinetuneOptions
from .sft_data import pack
from .sft_glm import glm_preference
from .trainer_task import FinetuneTask, collate_all, steps_per_epoch

# DPO's defaults where they differ from classification fine-tuning's: one epoch, a small
# learning rate and no weight decay (the paper's section 6 and TRL's DPOTrainer)
DEFAULTS = dict(epochs=1, batch_size=8, lr=1e-5, weight_decay=0.0)


def dpo_options(model: str, data: str, out: str, beta: float = 0.1, **kw) -> FinetuneOptions:
    """The options of a DPO run: fine-tuning's record with task "dpo" and `beta`."""
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta <= 0:
        raise PlmlabError(f"--beta must be a finite number > 0, got {beta!r}")
    return FinetuneOptions(model=model, task="dpo", train=data, out=out, extra={"beta": float(beta)},
                           **{**DEFAULTS, **kw})


# ---------------------------------------------------------------------------- the loss
def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(per-pair losses, chosen rewards, rejected rewards), each (B,), from sequence log-probs (B,)."""
    chosen = beta * (policy_chosen - ref_chosen)  # (B,) implicit rewards
    rejected = beta * (policy_rejected - ref_rejected)  # (B,)
    losses = -F.logsigmoid(chosen - rejected)  # (B,) stable for large margins
    return losses, chosen.detach(), rejected.detach()


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed log-probs of the labelled tokens of each row: logits (N, T, V), labels (N, T)
    aligned with the input ids (position t is predicted by the logits at t - 1) -> (N,)."""
    targets = labels[:, 1:]  # (N, T-1)
    logp = logits[:, :-1].float().log_softmax(-1)  # (N, T-1, V) fp32 even under autocast
    picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (N, T-1)
    return (picked * (targets != IGNORE_INDEX)).sum(-1)  # (N,)


# ---------------------------------------------------------------------------- data
def format_prompt(tokenizer, prompt: str) -> str:
    """The text the model reads before a response: today the prompt as it is (the single place
    a chat template will render a user turn with its generation prompt)."""
    return prompt


def read_preferences(path: str) -> list[dict]:
    """Validated {"prompt", "chosen", "rejected"} records; a bad line is one error naming it."""
    out = []
    for line, record in read_records(path):
        fields = {key: require_field(path, line, record, key) for key in ("prompt", "chosen", "rejected")}
        for key in ("chosen", "rejected"):
            if not fields[key].strip():
                raise PlmlabError(f"{path}:{line}: empty {key} response")
        out.append({**fields, "_where": f"{path}:{line}"})
    return out


def encode_preference(record: dict, tokenizer, limit: int, truncate: bool) -> dict[str, np.ndarray]:
    """prompt + response + eos for both responses, labels on the response tokens only."""
    where = record["_where"]
    prompt = tokenizer.encode(format_prompt(tokenizer, record["prompt"]))
    if not prompt:
        raise PlmlabError(f"{where}: the prompt encodes to no tokens")
    if len(prompt) >= limit:
        raise PlmlabError(f"{where}: the prompt has {len(prompt)} tokens and leaves no room for a response "
                          f"in the context of {limit} tokens")
    eos = [] if tokenizer.eos_id is None else [tokenizer.eos_id]
    example = {}
    for key in ("chosen", "rejected"):
        response = tokenizer.encode(record[key], add_special_tokens=False) + eos
        if len(prompt) + len(response) > limit:
            if not truncate:
                raise PlmlabError(f"{where}: prompt + {key} is {len(prompt) + len(response)} tokens, more than "
                                  f"the limit of {limit} (pass --truncate to cut long responses)")
            response = response[:limit - len(prompt)]
        example[f"{key}_ids"] = np.array(prompt + response, dtype=np.int64)
        example[f"{key}_labels"] = np.array([IGNORE_INDEX] * len(prompt) + response, dtype=np.int64)
    return example


def collate_pairs(examples: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """B pairs -> one right-padded batch of 2B rows, the chosen ones first (see the module doc);
    `ref_logps` (2B,) in the same order when the examples carry the reference's values. A 2-D
    GLM's rows carry their layout (finetune/sft_glm.py): one row each, padding seeing itself only."""
    if "chosen_position_ids" in examples[0]:
        rows = [{name: e[f"{key}_{name}"] for name in ("input_ids", "labels", "position_ids", "attention_mask")}
                for key in ("chosen", "rejected") for e in examples]
        batch = pack(rows, 0, pad_id)  # a row per response: (2B, T), (2B, 2, T), (2B, T, T)
        del batch["token_mask"]
    else:
        rows = [{"input_ids": e[f"{key}_ids"], "labels": e[f"{key}_labels"],
                 "attention_mask": np.ones(len(e[f"{key}_ids"]), dtype=np.int64)}
                for key in ("chosen", "rejected") for e in examples]
        batch = pad_and_stack(rows, {"input_ids": pad_id, "labels": IGNORE_INDEX})  # (2B, T) each
    if "ref_logps" in examples[0]:
        ref = np.stack([e["ref_logps"] for e in examples])  # (B, 2): chosen, rejected
        batch["ref_logps"] = torch.from_numpy(np.concatenate([ref[:, 0], ref[:, 1]]))  # (2B,)
    return batch


def model_inputs(batch: dict) -> dict[str, torch.Tensor]:
    """What the model reads of a batch (a 2-D GLM's rows add their position ids)."""
    return {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch}


# ---------------------------------------------------------------------------- the task
@dataclass
class DpoOutput:
    logits: torch.Tensor  # (2B, T, V): what the Trainer needs of any output
    losses: torch.Tensor  # (B,)
    chosen_rewards: torch.Tensor  # (B,) detached
    rejected_rewards: torch.Tensor  # (B,) detached


class Preferences:
    """DPO as the task object FinetuneTask drives: collate, the loss, the evaluation."""

    def __init__(self, beta: float, pad_id: int) -> None:
        self.beta, self.pad_id = beta, pad_id

    def collate(self, examples: list[dict], tokenizer=None) -> dict[str, torch.Tensor]:
        return collate_pairs(examples, self.pad_id)

    @staticmethod
    def count_targets(batch: dict) -> int:
        """The loss is a mean over pairs."""
        return batch["input_ids"].shape[0] // 2

    def forward(self, model, batch: dict):
        output = model(**model_inputs(batch))
        logps = sequence_logps(output.logits, batch["labels"])  # (2B,)
        B = logps.shape[0] // 2
        ref = batch["ref_logps"].to(logps.dtype)  # (2B,)
        losses, chosen, rejected = dpo_loss(logps[:B], logps[B:], ref[:B], ref[B:], self.beta)
        return losses.mean(), DpoOutput(output.logits, losses.detach(), chosen, rejected)

    def evaluate(self, model, batches: list[dict]) -> dict[str, float]:
        outputs = [self.forward(model, b)[1] for b in batches]
        stats = reward_stats(torch.cat([o.chosen_rewards for o in outputs]),
                             torch.cat([o.rejected_rewards for o in outputs]))
        return {**stats, "loss": float(torch.cat([o.losses for o in outputs]).float().mean())}


def reward_stats(chosen: torch.Tensor, rejected: torch.Tensor) -> dict[str, float]:
    """Reward accuracy (chosen > rejected, strictly: a tie is not a preference), the mean margin
    and the mean rewards, over (B,) rewards."""
    chosen, rejected = chosen.float(), rejected.float()
    return {"reward_accuracy": float((chosen > rejected).float().mean()),
            "reward_margin": float((chosen - rejected).mean()),
            "chosen_reward": float(chosen.mean()), "rejected_reward": float(rejected.mean())}


class DpoTask(FinetuneTask):
    """FinetuneTask with DPO's per-step metric: the reward accuracy of the step's pairs."""

    def metrics(self, batch: dict, output: DpoOutput) -> dict:
        n = output.chosen_rewards.shape[0]
        stats = reward_stats(output.chosen_rewards, output.rejected_rewards)
        means = {f"{k}_mean": v for k, v in stats.items() if k != "reward_accuracy"}
        counts = {f"{k}_count": n for k in stats if k != "reward_accuracy"}
        return {"reward_accuracy": stats["reward_accuracy"], "reward_count": n, **means, **counts}


@torch.no_grad()
def reference_logps(model, examples: list[dict], pad_id: int, batch_size: int, autocast,
                    device: torch.device) -> None:
    """Each example's (chosen, rejected) log-probs under `model` as it is now, the frozen
    reference, into example["ref_logps"]; eval mode (no dropout), the run's autocast. The one
    place the reference is made: called before training (and before a resumed run loads its
    checkpoint), so `model` is the starting checkpoint and no copy of it is needed."""
    was_training = model.training
    model.eval()
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        batch = {k: v.to(device) for k, v in collate_pairs(chunk, pad_id).items()}
        with autocast():
            logits = model(**model_inputs(batch)).logits
        logps = sequence_logps(logits, batch["labels"]).cpu().numpy()  # (2B,)
        for i, e in enumerate(chunk):
            e["ref_logps"] = np.array([logps[i], logps[len(chunk) + i]], dtype=np.float32)
    model.train(was_training)


# ---------------------------------------------------------------------------- the run
def check_model(config) -> None:
    if config.arch != "decoder" or config.head != "lm":
        what = f"{config.arch} with head {config.head!r}"
        raise PlmlabError(f"dpo needs a decoder-only model with an LM head (GPT, LLaMA, GLM, ChatGLM, GLM-4), "
                          f"not a {what}")


def dpo(options: FinetuneOptions, log=print) -> list[dict]:
    """Train with DPO, evaluate each epoch, save OUT/final; returns the per-epoch metrics.
    finetune()'s run (finetune/run.py) with DPO's set-up in place of a registered task's."""
    if options.task != "dpo" or "beta" not in options.extra:
        raise PlmlabError("dpo() takes the options of dpo_options(...) (task 'dpo' with a beta)")
    return run.finetune(options, log, prepare=_prepare)


def _prepare(o: FinetuneOptions, dist: Dist) -> "run._Setup":
    from ..pipelines import load_model_and_tokenizer

    if o.threads is not None:
        torch.set_num_threads(o.threads)
    device = dist.device(choose_device(o.device or "auto"))
    precision = Precision(o.precision, device)  # fp16-mixed on CPU: refused before any work
    model, tokenizer = load_model_and_tokenizer(o.model, o.tokenizer)
    check_model(model.config)
    limit = min(model.config.max_positions, o.max_length or model.config.max_positions)
    encode = glm_preference if model.config.position in TWO_D_POSITIONS else encode_preference
    train = [encode(r, tokenizer, limit, o.truncate) for r in read_preferences(o.train)]
    evaluation = [encode(r, tokenizer, limit, o.truncate) for r in read_preferences(o.eval)] if o.eval else []
    torch.manual_seed(o.seed)  # dropout's stream
    model.to(device)
    pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0
    reference_logps(model, train + evaluation, pad_id, o.batch_size, precision.autocast, device)
    if o.lora is not None:  # after the reference: it is the starting model, with no adapters to disable
        apply_lora(model, o.lora)
    prefs = Preferences(o.extra["beta"], pad_id)
    eval_batches = collate_all(prefs, evaluation, tokenizer, o.batch_size) if evaluation else []
    task = DpoTask(prefs, train, eval_batches, tokenizer, o.batch_size, o.seed)
    return run._Setup(prefs, task, model, tokenizer, device, steps_per_epoch(len(train), o.batch_size, dist.world, o.grad_accum))
