"""A loopback TCP proxy for network-fault tests, running in-process on a background thread.

Point clients (or a Kafka broker's advertised listener) at :attr:`Proxy.port`; every byte goes
through the proxy to ``target``, and the fault controls act on open and new connections alike:

* :meth:`Proxy.set_latency` delays every chunk, in each direction, by that many milliseconds
  (a request/response round trip gains twice the latency); chunks keep their order and are
  pipelined, so throughput is not capped at one chunk per delay.
* :meth:`Proxy.blackhole` holds connections like a dropped network: new connections are
  accepted but not connected onward, nothing is forwarded either way, and the data already in
  flight waits; lifting it delivers everything in order (TCP never loses bytes mid-stream).
* :meth:`Proxy.reset_all` resets every open connection (``SO_LINGER`` 0, then close: the peers on
  both sides get an RST, ``ECONNRESET``).
* :meth:`Proxy.set_down` refuses new connections: each is closed at once with an RST. Open
  connections stay up (add :meth:`reset_all` for a crash).

The controls are synchronous and thread-safe: when one returns, it is in force. Counters:
:meth:`Proxy.stats`.

    with Proxy(target=("127.0.0.1", broker_port)) as proxy:
        ... clients connect to 127.0.0.1:proxy.port ...
        proxy.set_latency(200)
        proxy.reset_all()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

CHUNK = 64 * 1024
_QUEUE_CHUNKS = 64  # chunks in flight per direction before the proxy stops reading (backpressure)
_LINGER_0 = struct.pack("ii", 1, 0)


@dataclass(frozen=True, slots=True)
class ProxyStats:
    connections: int  # accepted at the proxy's port, refused ones included
    refused: int  # closed at once while the proxy was down
    open: int  # open now
    resets: int  # connections reset by reset_all()
    upstream_errors: int  # connections whose target could not be reached
    bytes_up: int  # forwarded client -> target
    bytes_down: int  # forwarded target -> client


@dataclass(eq=False)
class _Conn:
    client: asyncio.StreamWriter
    task: asyncio.Task
    upstream: asyncio.StreamWriter | None = None
    done: bool = field(default=False)


def _rst(writer: asyncio.StreamWriter | None) -> None:
    """Close with an RST: SO_LINGER 0, then close without flushing."""
    if writer is None:
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_0)
        except OSError:
            pass
    writer.transport.abort()


class Proxy:
    """A TCP proxy from ``127.0.0.1:listen_port`` (0: a free port) to ``target``."""

    def __init__(self, listen_port: int = 0, target: tuple[str, int] | None = None, *,
                 host: str = "127.0.0.1", chunk_size: int = CHUNK):
        if target is None:
            raise ValueError("Proxy needs a target: Proxy(target=(host, port))")
        self.target = (target[0], int(target[1]))
        self.host = host
        self._listen_port = listen_port
        self.chunk_size = chunk_size
        self._latency_s = 0.0
        self._blackholed = False
        self._down = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._flowing: asyncio.Event | None = None  # set unless blackholed; loop thread only
        self._conns: set[_Conn] = set()
        self._port = 0
        self._n = {"connections": 0, "refused": 0, "resets": 0, "upstream_errors": 0,
                   "bytes_up": 0, "bytes_down": 0}

    # --- lifecycle ------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("the proxy is not started: call start() first")
        return self._port

    @property
    def address(self) -> str:
        """``host:port`` to give clients."""
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> "Proxy":
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        ready: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._flowing = asyncio.Event()
                if not self._blackholed:
                    self._flowing.set()
                self._server = loop.run_until_complete(asyncio.start_server(
                    self._on_client, self.host, self._listen_port, reuse_address=True,
                    backlog=128))
            except BaseException as exc:  # e.g. the port is taken: report it to start()
                ready.set_exception(exc)
                loop.close()
                return
            ready.set_result(self._server.sockets[0].getsockname()[1])
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name=f"netproxy-{self.target[1]}", daemon=True)
        self._thread.start()
        try:
            self._port = ready.result(timeout_s)
        except BaseException:
            self._thread.join(timeout_s)
            self._thread = self._loop = None
            raise
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Close the listening port and every connection; end the thread."""
        if self._thread is None or self._loop is None:
            return
        loop = self._loop
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout_s)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout_s)
        self._thread = self._loop = None

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        conns = list(self._conns)
        for c in conns:
            c.task.cancel()
        await asyncio.gather(*(c.task for c in conns), return_exceptions=True)

    def __enter__(self) -> "Proxy":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- fault controls (synchronous, thread-safe, in force when they return) --------------
    def _call(self, fn: Callable[[], Any], timeout_s: float = 10.0) -> Any:
        if self._loop is None or self._thread is None:
            return fn()
        if threading.current_thread() is self._thread:
            return fn()
        fut: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return fut.result(timeout_s)

    def set_latency(self, ms: float) -> None:
        """Delay each chunk read from now on by ``ms`` milliseconds, in both directions."""
        if ms < 0:
            raise ValueError(f"latency must be >= 0 ms, got {ms!r}")

        def apply() -> None:
            self._latency_s = ms / 1000.0
        self._call(apply)

    @property
    def latency_ms(self) -> float:
        return self._latency_s * 1000.0

    def blackhole(self, on: bool = True) -> None:
        """Forward nothing (and connect nothing onward) while ``on``; lifting it resumes."""
        def apply() -> None:
            self._blackholed = on
            if self._flowing is not None:
                if on:
                    self._flowing.clear()
                else:
                    self._flowing.set()
        self._call(apply)

    @property
    def blackholed(self) -> bool:
        return self._blackholed

    def set_down(self, down: bool = True) -> None:
        """Refuse new connections (accept and reset at once) while ``down``."""
        def apply() -> None:
            self._down = down
        self._call(apply)

    @property
    def down(self) -> bool:
        return self._down

    def reset_all(self) -> int:
        """Reset every open connection (an RST to both peers); return how many."""
        def apply() -> int:
            conns = [c for c in self._conns if not c.done]
            for c in conns:
                c.done = True
                _rst(c.client)
                _rst(c.upstream)
                c.task.cancel()
            self._n["resets"] += len(conns)
            return len(conns)
        return self._call(apply)

    def stats(self) -> ProxyStats:
        def snap() -> ProxyStats:
            return ProxyStats(open=sum(1 for c in self._conns if not c.done), **self._n)
        return self._call(snap)

    # --- the proxy (event-loop thread) ----------------------------------------------------
    async def _on_client(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        self._n["connections"] += 1
        if self._down:
            self._n["refused"] += 1
            _rst(cwriter)
            return
        task = asyncio.current_task()
        assert task is not None
        conn = _Conn(cwriter, task)
        self._conns.add(conn)
        try:
            await self._flowing.wait()  # a blackholed network connects nothing onward
            try:
                ureader, uwriter = await asyncio.open_connection(*self.target)
            except OSError:
                self._n["upstream_errors"] += 1
                conn.done = True
                _rst(cwriter)
                return
            conn.upstream = uwriter
            up = asyncio.create_task(self._pipe(creader, uwriter, "bytes_up"))
            down = asyncio.create_task(self._pipe(ureader, cwriter, "bytes_down"))
            try:
                await asyncio.gather(up, down)
            except OSError:  # one side reset or failed: reset the other side too
                conn.done = True
                _rst(cwriter)
                _rst(uwriter)
            finally:
                for t in (up, down):
                    t.cancel()
                await asyncio.gather(up, down, return_exceptions=True)
        except asyncio.CancelledError:
            pass  # reset_all() or stop(): the transports are already dealt with
        finally:
            self._conns.discard(conn)
            for w in (cwriter, conn.upstream):
                if w is not None and not w.transport.is_closing():
                    w.transport.abort() if conn.done else w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    counter: str) -> None:
        """Copy ``reader`` to ``writer`` chunk by chunk, each due ``latency`` after it was read;
        end of stream is passed on as a half-close. Raises ``OSError`` when a side fails."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue(_QUEUE_CHUNKS)
        flowing = self._flowing

        async def read() -> None:
            while True:
                await flowing.wait()
                try:
                    data = await reader.read(self.chunk_size)
                except OSError:
                    await queue.put(None)
                    return
                await queue.put((loop.time() + self._latency_s, data))
                if not data:
                    return

        reading = asyncio.create_task(read())
        try:
            while True:
                item = await queue.get()
                if item is None:
                    raise ConnectionResetError("the other side of the proxy failed")
                due, data = item
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)  # the injected latency itself
                await flowing.wait()
                if not data:
                    if writer.can_write_eof() and not writer.transport.is_closing():
                        writer.write_eof()
                    return
                self._n[counter] += len(data)
                writer.write(data)
                await writer.drain()
        finally:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
