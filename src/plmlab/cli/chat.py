"""`plmlab chat --model DIR`: talk to a chat model in the terminal (plmlab.pipelines.chat).

Interactive on a terminal: each line is a user turn, the answer is streamed; /reset forgets the
history, /system TEXT sets the system message (/system alone clears it), /exit (or Ctrl-D) leaves;
the arrow keys edit the line and recall the session's earlier lines (readline, where Python has it).
An answer gets what the context leaves after the conversation, up to --max-new-tokens; when that
would be under a quarter of the context, the oldest turns are dropped first, and a line on stderr
says so before the answer comes.
With stdin a pipe (`echo hi | plmlab chat --model DIR`), the whole input is one user turn and
the one answer is printed.
"""

from __future__ import annotations

import sys

from ..errors import PlmlabError
from .args import device, non_negative_float, non_negative_int, positive_float, probability, seed
from .generate import add_decode_speed_args

HELP = "commands: /reset (forget the conversation), /system TEXT (set the system message), /exit"


def register(sub) -> None:
    p = sub.add_parser("chat", help="chat with a model through its chat template (interactive, or one answer "
                                    "from a pipe)")
    p.add_argument("--model", required=True, metavar="DIR", help="checkpoint or run directory with a chat template")
    p.add_argument("--tokenizer", metavar="DIR", help="tokenizer directory (default: the checkpoint's)")
    p.add_argument("--system", metavar="TEXT", help="system message")
    p.add_argument("--max-new-tokens", type=non_negative_int, default=128, metavar="N",
                   help="longest answer (default 128), capped to what the context leaves after the conversation; "
                        "the oldest turns are dropped while that is under min(N, a quarter of the context)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--greedy", action="store_true", help="always take the most likely token")
    mode.add_argument("--do-sample", action="store_true", help="sample (the default once a sampling option is given)")
    p.add_argument("--temperature", type=non_negative_float, help="sampling temperature (0 = greedy)")
    p.add_argument("--top-k", type=non_negative_int, help="sample among the k most likely tokens")
    p.add_argument("--top-p", type=probability, help="nucleus sampling: smallest set with probability >= p")
    p.add_argument("--min-p", type=probability, help="drop tokens below min_p x the best token's probability")
    p.add_argument("--repetition-penalty", type=positive_float, default=1.0, help="CTRL penalty for seen tokens")
    p.add_argument("--no-repeat-ngram-size", type=non_negative_int, default=0, metavar="N", help="never repeat an n-gram")
    p.add_argument("--stop", action="append", default=[], metavar="TEXT", help="stop an answer at this string")
    p.add_argument("--seed", type=seed, help="random seed for sampling")
    p.add_argument("--device", type=device, default="cpu", help="cpu, cuda, cuda:1, ... or auto")
    add_decode_speed_args(p)
    p.set_defaults(func=run)


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def run(args) -> int:
    from ..pipelines import load_model_and_tokenizer, prepare_for_decoding
    from ..pipelines.chat import Chat

    model, tokenizer = load_model_and_tokenizer(args.model, args.tokenizer, args.device)
    model = prepare_for_decoding(model, args.quantize, args.compile)
    chat = Chat(model, tokenizer, max_new_tokens=args.max_new_tokens,
                do_sample=False if args.greedy else (args.do_sample or None), temperature=args.temperature,
                top_k=args.top_k, top_p=args.top_p, min_p=args.min_p, repetition_penalty=args.repetition_penalty,
                no_repeat_ngram_size=args.no_repeat_ngram_size, stop=args.stop, seed=args.seed)
    session = chat.session(args.system)
    if not sys.stdin.isatty():
        try:
            text = sys.stdin.read().strip()
        except UnicodeDecodeError:  # a UTF-8 locale decodes strictly
            text = "\udcff"
        if not _utf8(text):
            raise PlmlabError("stdin is not UTF-8 text")
        if not text:
            raise PlmlabError("nothing to say: stdin is empty")
        _turn(session, text)
        return 0
    _line_editing()
    print(f"plmlab chat ({args.model}); {HELP}", file=sys.stderr)
    while True:
        try:
            line = input("> ").strip()
        except EOFError:
            print()
            return 0
        except UnicodeDecodeError:  # a UTF-8 locale decodes strictly
            line = "\udcff"
        if not _utf8(line):  # a terminal in another encoding: say so, keep the session
            print("plmlab: that line is not UTF-8 text; type it again", file=sys.stderr)
            continue
        if not line:
            continue
        if not _command(session, line):
            return 0


def _utf8(text: str) -> bool:
    """Was the text UTF-8? Under the C locale Python decodes stdin with surrogateescape, so
    undecodable bytes arrive as lone surrogates, which no tokenizer takes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _line_editing() -> bool:
    """Turn on line editing and the session's history (arrow keys) for input(): importing readline
    is what does it; without it a terminal hands input() the raw escapes (an up arrow reads `^[[A`)."""
    try:
        import readline  # noqa: F401
    except ImportError:  # not every Python has it (Windows); input() still works, unedited
        return False
    return True


def _command(session, line: str) -> bool:
    """Run one input line; False to leave."""
    if line in ("/exit", "/quit"):
        return False
    if line == "/reset":
        session.reset()
        print("(conversation reset)", file=sys.stderr)
    elif line == "/system" or line.startswith("/system "):
        session.set_system(line[len("/system"):].strip())
        print(f"(system message {'set' if session.system else 'cleared'})", file=sys.stderr)
    elif line.startswith("/"):
        print(f"plmlab: unknown command {line.split()[0]}; {HELP}", file=sys.stderr)
    else:
        try:
            _turn(session, line)
        except PlmlabError as e:  # a turn that does not fit: say so and keep the conversation
            print(f"plmlab: error: {e}", file=sys.stderr)
    return True


def _turn(session, text: str) -> None:
    session.send(text, write=_write, on_drop=_say_dropped)
    _write("\n")


def _say_dropped(n: int) -> None:
    """Said before the answer streams, so that it is not read as part of it."""
    print(f"plmlab: the conversation outgrew the context: dropped its {n} oldest turn(s)", file=sys.stderr,
          flush=True)
