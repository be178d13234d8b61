"""Preference tuning with DPO (Rafailov et al., 2023), a task of the one Trainer.

    plmlab dpo --model SFT_DIR --data prefs.jsonl --out OUT [--beta 0.1]

Data: JSONL lines {"prompt", "chosen", "rejected"} (strings), or TRL's conversational records
(the prompt a list of messages, each response a list of one assistant message); without --data
the built-in preference pairs (data/instructions.py), their eval split scored every epoch. Each
response is scored by its log-prob given the prompt, summed over the response's tokens only (the
prompt's tokens carry no loss).

Where the tokenizer has a chat template (an SFT model's, tokenizers/chat.py), a row is exactly
what SFT trains and `plmlab chat` renders, as TRL's DPOTrainer applies the template to
conversational data: the prompt as a user turn with the generation prompt, the response as the
assistant turn, closed by the template's end-of-turn token (ChatML's <|im_end|>) where the raw
format puts EOS. Without a template (a model that was only pretrained) the row is the raw text,
`prompt + response + eos`.
The DPO loss of a pair (equation 7 of the paper) is

    -log sigmoid(beta * ((logp_c - ref_c) - (logp_r - ref_r)))

where ref_* are the log-probs under the reference model: the starting checkpoint, frozen.
`beta * (logp - ref)` is a response's implicit reward (section 5); reward accuracy is the
share of pairs whose chosen reward beats the rejected one, the margin their difference.

One batch of B pairs is one forward over a concatenated, right-padded batch of 2B rows:

    row 0 .. B-1     prompt_i + chosen_i   + end  pad ...     (end: eos, or the end-of-turn token)
    row B .. 2B-1    prompt_i + rejected_i + end  pad ...
    labels           -100 ... -100 | response ids  | -100 (prompt and padding carry no loss)

GLM's 2-D-position models (GLM, ChatGLM-6B) score a response as the blank after the prompt,
`prompt [gMASK] | <sop> response <eop>`, SFT's layout (finetune/sft_glm.py), one row each; the
prompt is rendered by the chat template there too when the tokenizer has one.

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

from ..data.instructions import builtin_preferences
from ..data.records import read_records
from ..errors import PlmlabError
from ..families import family_of
from ..families.glm import glm_preference
from ..masks import IGNORE_INDEX
from ..objectives.base import pad_and_stack
from ..families.fits import Fits
from ..pipelines import load_model_and_tokenizer
from ..tokenizers.chat import chat_usable, check_messages, encode_chat, encode_chat_for_training
from ..train.lora import apply_lora
from ..train.parallel import Dist
from ..train.precision import Precision
from ..train.setup import choose_device
from ..train.task import Mean, Metrics
from . import run
from .options import FinetuneOptions
from .sft_data import pack
from .tasks import ExampleTask

# DPO's defaults where they differ from classification fine-tuning's: one epoch (more on a small
# data set, options.default_epochs), a tenth of its learning rate (1e-5 at width 768, inversely
# proportional to the width, options.default_lr) and no weight decay (the paper's section 6 and
# TRL's DPOTrainer)
DEFAULTS = dict(min_epochs=1, batch_size=8, base_lr=1e-5, weight_decay=0.0)


BUILTIN = "builtin"  # --data default: the built-in preference pairs


def dpo_options(model: str, data: str | None = None, out: str | None = None, beta: float = 0.1,
                **kw) -> FinetuneOptions:
    """The options of a DPO run: fine-tuning's record with task "dpo" and `beta`; without `data`,
    the built-in preference pairs (and, without `eval`, their eval split)."""
    if out is None:
        raise PlmlabError("dpo_options needs out= (the run directory)")
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta <= 0:
        raise PlmlabError(f"--beta must be a finite number > 0, got {beta!r}")
    return FinetuneOptions(model=model, task="dpo", train=data or BUILTIN, out=out, extra={"beta": float(beta)},
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
def read_preferences(path: str) -> list[dict]:
    """Validated records of a JSONL file (a bad line is one error naming it), as `preference` makes them."""
    return [preference(record, f"{path}:{line}") for line, record in read_records(path)]


def builtin_pairs(split: str) -> list[dict]:
    """The built-in preference pairs of ``split`` (data/instructions.py), as `preference` makes them."""
    return [preference(r, f"built-in preferences ({split}) #{i}") for i, r in enumerate(builtin_preferences(split))]


def preference(record: dict, where: str) -> dict:
    """{"messages": the prompt as chat messages, "prompt": its text (None for a conversational
    record), "chosen", "rejected": the responses' texts, "_where"}; one line naming ``where`` if bad."""
    prompt = record.get("prompt")
    if isinstance(prompt, list):  # TRL's conversational format
        try:
            messages = check_messages(prompt)
        except PlmlabError as e:
            raise PlmlabError(f"{where}: prompt: {e}") from None
        text = None
    elif isinstance(prompt, str) and prompt:
        messages, text = [{"role": "user", "content": prompt}], prompt
    else:
        raise PlmlabError(f"{where}: missing field 'prompt' (a string, or a list of messages)")
    out = {"messages": messages, "prompt": text, "_where": where}
    for key in ("chosen", "rejected"):
        out[key] = _response(record.get(key), key, where)
    return out


def _response(value, key: str, where: str) -> str:
    """A response's text: a string, or a list of one assistant message (TRL's conversational format)."""
    if isinstance(value, list):
        if len(value) != 1 or not isinstance(value[0], dict) or value[0].get("role") != "assistant" \
                or not isinstance(value[0].get("content"), str):
            raise PlmlabError(f'{where}: {key} must be a string or a list of one {{"role": "assistant", '
                              '"content": str}} message')
        value = value[0]["content"]
    if value is None or value == "":
        raise PlmlabError(f"{where}: missing field {key!r}")
    if not isinstance(value, str):
        raise PlmlabError(f"{where}: field {key!r} should be a str")
    if not value.strip():
        raise PlmlabError(f"{where}: empty {key} response")
    return value


def encode_preference(record: dict, tokenizer, limit: int, truncate: bool) -> dict[str, np.ndarray]:
    """prompt + response + its end for both responses (`response_row`), labels on the response
    tokens only; a prompt that leaves no room, or a row past ``limit`` without ``truncate``, is one line."""
    where = record["_where"]
    chat = chat_usable(tokenizer)
    if record["prompt"] is None and not chat:
        raise PlmlabError(f"{where}: a conversational record needs a chat template, and this {tokenizer.style} "
                          "tokenizer has none (fine-tune with `plmlab sft` first, which saves one)")
    example = {}
    for key in ("chosen", "rejected"):
        ids, n_prompt = response_row(tokenizer, record, record[key], chat)
        if n_prompt == 0:
            raise PlmlabError(f"{where}: the prompt encodes to no tokens")
        if n_prompt >= limit:
            raise PlmlabError(f"{where}: the prompt has {n_prompt} tokens and leaves no room for a response "
                              f"in the context of {limit} tokens")
        if len(ids) > limit:
            if not truncate:
                raise PlmlabError(f"{where}: prompt + {key} is {len(ids)} tokens, more than "
                                  f"the limit of {limit} (pass --truncate to cut long responses)")
            ids = ids[:limit]
        example[f"{key}_ids"] = np.array(ids, dtype=np.int64)
        example[f"{key}_labels"] = np.array([IGNORE_INDEX] * n_prompt + ids[n_prompt:], dtype=np.int64)
    return example


def response_row(tokenizer, record: dict, response: str, chat: bool) -> tuple[list[int], int]:
    """(the ids of prompt + response + its end, how many of them are the prompt's).

    chat: the conversation with the response as its assistant turn, as SFT encodes it
    (encode_chat_for_training), up to the turn's end-of-turn token (what follows it, ChatML's
    newline, is no part of the answer); the prompt is the rendering with the generation prompt,
    as `plmlab chat` encodes it (where the two tokenize differently at the seam, the common
    prefix -- TRL takes the common prefix of the two texts). Raw: the prompt's text, the
    response's, then eos."""
    if chat:
        head = encode_chat(tokenizer, record["messages"], add_generation_prompt=True)
        ids, flags = encode_chat_for_training(tokenizer, record["messages"] + [{"role": "assistant", "content": response}])
        end = max(i for i, flag in enumerate(flags) if flag) + 1
        n = next((i for i, (a, b) in enumerate(zip(head, ids)) if a != b), min(len(head), len(ids)))
        return ids[:end], n
    head = tokenizer.encode(record["prompt"])
    eos = [] if tokenizer.eos_id is None else [tokenizer.eos_id]
    return head + tokenizer.encode(response, add_special_tokens=False) + eos, len(head)


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


class DpoTask(ExampleTask):
    """DPO's pairs as the Trainer's task: a batch of B pairs is 2B rows, the loss a mean over the
    pairs, the step's metrics and the evaluation the implicit rewards (`reward_stats`)."""

    DERIVED = ("ref_logps",)  # the reference's log-probs: made from the starting model, not the data

    def __init__(self, beta: float) -> None:
        self.beta = beta

    def collate(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        return collate_pairs(examples, self.pad_id)

    def count_targets(self, batch: dict) -> int:
        return batch["input_ids"].shape[0] // 2

    def forward(self, model, batch: dict):
        output = model(**model_inputs(batch))
        logps = sequence_logps(output.logits, batch["labels"])  # (2B,)
        B = logps.shape[0] // 2
        ref = batch["ref_logps"].to(logps.dtype)  # (2B,)
        losses, chosen, rejected = dpo_loss(logps[:B], logps[B:], ref[:B], ref[B:], self.beta)
        return losses.mean(), DpoOutput(output.logits, losses.detach(), chosen, rejected)

    def metrics(self, batch: dict, output: DpoOutput) -> Metrics:
        """The step's reward accuracy, margin and mean rewards, over its pairs."""
        n = output.chosen_rewards.shape[0]
        return {k: Mean(v * n, n) for k, v in reward_stats(output.chosen_rewards, output.rejected_rewards).items()}

    def score(self, model, batches: list[dict]) -> dict[str, float]:
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
FITS = Fits(arch="decoder", head="lm")  # what DPO trains: the policy's log-probabilities of its responses


def check_model(config) -> None:
    if not FITS.fits(config):
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
    if o.threads is not None:
        torch.set_num_threads(o.threads)
    device = dist.device(choose_device(o.device or "auto"))
    precision = Precision(o.precision, device)  # fp16-mixed on CPU: refused before any work
    model, tokenizer = load_model_and_tokenizer(o.model, o.tokenizer)
    check_model(model.config)
    limit = min(model.config.max_positions, o.max_length or model.config.max_positions)
    encode = glm_preference if family_of(model.config).answers_as_blank else encode_preference
    train_records, eval_records = _records(o)
    train = [encode(r, tokenizer, limit, o.truncate) for r in train_records]
    evaluation = [encode(r, tokenizer, limit, o.truncate) for r in eval_records]
    torch.manual_seed(o.seed)  # dropout's stream
    model.to(device)
    pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0
    reference_logps(model, train + evaluation, pad_id, o.batch_size, precision.autocast, device)
    if o.lora is not None:  # after the reference: it is the starting model, with no adapters to disable
        apply_lora(model, o.lora)
    task = DpoTask(o.extra["beta"]).use(train, evaluation, pad_id, o.batch_size, o.seed)
    return run._Setup(task, model, tokenizer, device, task.steps_per_epoch(dist.world, o.grad_accum))


def _records(o: FinetuneOptions) -> tuple[list[dict], list[dict]]:
    """(training pairs, evaluation pairs): the files given, else the built-in splits."""
    if o.train == BUILTIN:
        return builtin_pairs("train"), read_preferences(o.eval) if o.eval else builtin_pairs("eval")
    return read_preferences(o.train), read_preferences(o.eval) if o.eval else []
