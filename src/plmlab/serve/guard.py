"""Who may talk to the server, checked before any route runs (an ASGI middleware):

- Host: a request must name this server -- an IP literal, `localhost`, or a name given with
  `--allowed-host` (`*`: any). A DNS-rebinding page reaches 127.0.0.1 under its own domain name,
  so its requests carry that name and are refused (421) here; a Host that is an IP literal
  cannot be rebound. A request without Host (HTTP/1.0) comes from no browser and passes.
- Origin: a browser names the page that sent a request. A foreign origin (not this server's own
  `scheme://host`) is refused (403) -- `text/plain` "simple" POSTs that skip the CORS preflight
  included -- unless `--allow-origin` lists it (or `*`); those get CORS headers and their
  preflight (OPTIONS) is answered here.
- Key: with `--api-key`, every path but the playground (`/`) and `/health` needs
  `Authorization: Bearer KEY` (401 otherwise), compared in constant time.
"""

from __future__ import annotations

import hmac
import ipaddress
import json

from .validation import ApiError

OPEN = ("/", "/health")  # answered without the key: the playground page asks for the key itself
PREFLIGHT_MAX_AGE = "600"


def host_name(host: str) -> str:
    """`Host`'s name without its port: `[::1]:8000` -> `::1`, `Example.org.:80` -> `example.org`."""
    if host.startswith("["):
        return host[1:host.find("]")].lower() if "]" in host else host.lower()
    name, _, port = host.rpartition(":")
    return (name if name and port.isdigit() else host).lower().rstrip(".")


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class Guard:
    def __init__(self, app, api_key: str | None = None, allowed_hosts=(), allow_origins=()) -> None:
        self.app, self.key = app, api_key.encode() if api_key else None
        self.hosts = {host_name(h) for h in allowed_hosts} | {"localhost"}
        self.origins = {o.rstrip("/") for o in allow_origins}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in reversed(scope["headers"])}
        host, origin = headers.get("host"), headers.get("origin")
        if host is not None and not self.host_allowed(host):
            return await refuse(send, ApiError(f"the Host {host!r} is not this server's: use its address, "
                                               "localhost, or start it with --allowed-host", status=421,
                                               code="host_not_allowed"))
        cors = {}
        if origin is not None and origin != f"{scope['scheme']}://{host}":
            if "*" not in self.origins and origin.rstrip("/") not in self.origins:
                return await refuse(send, ApiError(f"requests from the origin {origin!r} are not allowed: start the "
                                                   "server with --allow-origin to let that page call it",
                                                   status=403, code="origin_not_allowed"))
            cors = {"access-control-allow-origin": origin, "vary": "Origin"}
            if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
                return await preflight(send, cors, headers)
        if self.key is not None and scope["path"] not in OPEN and not self.key_matches(headers.get("authorization")):
            return await refuse(send, ApiError("a valid API key is needed: send 'Authorization: Bearer KEY'", status=401,
                                               code="invalid_api_key", headers={"www-authenticate": "Bearer"}), cors)

        async def send_cors(message):
            if message["type"] == "http.response.start" and cors:
                message = {**message, "headers": [*message.get("headers", []), *_encode(cors)]}
            await send(message)

        return await self.app(scope, receive, send_cors)

    def host_allowed(self, host: str) -> bool:
        name = host_name(host)
        return "*" in self.hosts or name in self.hosts or is_ip(name)

    def key_matches(self, authorization: str | None) -> bool:
        scheme, _, given = (authorization or "").partition(" ")
        # compare_digest takes time independent of where the two differ (not of the length)
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode("utf-8", "replace"), self.key)


def _encode(headers: dict) -> list:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


async def refuse(send, error: ApiError, extra: dict | None = None) -> None:
    body = json.dumps(error.body()).encode()
    headers = {"content-type": "application/json", "content-length": str(len(body)), **error.headers, **(extra or {})}
    await send({"type": "http.response.start", "status": error.status, "headers": _encode(headers)})
    await send({"type": "http.response.body", "body": body})


async def preflight(send, cors: dict, headers: dict) -> None:
    asked = headers.get("access-control-request-headers", "authorization, content-type")
    allow = {**cors, "access-control-allow-methods": "GET, POST, OPTIONS", "access-control-allow-headers": asked,
             "access-control-max-age": PREFLIGHT_MAX_AGE, "content-length": "0"}
    await send({"type": "http.response.start", "status": 204, "headers": _encode(allow)})
    await send({"type": "http.response.body", "body": b""})
