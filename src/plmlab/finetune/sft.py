"""Supervised instruction tuning (SFT) as a task of the one Trainer.

    plmlab sft --model DIR [--data chat.jsonl] --out OUT [--seq-len T] [--train-on-prompt]

    model dir + its tokenizer -> the chat template attached (tokenizers/chat.py; the tokens it
      writes added, and the embedding table grown to cover them) -> conversations encoded with
      a loss mask (finetune/sft_data.py) -> SftTask -> Trainer.fit -> OUT/final (the tokenizer
      and its chat template saved with the model)

Decoders (GPT, LLaMA, GLM-4-style 1-D positions) learn the assistant tokens of packed rows;
T5 learns each assistant turn as the target of its rendered history; GLM's 2-D-position models
(GLM, ChatGLM-6B) learn each assistant turn as the blank after its history, Part A + Part B
(finetune/sft_glm.py), packed with one block per example. The loss is the mean over
every target token of the global batch: the task's loss is a per-token mean of its micro-batch
and ``count_targets`` counts those tokens, which the Trainer uses to weigh micro-batches and sum
them over DDP ranks -- so 1 x 8 and 4 x 2 micro-batch splits give the same step.
Without ``--data`` the built-in instruction set (data/instructions.py) is used, its eval split
scored every epoch. The run directory is fine-tuning's (a lock, --overwrite / --resume,
crash-safe checkpoints; finetune/run.py); options live in FinetuneOptions (``task="sft"``,
``max_length`` is ``--seq-len``, SFT's own in ``extra``).
"""

from __future__ import annotations

import json

import torch

from ..data.files import write_text_atomic
from ..data.instructions import builtin_conversations, builtin_instructions
from ..errors import PlmlabError, warn
from ..families import family_of
from ..families.glm import GlmTokens, glm_sft_examples
from ..modeling import build_model
from ..families.fits import Fits
from ..pipelines import load_model_and_tokenizer
from ..tokenizers.chat import end_of_turn_id, read_chat_template, render_chat, with_chat_template
from ..train.lora import apply_lora, new_parameters
from ..train.parallel import Dist
from ..train.precision import Precision
from ..train.setup import choose_device
from . import run
from .options import FinetuneOptions
from .run import _Setup
from .sft_data import encode_causal, encode_seq2seq, pack, pad_seq2seq, read_conversations
from .tasks import ExampleTask

BUILTIN = "builtin"  # --data default: the built-in instruction set
MODEL_KEYS = ("input_ids", "attention_mask", "position_ids", "labels")
# SFT's defaults where they differ from classification fine-tuning's, and its rate at width 768
# (options.default_lr scales it; SFT is no task of the registry to declare one) -- `plmlab sft`'s
# flags use them too
DEFAULTS = dict(base_lr=1e-4, weight_decay=0.0, warmup=0.05)


def sft_options(model: str, out: str, data: str | None = None, eval: str | None = None,
                seq_len: int | None = None, train_on_prompt: bool = False, chat_template: str | None = None,
                **fields) -> FinetuneOptions:
    """FinetuneOptions of an SFT run (the Python API of `plmlab sft`)."""
    for name, value in DEFAULTS.items():
        fields.setdefault(name, value)
    extra = {"train_on_prompt": bool(train_on_prompt), "chat_template": chat_template}
    return FinetuneOptions(model=model, task="sft", train=data or BUILTIN, out=out, eval=eval,
                           max_length=seq_len, extra=extra, **fields)


