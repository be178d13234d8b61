"""`plmlab generate --model DIR [PROMPT ...]`: text from a checkpoint, streamed as it is produced.

Prompts come from --prompt (repeatable), positional arguments, or stdin (one per line) when none
is given or a positional is `-`. By default each prompt is streamed in turn; --no-stream or --json
decode all prompts as one left-padded batch. Beam search cannot stream, so it batches too.
"""

from __future__ import annotations

import json
import sys

import torch

from ..errors import PlmlabError
from ..generation import TextStreamer, find_stop, fit_context, generate


def register(sub) -> None:
    p = sub.add_parser("generate", help="generate text from a decoder or encoder-decoder checkpoint")
    p.add_argument("prompts", nargs="*", metavar="PROMPT",
                   help="prompt text; '-' (or no prompt at all) reads one prompt per line from stdin")
    p.add_argument("--model", required=True, metavar="DIR", help="checkpoint directory (plmlab or Hugging Face)")
    p.add_argument("--tokenizer", metavar="DIR", help="tokenizer directory (default: the checkpoint's)")
    p.add_argument("--prompt", action="append", default=[], metavar="TEXT", help="a prompt (repeatable)")
    p.add_argument("--max-new-tokens", type=int, default=64, metavar="N")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--greedy", action="store_true", help="always take the most likely token")
    mode.add_argument("--do-sample", action="store_true",
                      help="sample (the default as soon as --temperature/--top-k/--top-p/--min-p is given)")
    p.add_argument("--temperature", type=float, help="sampling temperature (0 = greedy)")
    p.add_argument("--top-k", type=int, help="sample among the k most likely tokens")
    p.add_argument("--top-p", type=float, help="nucleus sampling: smallest set with probability >= p")
    p.add_argument("--min-p", type=float, help="drop tokens below min_p x the best token's probability")
    p.add_argument("--repetition-penalty", type=float, default=1.0, help="CTRL penalty for tokens already seen")
    p.add_argument("--no-repeat-ngram-size", type=int, default=0, metavar="N", help="never repeat an n-gram")
    p.add_argument("--num-beams", type=int, default=1, help="beam search with this many beams")
    p.add_argument("--length-penalty", type=float, default=1.0, help="beam score = logprob / length^penalty")
    p.add_argument("--early-stopping", action="store_true", help="beam search: stop once num_beams hypotheses end")
    p.add_argument("--stop", action="append", default=[], metavar="TEXT",
                   help="stop a prompt's output at this string (repeatable; not printed)")
    p.add_argument("--seed", type=int, help="random seed for sampling (the same seed gives the same text)")
    p.add_argument("--truncate-left", action="store_true", help="drop the oldest prompt tokens when too long")
    p.add_argument("--no-stream", action="store_true", help="decode all prompts as one batch, print at the end")
    p.add_argument("--json", action="store_true", help="print a JSON list of {prompt, text, ids}")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... or auto")
    p.set_defaults(func=run)


def read_prompts(args) -> list[str]:
    prompts = list(args.prompt)
    for p in args.prompts:
        prompts.extend(_stdin_lines() if p == "-" else [p])
    if not args.prompt and not args.prompts:
        prompts = _stdin_lines()
    if not prompts:
        raise PlmlabError("no prompt given (use --prompt TEXT, positional prompts, or lines on stdin)")
    return prompts


def _stdin_lines() -> list[str]:
    return [line.rstrip("\r\n") for line in sys.stdin if line.strip()]


def load(model_dir: str, tokenizer_dir: str | None, device: str):
    """(model, tokenizer) from a checkpoint directory."""
    from .. import load_pretrained
    from ..hf import resolve_dir
    from ..tokenizers import load_tokenizer

    model_dir = resolve_dir(model_dir)  # a training run directory: its final/ model
    model = load_pretrained(model_dir)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return model.to(device), load_tokenizer(tokenizer_dir or model_dir)


def encode(tokenizer, prompt: str) -> list[int]:
    ids = tokenizer.encode(prompt)
    if not ids:  # an empty prompt: start from BOS (or EOS, GPT-2's document separator)
        start = tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id
        if start is None:
            raise PlmlabError("the prompt is empty and the tokenizer has no BOS/EOS token to start from")
        ids = [start]
    return ids


def finish(ids: list[int], tokenizer, eos: int | None, stops: list[str]) -> tuple[str, list[int]]:
    """(text, ids) of one generated row: cut after EOS (not in the text) or at a stop string."""
    if eos is not None and eos in ids:
        ids = ids[:ids.index(eos) + 1]
        text = tokenizer.decode(ids[:-1])
    else:
        text = tokenizer.decode(ids)
    at = find_stop(text, stops)
    if at >= 0:
        text = text[:at]
        n = next(n for n in range(1, len(ids) + 1) if find_stop(tokenizer.decode(ids[:n]), stops) >= 0)
        ids = ids[:n]  # up to the token that completed the stop string; padding dropped
    return text, ids


def run(args) -> int:
    prompts = read_prompts(args)
    model, tokenizer = load(args.model, args.tokenizer, args.device)
    config = model.config
    eos = config.eos_token_id if config.eos_token_id is not None else tokenizer.eos_id
    pad = next((p for p in (config.pad_token_id, tokenizer.pad_id, eos) if p is not None), None)
    sampling = (args.temperature, args.top_k, args.top_p, args.min_p)
    options = dict(
        max_new_tokens=args.max_new_tokens,
        do_sample=args.do_sample or (not args.greedy and any(v is not None for v in sampling)),
        temperature=1.0 if args.temperature is None else args.temperature,
        top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
        repetition_penalty=args.repetition_penalty, no_repeat_ngram_size=args.no_repeat_ngram_size,
        num_beams=args.num_beams, length_penalty=args.length_penalty, early_stopping=args.early_stopping,
        eos_token_id=eos, pad_token_id=pad, stop=args.stop or None, tokenizer=tokenizer,
        truncate="left" if args.truncate_left else None,
    )
    echo = config.arch == "decoder"  # a decoder continues the prompt; T5 answers it
    rows = [encode(tokenizer, p) for p in prompts]
    if args.json or args.no_stream or args.num_beams > 1:
        generator = torch.Generator(device=next(model.parameters()).device).manual_seed(args.seed) \
            if args.seed is not None else None
        out = generate(model, rows, generator=generator, **options)
        results = [finish(r, tokenizer, eos, args.stop) for r in out.tolist()]
        if args.json:
            print(json.dumps([{"prompt": p, "text": t, "ids": i} for p, (t, i) in zip(prompts, results)],
                             ensure_ascii=False))
        else:
            for p, (text, _) in zip(prompts, results):
                print((p + text) if echo else text)
        return 0
    rows = fit_context(config, rows, args.max_new_tokens, options["truncate"])  # fail before printing
    for prompt, ids in zip(prompts, rows):
        _stream_one(model, prompt, ids, tokenizer, eos, echo, args, options)
    return 0


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _stream_one(model, prompt, ids, tokenizer, eos, echo, args, options) -> None:
    """Print one prompt's continuation as it is produced (each prompt seeded alike)."""
    streamer = TextStreamer(tokenizer, _write, stop=args.stop, end_ids=[] if eos is None else [eos])
    seed = args.seed
    generator = None if seed is None else torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    if echo:
        _write(prompt)
    generate(model, [ids], generator=generator, streamer=streamer, **options)
    _write("\n")
