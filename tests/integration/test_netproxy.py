"""The loopback fault proxy: first against a local echo server, then in front of a real Kafka
broker whose advertised listener is the proxy, so every client connection goes through it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import shutil
import socket
import socketserver
import threading
import time
import uuid
from collections import Counter

import pytest

from agentflux.bench.netproxy import Proxy

# --- an echo server --------------------------------------------------------------------------


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        try:
            while data := self.request.recv(65536):
                self.request.sendall(data)
            self.request.shutdown(socket.SHUT_WR)
            self.server.events.put("eof")
        except ConnectionResetError:
            self.server.events.put("reset")


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Echo)
        self.events: queue.Queue = queue.Queue()


@pytest.fixture
def echo():
    server = _EchoServer()
    t = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    t.start()
    yield server
    server.shutdown()
    server.server_close()
    t.join(5)


@pytest.fixture
def proxy(echo):
    p = Proxy(target=echo.server_address).start()
    yield p
    p.stop()


def _connect(p: Proxy, timeout: float = 5.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", p.port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _recv_exactly(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def _roundtrip(s: socket.socket, data: bytes) -> bytes:
    s.sendall(data)
    return _recv_exactly(s, len(data))


def test_forwards_both_ways_passes_half_close_and_counts(proxy, echo):
    payload = os.urandom(300_000)
    with _connect(proxy) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)  # the echo server sees EOF through the proxy ...
        got = bytearray()
        while chunk := s.recv(65536):  # ... and its EOF comes back after all the data
            got += chunk
    assert bytes(got) == payload
    assert echo.events.get(timeout=5) == "eof"
    st = proxy.stats()
    assert (st.connections, st.refused, st.resets) == (1, 0, 0)
    assert st.bytes_up == st.bytes_down == len(payload)


def test_latency_applies_to_open_connections_in_both_directions(proxy):
    with _connect(proxy) as s:
        assert _roundtrip(s, b"warm") == b"warm"
        proxy.set_latency(150)
        assert proxy.latency_ms == 150
        t0 = time.monotonic()
        assert _roundtrip(s, b"ping") == b"ping"
        assert time.monotonic() - t0 >= 0.3  # 150 ms each way
        # chunks are pipelined: ten writes take about one round trip, not ten
        t0 = time.monotonic()
        for i in range(10):
            s.sendall(b"%d;" % i)
        expected = b"".join(b"%d;" % i for i in range(10))
        assert _recv_exactly(s, len(expected)) == expected
        assert 0.3 <= time.monotonic() - t0 < 2.0
    with _connect(proxy) as s2:  # and to new connections
        t0 = time.monotonic()
        assert _roundtrip(s2, b"new") == b"new"
        assert time.monotonic() - t0 >= 0.3


def test_blackhole_holds_open_and_new_connections_then_delivers_in_order(proxy):
    with _connect(proxy) as a:
        assert _roundtrip(a, b"before") == b"before"
        proxy.blackhole(True)
        before = proxy.stats()
        a.sendall(b"held-1;")
        a.sendall(b"held-2;")
        b = _connect(proxy)  # accepted, like a network that silently drops everything
        b.sendall(b"new")
        for s in (a, b):
            s.settimeout(0.3)
            with pytest.raises(socket.timeout):
                s.recv(100)
        after = proxy.stats()
        assert (after.bytes_up, after.bytes_down) == (before.bytes_up, before.bytes_down)
        proxy.blackhole(False)
        for s in (a, b):
            s.settimeout(5)
        assert _recv_exactly(a, 14) == b"held-1;held-2;"
        assert _recv_exactly(b, 3) == b"new"
        b.close()


def test_reset_all_sends_an_rst_to_both_peers_and_new_connections_work(proxy, echo):
    a, b = _connect(proxy), _connect(proxy)
    assert _roundtrip(a, b"a") == b"a" and _roundtrip(b, b"b") == b"b"
    assert proxy.reset_all() == 2
    for s in (a, b):
        with pytest.raises(ConnectionResetError):
            s.recv(10)
        s.close()
    assert [echo.events.get(timeout=5) for _ in range(2)] == ["reset", "reset"]
    st = proxy.stats()
    assert (st.resets, st.open) == (2, 0)
    with _connect(proxy) as c:
        assert _roundtrip(c, b"again") == b"again"


def test_down_refuses_new_connections_and_keeps_open_ones(proxy):
    with _connect(proxy) as a:
        assert _roundtrip(a, b"1") == b"1"
        proxy.set_down(True)
        with pytest.raises(ConnectionResetError):  # at connect() or at the first read
            with _connect(proxy) as refused:
                refused.recv(10)
        assert _roundtrip(a, b"2") == b"2"
        proxy.set_down(False)
        with _connect(proxy) as c:
            assert _roundtrip(c, b"3") == b"3"
    st = proxy.stats()
    assert (st.connections, st.refused) == (3, 1)


def test_unreachable_target_resets_the_client_and_is_counted():
    from agentflux.localkafka import free_port
    with Proxy(target=("127.0.0.1", free_port())) as p:
        with pytest.raises(ConnectionResetError):  # at connect() or at the first read
            with _connect(p) as s:
                s.recv(10)
        assert p.stats().upstream_errors == 1


def test_stop_closes_the_port_and_the_connections(echo):
    p = Proxy(target=echo.server_address).start()
    port = p.port
    s = _connect(p)
    assert _roundtrip(s, b"x") == b"x"
    p.stop()
    assert s.recv(10) == b""  # closed by the proxy
    s.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)


def test_a_given_listen_port_is_used(echo):
    from agentflux.localkafka import free_port
    port = free_port()
    with Proxy(port, target=echo.server_address) as p, _connect(p) as s:
        assert p.port == port and p.address == f"127.0.0.1:{port}"
        assert _roundtrip(s, b"ok") == b"ok"


# --- a real broker behind the proxy ------------------------------------------------------------

@pytest.fixture(scope="module")
def kafka_proxy(tmp_path_factory):
    """A broker of this module's own whose advertised listener is a proxy in front of it."""
    from agentflux.config import Settings

    from .kafka_helpers import start_or_fail
    from agentflux.localkafka import LocalKafka, free_port

    broker_port = free_port()
    # the proxy first: the broker's readiness check connects through the advertised address
    proxy = Proxy(target=("127.0.0.1", broker_port)).start()
    work = tmp_path_factory.mktemp("kafka-proxied")
    kafka = LocalKafka(work_dir=work, cache_dir=Settings.from_env().state_dir, port=broker_port,
                       advertised_port=proxy.port)
    try:
        start_or_fail(kafka)
    except BaseException:
        proxy.stop()
        raise
    yield proxy
    kafka.stop()
    proxy.stop()
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def kproxy(kafka_proxy):
    """The proxy in front of the broker, with no faults at the start and end of each test."""
    def clear():
        kafka_proxy.set_latency(0)
        kafka_proxy.blackhole(False)
        kafka_proxy.set_down(False)
    clear()
    yield kafka_proxy
    clear()


