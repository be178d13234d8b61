"""An OpenAI-compatible HTTP server for a plmlab or Hugging Face checkpoint (`plmlab serve`).

    from plmlab.serve import serve
    serve("run/", port=8000)   # /v1/completions, /v1/chat/completions, /v1/fill-mask, ...

Modules: `validation` (request schemas, OpenAI error bodies), `served` (the model: its tasks,
card, context checks), `engine` (the worker thread, bounded queue, dynamic batching), `batch`
(one batch of generation rows over one KV cache), `blank_jobs` (the jobs of a 2-D-position GLM: the
blank after the conversation or text), `flow` (a request's way through the worker:
429, 504, server-sent events), `responses` (OpenAI's objects), `metrics` (Prometheus text),
`handling` (a request before and after the worker: body, Prep threads), `guard` (Host, Origin,
API key), `protocol` (the request read timeout), `app` / `routes` (FastAPI), `static/` (the
playground). FastAPI and uvicorn are the `serve` extra, imported only when a server is made.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import ipaddress
import signal
import socket
import sys
import threading

from ..errors import PlmlabError
from .app import ServeOptions, create_app
from .served import ServedModel
from .validation import ApiError


def require_extra() -> None:
    missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise PlmlabError(f"serving needs {' and '.join(missing)}: pip install 'plmlab[serve]'")


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that port 0 (any free port) can be reported."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    # without it every response waits ~40 ms for the client's delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise PlmlabError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def make_server(app, log_level: str = "warning", request_timeout: float = ServeOptions.request_timeout):
    """uvicorn over h11 with a bound on how long a request may take to arrive (protocol.py)."""
    import uvicorn

    from .protocol import timed_protocol

    return uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on",
                                         timeout_graceful_shutdown=None, http=timed_protocol(request_timeout)))


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def serve(model_dir, host: str = "127.0.0.1", port: int = 8000, tokenizer=None, device: str = "cpu",
          name: str | None = None, options: ServeOptions | None = None, quantize: str | None = None) -> None:
    """Load the model and serve it until SIGINT / SIGTERM (which stop accepting, let in-flight
    requests finish, then return)."""
    require_extra()
    options = options or ServeOptions()
    if not is_loopback(host) and not options.api_key:
        print(f"plmlab: warning: listening on {host}, reachable from other machines, without an API key: anyone "
              "who can reach it can use it (give --api-key or PLMLAB_API_KEY)", file=sys.stderr, flush=True)
    # the name it was started with is a Host its clients may use (an IP literal always is: guard.py)
    options = dataclasses.replace(options, allowed_hosts=(*options.allowed_hosts, host))
    served = ServedModel.load(model_dir, tokenizer, device, name, quantize)
    sock = bind(host, port)
    server = make_server(create_app(served, options), request_timeout=options.request_timeout)
    where = sock.getsockname()
    print(f"plmlab: serving {served.name} ({', '.join(served.tasks) or 'no task'}) on "
          f"http://{host}:{where[1]}", file=sys.stderr, flush=True)
    with _exit_cleanly_on(signal.SIGTERM, signal.SIGINT):
        server.run(sockets=[sock])


@contextlib.contextmanager
def _exit_cleanly_on(*signals):
    """uvicorn drains on SIGTERM / SIGINT and then raises the signal again under the handlers it
    found; with a do-nothing handler there, a drained shutdown returns and exits 0."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, lambda *_: None) for s in signals}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


__all__ = ["serve", "create_app", "ServeOptions", "ServedModel", "ApiError", "bind", "make_server"]