class SftTask(ExampleTask):
    """Conversations, `batch_size` of them per micro-batch, packed (decoders) or padded (T5);
    the loss is the model's over the assistant tokens (labels aligned with the logits: no shift)."""

    def __init__(self, seq_len: int, seq2seq: bool) -> None:
        self.seq_len, self.seq2seq = seq_len, seq2seq

    def collate(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        if self.seq2seq:
            return pad_seq2seq(examples, self.pad_id)
        return pack(examples, self.seq_len, self.pad_id)

    def count_tokens(self, batch: dict) -> int:
        return int(batch.get("token_mask", batch.get("attention_mask")).sum())

    def forward(self, model, batch: dict):
        output = model(**{k: v for k, v in batch.items() if k in MODEL_KEYS})
        return output.loss, output

    def score(self, model, batches: list[dict]) -> dict:
        """Token-weighted loss over the evaluation conversations (their assistant tokens)."""
        total, count = 0.0, 0
        for batch in batches:
            n = self.count_targets(batch)
            if n:
                total, count = total + float(self.forward(model, batch)[0]) * n, count + n
        return {"loss": total / count} if count else {}


def pad_id_of(tokenizer) -> int:
    """SFT's padding: the tokenizer's pad id, else its eos (a decoder's tokenizer may have no pad)."""
    return tokenizer.pad_id if tokenizer.pad_id is not None else (tokenizer.eos_id or 0)


def sft(options: FinetuneOptions, log=print) -> list[dict]:
    """Instruction-tune, score the eval conversations each epoch, save OUT/final; the history."""
    def finish(setup, rundir, log) -> None:  # the built-in eval split, for `plmlab evaluate --task generate`
        if options.train == BUILTIN:
            _write_eval_items(setup.tokenizer, rundir.out / EVAL_ITEMS, log)

    return run.finetune(options, log, prepare=_prepare, finish=finish)


EVAL_ITEMS = "eval_generate.jsonl"  # the built-in eval split for `plmlab evaluate --task generate`


def generate_items(tokenizer, split: str = "eval") -> list[dict]:
    """The built-in instructions of ``split`` in `plmlab evaluate --task generate`'s shape:
    {"context": the question rendered by the chat template with the generation prompt, "answer"}."""
    return [{"context": render_chat(tokenizer, [{"role": "user", "content": it["prompt"]}], True),
             "answer": it["response"]} for it in builtin_instructions(split)]


def _write_eval_items(tokenizer, path, log) -> None:
    write_text_atomic(path, "".join(json.dumps(item) + "\n" for item in generate_items(tokenizer)))
    log(f"wrote {path} (score it before and after: plmlab evaluate --task generate --data {path} --model DIR)")


def _prepare(o: FinetuneOptions, dist: Dist) -> _Setup:
    if o.threads is not None:
        torch.set_num_threads(o.threads)
    device = dist.device(choose_device(o.device or "auto"))
    Precision(o.precision, device)
    base, tokenizer = load_model_and_tokenizer(o.model, o.tokenizer)
    seq2seq = _check_arch(base.config)
    tokenizer = chat_tokenizer(tokenizer, o.extra.get("chat_template"))
    model = grown_model(base, tokenizer.vocab_size, o.seed)
    model.config = stop_at_end_of_turn(model.config, tokenizer)
    if family_of(model.config).answers_as_blank:  # a GLM blank ends with <eop> (ChatGLM-6B's eos token)
        model.config = model.config.replace(eos_token_id=GlmTokens.from_tokenizer(tokenizer).eop)
    torch.manual_seed(o.seed)  # the adapters' initialisation and dropout's stream: the same in every process
    train_also = new_parameters(model, base) if o.lora is not None else ()
    if o.lora is not None:  # the adapters (and embedding rows of new template tokens) train; the rest is frozen
        apply_lora(model, o.lora, train_also=train_also)
    model.to(device)
    del base
    seq_len = min(o.max_length or model.config.max_positions, model.config.max_positions)
    train, evaluation = _records(o)
    encode = _encoder(tokenizer, seq_len, seq2seq, o, family_of(model.config).answers_as_blank)
    examples, eval_examples = encode(train), encode(evaluation)
    task = SftTask(seq_len, seq2seq).use(examples, eval_examples, pad_id_of(tokenizer), o.batch_size, o.seed)
    return _Setup(task, model, tokenizer, device, task.steps_per_epoch(dist.world, o.grad_accum), train_also)


SEQ2SEQ = Fits(arch="encoder-decoder", head="lm")  # the response is the decoder's target (T5, BART)
DECODER = Fits(arch="decoder", head="lm")  # the response continues the prompt (GPT, LLaMA, GLM)


def _check_arch(config) -> bool:
    """True for an encoder-decoder; refuses what SFT cannot train (one line)."""
    if not (SEQ2SEQ.fits(config) or DECODER.fits(config)):
        raise PlmlabError(f"SFT needs a decoder or an encoder-decoder with an LM head, not {config.arch} "
                          f"with a {config.head} head")
    return SEQ2SEQ.fits(config)


def chat_tokenizer(tokenizer, template_path: str | None = None):
    """The tokenizer with its chat template (``template_path`` overrides it) and its tokens."""
    return with_chat_template(tokenizer, read_chat_template(template_path) if template_path else None)


def stop_at_end_of_turn(config, tokenizer):
    """The config with ``eos_token_id`` the template's end-of-turn token (ChatML's <|im_end|>), so
    that generation -- plmlab's and transformers' on final/ -- stops where an answer ends."""
    eot = end_of_turn_id(tokenizer)
    return config if eot is None or eot == config.eos_token_id else config.replace(eos_token_id=eot)


def grown_model(base: torch.nn.Module, vocab_size: int, seed: int) -> torch.nn.Module:
    """``base``, or a copy whose vocabulary tables grew to ``vocab_size`` rows (the template's
    new tokens): old rows copied, new rows the mean of the old ones (a neutral start, Hewitt 2021)."""
    if vocab_size <= base.config.vocab_size:
        return base
    old_vocab = base.config.vocab_size
    warn(f"the chat template's tokens grow the vocabulary from {old_vocab} to {vocab_size} embeddings")
    torch.manual_seed(seed)
    model = build_model(base.config.replace(vocab_size=vocab_size))
    ours = model.state_dict()
    state = {}
    for name, value in base.state_dict().items():
        if name not in ours:
            continue
        if ours[name].shape != value.shape and value.shape[0] == old_vocab:
            grown = value.new_empty(ours[name].shape)  # (vocab_size, ...)
            grown[:old_vocab] = value
            grown[old_vocab:] = value.mean(dim=0)
            value = grown
        state[name] = value
    model.load_state_dict(state, strict=False)
    model.tie_weights()
    return model


def _records(o: FinetuneOptions) -> tuple[list[dict], list[dict]]:
    if o.train == BUILTIN:
        train = builtin_conversations("train")
        return train, read_conversations(o.eval) if o.eval else builtin_conversations("eval")
    return read_conversations(o.train), read_conversations(o.eval) if o.eval else []


def _encoder(tokenizer, seq_len: int, seq2seq: bool, o: FinetuneOptions, two_d: bool = False):
    truncate, on_prompt = o.truncate, bool(o.extra.get("train_on_prompt"))
    if seq2seq or two_d:
        if on_prompt:
            warn(f"--train-on-prompt has no effect on {'an encoder-decoder' if seq2seq else 'a 2-D-position GLM'}: "
                 f"the prompt is {'the encoder' if seq2seq else 'Part A'}'s input, read bidirectionally")
        split = encode_seq2seq if seq2seq else glm_sft_examples
        return lambda records: [e for r in records for e in split(tokenizer, r, seq_len, truncate)]
    return lambda records: [encode_causal(tokenizer, r, seq_len, on_prompt, truncate) for r in records]