async def _new_topic(proxy: Proxy, partitions: int = 1) -> str:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    name = f"netproxy-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=proxy.address)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()
    return name


def _consumer(proxy: Proxy, topic: str):
    from aiokafka import AIOKafkaConsumer
    return AIOKafkaConsumer(topic, bootstrap_servers=proxy.address, group_id=None,
                            auto_offset_reset="earliest", enable_auto_commit=False,
                            fetch_max_bytes=32 * 1024 * 1024,
                            max_partition_fetch_bytes=32 * 1024 * 1024)


async def _consume_until(consumer, out: list, n: int, deadline_s: float = 60.0) -> None:
    end = time.monotonic() + deadline_s
    while len(out) < n:
        left = end - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"consumed {len(out)} of {n} records")
        batch = await consumer.getmany(timeout_ms=int(min(left, 1.0) * 1000))
        for records in batch.values():
            out.extend(records)


@pytest.mark.integration
async def test_kafka_round_trip_through_the_proxy(kproxy):
    from aiokafka import AIOKafkaProducer
    before = kproxy.stats()
    topic = await _new_topic(kproxy)
    producer = AIOKafkaProducer(bootstrap_servers=kproxy.address, acks="all")
    consumer = _consumer(kproxy, topic)
    await producer.start()
    await consumer.start()
    try:
        for i in range(200):
            await producer.send(topic, b"v%d" % i, key=b"k%d" % (i % 7))
        await producer.flush()
        got: list = []
        await _consume_until(consumer, got, 200)
    finally:
        await producer.stop()
        await consumer.stop()
    assert [r.value for r in got] == [b"v%d" % i for i in range(200)]
    after = kproxy.stats()
    assert after.connections > before.connections
    assert after.bytes_up - before.bytes_up > 200 * 2 and after.bytes_down > before.bytes_down


