"""A bound on how long a client may take to send one request, headers and body (`--request-timeout`).

uvicorn's h11 protocol has none: its keep-alive timer stops at the first byte, so a client that
sends its headers a byte at a time holds a connection (and a slot of the app) for as long as it
likes. Here a timer runs whenever the connection waits for request bytes -- from the connection
(or the end of the previous response) until the request's last body byte -- and when it fires
the client gets 408 (if no response has begun) and the connection is closed."""

from __future__ import annotations

import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .validation import ApiError


def timed_protocol(seconds: float) -> type:
    class TimedH11Protocol(H11Protocol):
        read_timer = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._follow()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._follow()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._follow()

        def connection_lost(self, exc) -> None:
            self._stop_timer()
            super().connection_lost(exc)

        def _follow(self) -> None:
            """Run the timer while the client owes request bytes (IDLE: headers; SEND_BODY: body)."""
            if self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing():
                if self.read_timer is None:
                    self.read_timer = self.loop.call_later(seconds, self._expired)
            else:
                self._stop_timer()

        def _stop_timer(self) -> None:
            if self.read_timer is not None:
                self.read_timer.cancel()
                self.read_timer = None

        def _expired(self) -> None:
            self.read_timer = None
            if self.transport.is_closing():
                return
            cycle = self.cycle  # the last request's, complete, while the next one's headers are awaited
            if cycle is None or not cycle.response_started or self.conn.their_state is h11.IDLE:
                self.transport.write(_timeout_response(seconds))
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True  # the app's body read ends; whatever it sends is dropped
                cycle.message_event.set()
            self.transport.close()

    return TimedH11Protocol


def _timeout_response(seconds: float) -> bytes:
    error = ApiError(f"the request was not received within the server's limit of {seconds:g} s", status=408,
                     code="request_timeout")
    body = json.dumps(error.body()).encode()
    return (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"content-length: %d\r\n\r\n" % len(body)) + body
