"""`plmlab generate --model DIR [PROMPT ...]`: text from a checkpoint, streamed as it is produced.

Prompts come from --prompt (repeatable), positional arguments, or stdin (one per line) when none
is given or a positional is `-`. By default each prompt is streamed in turn; --no-stream or --json
decode all prompts as one left-padded batch. Beam search cannot stream, so it batches too. A T5
prompt with sentinels (<extra_id_0>) prints each fill after its sentinel; --json adds `fills` and
the rebuilt text, `filled`. A GLM with 2-D positions continues a prompt as the blank after it, as
`plmlab fill-blanks "PROMPT [gMASK]"` does.
"""

from __future__ import annotations

import json
import sys

from ..families import family_of
from ..generation.api import set_decode_language
from ..nn.quantize import SCHEMES
from ..pipelines import TextGeneration, load_model_and_tokenizer, prepare_for_decoding
from .args import device, finite_float, non_negative_float, non_negative_int, positive_float, positive_int, \
    probability, read_lines, seed


def register(sub) -> None:
    p = sub.add_parser("generate", help="generate text from a decoder or encoder-decoder checkpoint")
    p.add_argument("prompts", nargs="*", metavar="PROMPT",
                   help="prompt text; '-' (or no prompt at all) reads one prompt per line from stdin")
    p.add_argument("--model", required=True, metavar="DIR", help="checkpoint directory (plmlab or Hugging Face)")
    p.add_argument("--tokenizer", metavar="DIR", help="tokenizer directory (default: the checkpoint's)")
    p.add_argument("--prompt", action="append", default=[], metavar="TEXT", help="a prompt (repeatable)")
    p.add_argument("--max-new-tokens", type=non_negative_int, default=64, metavar="N")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--greedy", action="store_true", help="always take the most likely token")
    mode.add_argument("--do-sample", action="store_true",
                      help="sample (the default as soon as --temperature/--top-k/--top-p/--min-p is given)")
    p.add_argument("--temperature", type=non_negative_float, help="sampling temperature (0 = greedy)")
    p.add_argument("--top-k", type=non_negative_int, help="sample among the k most likely tokens")
    p.add_argument("--top-p", type=probability, help="nucleus sampling: smallest set with probability >= p")
    p.add_argument("--min-p", type=probability, help="drop tokens below min_p x the best token's probability")
    p.add_argument("--repetition-penalty", type=positive_float, default=1.0,
                   help="CTRL penalty for tokens already seen")
    p.add_argument("--no-repeat-ngram-size", type=non_negative_int, default=0, metavar="N",
                   help="never repeat an n-gram")
    p.add_argument("--num-beams", type=positive_int, default=1, help="beam search with this many beams")
    p.add_argument("--length-penalty", type=finite_float, default=1.0, help="beam score = logprob / length^penalty")
    p.add_argument("--early-stopping", action="store_true", help="beam search: stop once num_beams hypotheses end")
    p.add_argument("--stop", action="append", default=[], metavar="TEXT",
                   help="stop a prompt's output at this string (repeatable; not printed)")
    p.add_argument("--seed", type=seed, help="random seed for sampling (the same seed gives the same text)")
    p.add_argument("--truncate-left", action="store_true", help="drop the oldest prompt tokens when too long")
    p.add_argument("--no-stream", action="store_true", help="decode all prompts as one batch, print at the end")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list of {prompt, text, ids} (+ fills, filled for T5 sentinels)")
    p.add_argument("--device", type=device, default="cpu", help="cpu, cuda, cuda:1, ... or auto")
    p.add_argument("--lang", metavar="NAME", help="XLM: the language (a name of the model's lang2id, or an id) "
                                                  "of the prompt and of every generated token")
    add_decode_speed_args(p)
    p.set_defaults(func=run)


def add_quantize_arg(p) -> None:
    """--quantize, shared by generate, chat, serve and evaluate (which measures what it costs)."""
    p.add_argument("--quantize", choices=list(SCHEMES),
                   help="int8: int8 weights (per-channel scales) for the linear layers, CPU; int8-dynamic: "
                        "activations in int8 too (fbgemm), can break real LLMs: measure it with evaluate first")


def add_decode_speed_args(p) -> None:
    """--quantize / --compile, shared by generate and chat."""
    add_quantize_arg(p)
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the decode step over a static KV cache (decoder-only; compiles first)")


def read_prompts(args) -> list[str]:
    return read_lines(args.prompt, args.prompts, "prompt",
                      "no prompt given (use --prompt TEXT, positional prompts, or lines on stdin)")


def load(model_dir: str, tokenizer_dir: str | None, device: str):
    """(model, tokenizer) from a checkpoint or training run directory (tests swap this out)."""
    return load_model_and_tokenizer(model_dir, tokenizer_dir, device)


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def run(args) -> int:
    prompts = read_prompts(args)
    model, tokenizer = load(args.model, args.tokenizer, args.device)
    model = prepare_for_decoding(model, args.quantize, args.compile)
    if args.lang is not None:
        set_decode_language(model, args.lang)
    do_sample = False if args.greedy else (args.do_sample or None)  # None: sample once a sampling option is given
    gen = TextGeneration(
        model, tokenizer, max_new_tokens=args.max_new_tokens, do_sample=do_sample,
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
        repetition_penalty=args.repetition_penalty, no_repeat_ngram_size=args.no_repeat_ngram_size,
        num_beams=args.num_beams, length_penalty=args.length_penalty, early_stopping=args.early_stopping,
        stop=args.stop, seed=args.seed, truncate_left=args.truncate_left)
    if not (args.json or args.no_stream or args.num_beams > 1):
        gen.stream(prompts, _write)
        return 0
    results = gen(prompts)
    if args.json:
        print(json.dumps(results, ensure_ascii=False))
        return 0
    echo = family_of(model.config).continues_prompt  # a decoder continues the prompt; T5 answers it
    for r in results:
        print((r["prompt"] + r["text"]) if echo else r["text"])
    return 0