@pytest.mark.integration
async def test_kafka_works_with_200ms_latency(kproxy):
    from aiokafka import AIOKafkaProducer
    topic = await _new_topic(kproxy)
    kproxy.set_latency(200)
    producer = AIOKafkaProducer(bootstrap_servers=kproxy.address, acks="all",
                                request_timeout_ms=30_000)
    consumer = _consumer(kproxy, topic)
    await producer.start()
    await consumer.start()
    try:
        t0 = time.monotonic()
        await producer.send_and_wait(topic, b"first")
        assert time.monotonic() - t0 >= 0.4  # a produce request and its response: 2 x 200 ms
        futs = [await producer.send(topic, b"m%d" % i) for i in range(300)]
        await asyncio.gather(*futs)
        got: list = []
        await _consume_until(consumer, got, 301)
    finally:
        await producer.stop()
        await consumer.stop()
    assert [r.value for r in got] == [b"first"] + [b"m%d" % i for i in range(300)]


@pytest.mark.integration
async def test_kafka_clients_recover_from_resets_with_no_loss_and_no_duplicates(kproxy):
    from aiokafka import AIOKafkaProducer
    n = 3000
    topic = await _new_topic(kproxy, partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=kproxy.address, acks="all",
                                enable_idempotence=True, linger_ms=2, retry_backoff_ms=50)
    consumer = _consumer(kproxy, topic)
    await producer.start()
    await consumer.start()
    got: list = []
    consuming = asyncio.create_task(_consume_until(consumer, got, n, deadline_s=90))
    resets = []
    try:
        futs = []
        for i in range(n):
            futs.append(await producer.send(topic, b"%d" % i, key=b"s%d" % (i % 13)))
            if i % 500 == 499:
                if i // 500 % 2:  # every other time with the last sends still unacknowledged
                    resets.append(kproxy.reset_all())
                else:
                    await futs[-1]
        results = await asyncio.gather(*futs, return_exceptions=True)
        assert [r for r in results if isinstance(r, BaseException)] == []
        resets.append(kproxy.reset_all())  # and the consumer's connections once more, mid-read
        await consuming
    finally:
        consuming.cancel()
        await producer.stop()
        # aiokafka's stop cancels a fetch task that a reset left in its retry back-off and then
        # awaits it: the task's CancelledError comes out of stop() (seen once in CI). The test's
        # outcome is decided above; an error raised there still propagates.
        with contextlib.suppress(asyncio.CancelledError):
            await consumer.stop()
    # the first reset cut the producer's and the consumer's connections; each later one cut at
    # least the producer's (whichever client had reconnected by then)
    assert resets[0] >= 2 and min(resets) >= 1, resets
    assert kproxy.stats().resets >= sum(resets)
    values = Counter(int(r.value) for r in got)
    assert len(values) == n and set(values) == set(range(n))  # nothing lost
    assert max(values.values()) == 1  # nothing twice
    by_key: dict = {}
    for r in got:  # and a key's records stay in order
        by_key.setdefault(r.key, []).append(int(r.value))
    assert all(v == sorted(v) for v in by_key.values())


@pytest.mark.integration
async def test_the_hostile_stream_crosses_the_proxy_intact_in_every_codec(kproxy):
    from agentflux.bench.hostile import expected_totals, hostile_stream, publish
    from agentflux.streams.codec import decode_record

    records = hostile_stream(3000, bad_fraction=0.01, seed=3)
    topic = await _new_topic(kproxy, partitions=2)
    assert await publish(records, topic, bootstrap_servers=kproxy.address) == len(records)
    consumer = _consumer(kproxy, topic)
    await consumer.start()
    got: list = []
    try:
        await _consume_until(consumer, got, len(records))
    finally:
        await consumer.stop()
    assert Counter((r.key, r.value) for r in got) == Counter((r.key, r.value) for r in records)
    valid = dead = 0
    for r in got:
        out = decode_record(r.value)
        valid += len(out.events)
        dead += len(out.rejected)
    assert {"sent_items": valid + dead, "valid": valid, "dead": dead} == expected_totals(records)
