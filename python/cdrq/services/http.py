"""What `cdrq serve` and `cdrq listen` ask of uvicorn's HTTP/1.1 protocol
beyond its own settings: deadlines for a peer's request and a cap on open
connections, so that no peer — authenticated or not: it is told at the
request — holds connections by sending slowly or not at all."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass
class Limits:
    """Connection limits: seconds to receive a request's headers, and the
    whole request (headers and body: a Content-Length larger than the body
    sent, a body dripped a byte at a time), both from its first byte (the
    connection's opening for its first request; the answer, for a body
    still owed after it); idle seconds between keep-alive requests; open
    connections at most (more are closed at once); the largest request
    head (bytes)."""

    header_timeout: float = 10.0
    request_timeout: float = 60.0
    keep_alive: int = 5
    connections: int = 2000
    head_bytes: int = 16 * 1024
    #: Open connections one address may hold (None: no limit of its own).
    per_peer: int | None = None


def protocol(limits: Limits) -> type:
    """uvicorn's h11 protocol with :class:`Limits`' deadlines and connection cap."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Guarded(H11Protocol):
        head_timer: asyncio.TimerHandle | None = None
        request_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > limits.connections or self.over_peer_limit():
                transport.abort()
                return
            self.watch()

        def over_peer_limit(self) -> bool:
            if limits.per_peer is None or not self.client:
                return False
            host = self.client[0]
            return sum(1 for c in self.connections if c.client and c.client[0] == host) > limits.per_peer

        def watch(self) -> None:
            """Times what the peer still owes: a head (it is ``IDLE``) and
            a whole request (``IDLE`` or ``SEND_BODY``), each from when it
            began to be owed; what is no longer owed is not timed."""
            state = self.conn.their_state
            owes_head = state is h11.IDLE and not self.transport.is_closing()
            owes_request = state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing()
            if owes_head and self.head_timer is None:
                self.head_timer = self.loop.call_later(limits.header_timeout, self.too_slow, "head", (h11.IDLE,))
            if owes_request and self.request_timer is None:
                timeout = max(limits.request_timeout, limits.header_timeout)
                states = (h11.IDLE, h11.SEND_BODY)
                self.request_timer = self.loop.call_later(timeout, self.too_slow, "request", states)
            self.settle(head=not owes_head, request=not owes_request)

        def settle(self, head: bool, request: bool) -> None:
            if head and self.head_timer is not None:
                self.head_timer.cancel()
                self.head_timer = None
            if request and self.request_timer is not None:
                self.request_timer.cancel()
                self.request_timer = None

        def too_slow(self, timer: str, states: tuple) -> None:
            """Closes a connection whose peer is still sending (``states``)
            what it should have sent by now; never one we are answering."""
            setattr(self, f"{timer}_timer", None)
            cycle = self.cycle
            answering = cycle is not None and cycle.response_started and not cycle.response_complete
            if self.conn.their_state in states and not answering:
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self.watch()

        def connection_lost(self, exc: Exception | None) -> None:
            self.settle(head=True, request=True)
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            # The next request is timed from its first byte; until then the
            # keep-alive timeout applies. A body still owed (an answer given
            # before it came: a 401, a 413) or a request already buffered
            # (pipelined) is timed from now.
            self.settle(head=True, request=True)
            if self.conn.their_state is not h11.IDLE or self.conn.trailing_data[0]:
                self.watch()

    return Guarded
