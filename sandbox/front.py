"""A tiny TCP front for sandbox listeners: latency, black holes and garbage, on the wire.

The front accepts on the address and port a client dials and forwards bytes to the real server
on an internal port, holding every chunk `latency/2` seconds in each direction, so one round
trip costs `latency` and the TLS handshake pays its real round trips. Written on asyncio
protocols (no task per connection) because benchmarks push thousands of connections through it.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import deque
from typing import Final

_EOF: Final = b""  # queued marker: half-close the far side
_CLOSE: Final = None  # queued marker: close the far side


class _Pipe:
    """One direction of a forwarded connection: a FIFO of chunks, each due `delay` after it came."""

    __slots__ = ("_delay", "_loop", "_queue", "_timer", "target")

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        self._loop = loop
        self._delay = delay
        self._queue: deque[tuple[float, bytes | None]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self.target: asyncio.Transport | None = None

    def attach(self, target: asyncio.Transport) -> None:
        self.target = target
        self._flush()

    def feed(self, data: bytes | None) -> None:
        if not self._delay and self.target is not None and not self._queue:
            self._deliver(data)
            return
        self._queue.append((self._loop.time() + self._delay, data))
        if self._timer is None and self.target is not None:
            self._timer = self._loop.call_at(self._queue[0][0], self._flush)

    def _flush(self) -> None:
        self._timer = None
        if self.target is None:
            return
        now = self._loop.time()
        # Timer callbacks may fire a hair early; treat anything due within 1 ms as due.
        while self._queue and self._queue[0][0] <= now + 0.001:
            self._deliver(self._queue.popleft()[1])
        if self._queue:
            self._timer = self._loop.call_at(self._queue[0][0], self._flush)

    def _deliver(self, data: bytes | None) -> None:
        target = self.target
        if target is None or target.is_closing():
            return
        if data is _CLOSE:
            target.close()
        elif data == _EOF:
            try:
                if target.can_write_eof():
                    target.write_eof()
                else:
                    target.close()
            except OSError:  # the far side is already gone (ENOTCONN): just close ours
                target.close()
        else:
            target.write(data)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()


class _Upstream(asyncio.Protocol):
    """Our connection to the real server; hands what it reads to the client-bound pipe."""

    def __init__(self, link: _Link) -> None:
        self._link = link

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._link.upstream_ready(transport)

    def data_received(self, data: bytes) -> None:
        self._link.to_client.feed(data)

    def eof_received(self) -> bool:
        self._link.to_client.feed(_EOF)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._link.to_client.feed(_CLOSE)


class _Link(asyncio.Protocol):
    """The client's connection to the front."""

    def __init__(self, front: Front) -> None:
        self._front = front
        loop = asyncio.get_running_loop()
        half = front.latency / 2
        self.to_server = _Pipe(loop, half)
        self.to_client = _Pipe(loop, half)
        self._transport: asyncio.Transport | None = None
        self._upstream: asyncio.Transport | None = None
        self._connecting: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._front.links.add(self)
        self.to_client.attach(transport)
        self._connecting = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: _Upstream(self), *self._front.upstream)
        except OSError:
            if self._transport is not None:
                self._transport.abort()

    def upstream_ready(self, transport: asyncio.Transport) -> None:
        self._upstream = transport
        if self._transport is None or self._transport.is_closing():
            transport.close()
            return
        self.to_server.attach(transport)

    def data_received(self, data: bytes) -> None:
        self.to_server.feed(data)

    def eof_received(self) -> bool:
        self.to_server.feed(_EOF)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._front.links.discard(self)
        self.to_server.feed(_CLOSE)
        if self._upstream is None and self._connecting is not None:
            self._connecting.cancel()

    def abort(self) -> asyncio.Task[None] | None:
        """Drop both sides now; returns the upstream connect task if it is still running."""
        self.to_server.cancel()
        self.to_client.cancel()
        for transport in (self._transport, self._upstream):
            if transport is not None:
                transport.abort()
        pending = self._connecting
        if pending is not None and not pending.done():
            pending.cancel()
            return pending
        return None


class _BlackHole(asyncio.Protocol):
    """Accepts, swallows everything, never says a word."""

    def __init__(self, front: Front) -> None:
        self._front = front
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._front.links.add(self)

    def data_received(self, data: bytes) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        self._front.links.discard(self)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


class _Garbage(asyncio.Protocol):
    """Answers every connection with random bytes and hangs up."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(os.urandom(512))
        transport.close()


class Front:
    """One listening socket in front of a listener. Mode: "forward", "black-hole", "garbage"."""

    def __init__(
        self, mode: str, *, upstream: tuple[str, int] | None = None, latency_ms: int = 0
    ) -> None:
        if mode == "forward" and upstream is None:
            raise ValueError("a forwarding front needs an upstream address")
        self.mode = mode
        self.upstream: tuple[str, int] = upstream or ("", 0)
        self.latency = latency_ms / 1000
        self.links: set[_Link | _BlackHole] = set()
        self._server: asyncio.Server | None = None

    async def start(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        factory = {
            "forward": lambda: _Link(self),
            "black-hole": lambda: _BlackHole(self),
            "garbage": _Garbage,
        }[self.mode]
        self._server = await loop.create_server(factory, sock=sock)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        pending = [task for link in list(self.links) if (task := link.abort()) is not None]
        self.links.clear()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        # Let aborted transports run their connection_lost callbacks before the loop moves on.
        await asyncio.sleep(0)
