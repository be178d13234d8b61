"""`plmlab serve --model DIR [--host 127.0.0.1 --port 8000]`: an OpenAI-compatible HTTP server
(plmlab.serve.serve)."""

from __future__ import annotations

import os

from .args import device, non_negative_float, positive_float, positive_int
from .generate import add_quantize_arg


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve a model over HTTP (OpenAI-compatible API, playground at /)")
    p.add_argument("--model", required=True, help="checkpoint or training run directory (plmlab or Hugging Face)")
    p.add_argument("--tokenizer", help="tokenizer directory (default: the model directory)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free one; the chosen one is printed)")
    p.add_argument("--name", help="the model's id in the API (default: the directory's name)")
    p.add_argument("--max-queue", type=positive_int, default=64, help="requests waiting; past it: 429")
    p.add_argument("--max-batch", type=positive_int, default=16, help="rows decoded together")
    p.add_argument("--batch-wait", type=non_negative_float, default=0.005,
                   help="seconds the worker waits for requests to batch with")
    p.add_argument("--timeout", type=positive_float, default=60.0, help="per-request deadline in seconds: 504")
    p.add_argument("--max-body", type=positive_int, default=1 << 20, help="largest request body in bytes: 413")
    p.add_argument("--request-timeout", type=positive_float, default=30.0,
                   help="seconds a client may take to send a request's headers and body: 408")
    p.add_argument("--api-key", default=os.environ.get("PLMLAB_API_KEY") or None,
                   help="require 'Authorization: Bearer KEY' on all but / and /health (default: $PLMLAB_API_KEY; "
                        "the environment keeps the key out of the process list)")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="a Host name clients may use besides IP addresses and localhost (repeat; '*': any)")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="a web origin (https://app.example) whose pages may call the API, with CORS (repeat; '*': any)")
    p.add_argument("--device", type=device, default="cpu", help="cpu, cuda, cuda:1, ... or auto")
    add_quantize_arg(p)
    p.add_argument("--no-access-log", action="store_true",
                   help="no line on stderr per request (client, method, path, status, ms, tokens)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..serve import ServeOptions, serve

    if not 0 <= args.port < 65536:
        from ..errors import PlmlabError

        raise PlmlabError(f"--port must be in 0..65535, got {args.port}")
    options = ServeOptions(max_queue=args.max_queue, max_batch=args.max_batch, batch_wait=args.batch_wait,
                           timeout=args.timeout, max_body=args.max_body, access_log=not args.no_access_log,
                           api_key=args.api_key, allowed_hosts=tuple(args.allowed_host),
                           allow_origins=tuple(args.allow_origin), request_timeout=args.request_timeout)
    serve(args.model, args.host, args.port, args.tokenizer, args.device, args.name, options, args.quantize)
    return 0
