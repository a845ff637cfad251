"""The pool manager's checks, in order, with their reasons; idempotency by command_id; the
generation state across a re-created manager; the pool's run-time targets. Containers are local
processes (ProcessBackend) or an in-memory backend; no broker (the integration test has one)."""

from __future__ import annotations

import asyncio
import itertools

import orjson
import pytest

from agentflux import commands
from agentflux.config import ConfigError, Settings
from agentflux.harness import until
from agentflux.runtime.instrument import CountingEmitter, Instrumentation
from agentflux.runtime.pool import ContainerPool, ProcessBackend
from agentflux.runtime.poolmanager import PoolManager
from agentflux.schemas import check

KEY = b"k1-secret"


class MemoryBackend:
    """Containers as ids in a set: what exists, what was created and destroyed."""

    def __init__(self) -> None:
        self.alive: set[str] = set()
        self.created = 0
        self.destroyed = 0
        self._n = itertools.count(1)

    async def create(self, philosophy: str) -> str:
        cid = f"{philosophy}-{next(self._n)}"
        self.alive.add(cid)
        self.created += 1
        return cid

    async def destroy(self, container_id: str) -> None:
        self.alive.discard(container_id)
        self.destroyed += 1

    async def list(self, pool: str) -> list[str]:
        return sorted(c for c in self.alive if c.startswith(f"{pool}-"))


def settings(tmp_path, keys: str = "k1-secret,k0-old") -> Settings:
    return Settings.from_env(env={"AGENTFLUX_COMMAND_KEYS": keys}, state_dir=tmp_path)


gens = commands.Generations()


def cmd(pool="react", target=3, *, key=KEY, generation=None, **kw) -> dict:
    doc = commands.new_command(pool, target, generation or gens.next(pool), "test", {},
                               min_size=kw.pop("min_size", 0), max_size=kw.pop("max_size", 10),
                               **kw)
    return commands.sign(doc, key) if key is not None else doc


def manager(tmp_path, backend=None, **kw) -> PoolManager:
    pool = ContainerPool(pool_size=2, backend=backend or MemoryBackend())
    kw.setdefault("pools", ["react", "cot"])
    kw.setdefault("max_size", 8)
    kw.setdefault("image_allowlist", {"localhost/ok:1"})
    return PoolManager(settings(tmp_path), pool, state_file=tmp_path / "state.json", **kw)


def test_each_check_names_its_reason(tmp_path):
    m = manager(tmp_path)
    good = cmd()
    assert m.check(good) == ("ok", "ok", "")
    assert m.check({"v": 1})[:2] == ("rejected", "malformed")
    assert m.check(cmd(key=None))[:2] == ("rejected", "unsigned")
    assert m.check(cmd(key=b"forged"))[:2] == ("rejected", "bad_signature")
    tampered = dict(good, target=7)  # the signature covers the target
    assert m.check(tampered)[:2] == ("rejected", "bad_signature")
    assert m.check(cmd(key=b"k0-old"))[0] == "ok"  # any configured key verifies (rotation)
    assert m.check(cmd("other"))[:2] == ("rejected", "unknown_pool")
    assert m.check(cmd(target=9, max_size=20))[:2] == ("rejected", "out_of_bounds")  # manager's max
    assert m.check(cmd(target=5, max_size=4))[:2] == ("rejected", "out_of_bounds")  # command's max
    assert m.check(cmd(target=1, min_size=2))[:2] == ("rejected", "out_of_bounds")
    assert m.check(cmd(image="evil/miner"))[:2] == ("rejected", "image_not_allowed")
    assert m.check(cmd(image="localhost/ok:1"))[0] == "ok"


def test_checks_run_in_order(tmp_path):
    """A command wrong in several ways is rejected for the first check it fails."""
    m = manager(tmp_path)
    # unknown pool + out of bounds + bad image, unsigned: the signature comes first
    doc = cmd("other", target=99, image="evil", key=None)
    assert m.check(doc)[1] == "unsigned"
    assert m.check(commands.sign(dict(doc), b"forged"))[1] == "bad_signature"
    assert m.check(commands.sign(dict(doc), KEY))[1] == "unknown_pool"
    doc = commands.sign(cmd("react", target=99, image="evil", key=None), KEY)
    assert m.check(doc)[1] == "out_of_bounds"
    doc = commands.sign(cmd("react", target=2, image="evil", key=None), KEY)
    assert m.check(doc)[1] == "image_not_allowed"


def test_apply_duplicate_and_stale(tmp_path):
    backend = MemoryBackend()
    m = manager(tmp_path, backend)

    async def go():
        first = cmd(target=3)
        assert await m.handle([orjson.dumps(first)]) == {
            "react": {"created": 3, "destroyed": 0, "failed": 0}}
        assert len(backend.alive) == 3 and m.pool.target("react") == 3
        # redelivered, and duplicated inside one batch: nothing changes
        assert await m.handle([orjson.dumps(first), first]) == {}
        assert m.duplicates == 2 and backend.created == 3
        # an older generation (issued before, delivered after) is stale
        old = cmd(target=5, generation=first["generation"] - 1)
        assert await m.handle([old]) == {}
        assert m.rejected == {"stale_generation": 1} and len(backend.alive) == 3
        # not JSON at all
        assert await m.handle([b"{not json"]) == {}
        assert m.rejected["malformed"] == 1
        # scale down: idle ones destroyed
        assert (await m.handle([cmd(target=1)]))["react"]["destroyed"] == 2
        assert len(backend.alive) == 1 and m.applied == 2

    asyncio.run(go())
    text = m.registry.get_sample_value
    assert text("agentflux_pool_commands_total", {"outcome": "applied", "reason": "ok"}) == 2
    assert text("agentflux_pool_commands_total",
                {"outcome": "duplicate", "reason": "duplicate_command_id"}) == 2
    assert text("agentflux_pool_commands_total",
                {"outcome": "rejected", "reason": "stale_generation"}) == 1
    assert text("agentflux_pool_target", {"pool": "react"}) == 1


def test_a_later_command_of_a_batch_wins_and_reconciles_once(tmp_path):
    backend = MemoryBackend()
    m = manager(tmp_path, backend)
    out = asyncio.run(m.handle([cmd(target=6), cmd(target=2), cmd("cot", target=1)]))
    assert out == {"react": {"created": 2, "destroyed": 0, "failed": 0},
                   "cot": {"created": 1, "destroyed": 0, "failed": 0}}
    assert backend.created == 3 and m.applied == 3


def test_rejected_commands_are_logged_one_line(tmp_path, caplog):
    m = manager(tmp_path)
    doc = cmd(key=b"forged")
    with caplog.at_level("WARNING", logger="agentflux.runtime.poolmanager"):
        asyncio.run(m.handle([doc]))
    (rec,) = caplog.records
    line = rec.getMessage()
    assert "\n" not in line
    assert "react" in line and doc["command_id"] in line and "bad_signature" in line


def test_generation_state_survives_a_new_manager(tmp_path):
    backend = MemoryBackend()
    m = manager(tmp_path, backend)
    applied = cmd(target=4)
    asyncio.run(m.handle([applied]))
    saved = orjson.loads((tmp_path / "state.json").read_bytes())
    assert saved["pools"]["react"]["generation"] == applied["generation"]
    assert not list(tmp_path.glob(".state.json.*"))  # the temporary file was renamed

    # a new manager on a new pool object, the same containers (the backend outlives it)
    again = PoolManager(settings(tmp_path), ContainerPool(pool_size=2, backend=backend),
                        pools=["react"], max_size=8, state_file=tmp_path / "state.json")
    assert again.last_generation("react") == applied["generation"]
    assert again.check(applied)[0] == "duplicate"
    assert again.check(cmd(target=2, generation=applied["generation"]))[1] == "stale_generation"
    recovered = asyncio.run(again.recover())
    assert recovered["react"] == {"adopted": 4, "created": 0, "destroyed": 0, "failed": 0}
    assert backend.created == 4 and again.pool.available("react") == 4


def test_recover_trims_extras_and_creates_missing(tmp_path):
    backend = MemoryBackend()
    m = manager(tmp_path, backend)
    asyncio.run(m.handle([cmd(target=2), cmd("cot", target=3)]))

    async def extra():
        for _ in range(3):
            await backend.create("react")  # e.g. left by a crash between create and record
        await backend.destroy(sorted(c for c in backend.alive if c.startswith("cot-"))[0])
    asyncio.run(extra())
    again = manager(tmp_path, backend)
    out = asyncio.run(again.recover())
    assert out["react"] == {"adopted": 5, "created": 0, "destroyed": 3, "failed": 0}
    assert out["cot"] == {"adopted": 2, "created": 1, "destroyed": 0, "failed": 0}
    assert len(asyncio.run(backend.list("react"))) == 2
    assert len(asyncio.run(backend.list("cot"))) == 3


def test_unreadable_state_file_is_one_clear_error(tmp_path):
    (tmp_path / "state.json").write_text("{nope")
    with pytest.raises(ConfigError, match="state file .* is unreadable"):
        manager(tmp_path)


def test_a_manager_without_keys_refuses_to_start(tmp_path):
    pool = ContainerPool(backend=MemoryBackend())
    m = PoolManager(Settings.from_env(env={}, state_dir=tmp_path), pool,
                    state_file=tmp_path / "s.json")
    with pytest.raises(ConfigError, match="pool commands are signed: set AGENTFLUX_COMMAND_KEYS"):
        asyncio.run(m.start())


def test_a_target_is_warm_containers_kept_ready_each_one_taken_replaced_at_once():
    """The pool's run-time target with real processes: ``target`` warm containers kept ready;
    every acquisition starts a replacement in the background (warm + starting = target); a
    release is kept while fewer than target are warm; scaling down destroys idle ones only;
    pool.state events are valid."""
    backend = ProcessBackend()
    sink = CountingEmitter()
    pool = ContainerPool(pool_size=1, backend=backend, instrumentation=Instrumentation(sink))

    async def settled(pool_name: str) -> None:
        await until(lambda: pool.starting(pool_name) == 0, 30, "replacements created")

    async def go():
        assert await pool.reconcile_to("react", 3) == {"created": 3, "destroyed": 0, "failed": 0}
        assert len(await backend.list("react")) == 3
        ids = []
        for _ in range(4):  # 4 acquisitions: warm while the pool has one ready
            cid, warm = await pool.acquire("react")
            ids.append(cid)
            assert warm
            # each one taken is replaced: warm + starting is back at the target at once
            assert pool.available("react") + pool.starting("react") == 3
            await settled("react")
        assert pool.in_use("react") == 4 and pool.available("react") == 3
        assert len(await backend.list("react")) == 7  # 4 in use + 3 warm
        # scale down to 2 while 4 are in use: one idle destroyed, nothing in use is taken
        assert await pool.reconcile_to("react", 2) == {"created": 0, "destroyed": 1, "failed": 0}
        kept = [await pool.release("react", c) for c in ids]
        assert kept == [False] * 4  # the pool holds its 2 warm ones already
        assert [backend.alive(c) for c in ids] == [False] * 4
        assert pool.available("react") == 2
        assert await pool.reconcile_to("react", 0) == {"created": 0, "destroyed": 2, "failed": 0}
        assert await backend.list("react") == []
        # a pool without a target of its own keeps the seed meaning: pool_size idle ones, and
        # nothing replaced on acquisition
        assert await pool.pre_warm("cot", count=3) == 1
        assert pool.target("cot") == 1 and not pool.has_target("cot")
        assert await pool.adopt("cot", pool.idle_ids("cot")) == 0  # already held
        await pool.acquire("cot")
        assert pool.starting("cot") == 0 and pool.available("cot") == 0
        await pool.drain()

    asyncio.run(go())
    states = sink.of_type("pool.state")
    assert [e["attrs"]["target"] for e in states if e["attrs"]["pool"] == "react"][:2] == [3, 3]
    assert any(e["attrs"]["target"] == 0 and e["attrs"]["available"] == 0 for e in states)
    for e in sink.events:
        assert check(e) is None
    assert pool.get_pool_stats()["pools"]["react"]["target"] == 0


class GatedBackend(MemoryBackend):
    """Creations wait for ``gate``; ``now`` and ``most`` count those under way."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.now = self.most = 0

    async def create(self, philosophy: str) -> str:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await self.gate.wait()
            return await super().create(philosophy)
        finally:
            self.now -= 1


def test_replacements_use_at_most_max_starting_slots_and_releases_drop_queued_ones():
    """The engine's creations are the scarce resource: at most ``max_starting`` at once, and a
    replacement still waiting for a slot when released containers have refilled the pool is
    dropped, not created (under load the pool reuses containers instead of trading each
    acquisition for a creation and a removal)."""
    backend = GatedBackend()
    pool = ContainerPool(pool_size=0, backend=backend, max_starting=2)

    async def go():
        scale_up = asyncio.ensure_future(pool.reconcile_to("react", 6))
        await until(lambda: backend.now == 2, 5, "two creations under way")
        backend.gate.set()
        assert await scale_up == {"created": 6, "destroyed": 0, "failed": 0}
        assert backend.most == 2 and len(backend.alive) == 6
        backend.gate.clear()
        taken = [(await pool.acquire("react"))[0] for _ in range(5)]
        await until(lambda: backend.now == 2, 5, "two creations under way")
        assert pool.starting("react") == 5 and pool.available("react") == 1  # 2 + 3 waiting
        assert [await pool.release("react", c) for c in taken[:4]] == [True] * 4
        backend.gate.set()
        await until(lambda: pool.starting("react") == 0, 5, "the replacements to settle")
        assert pool.replacements_dropped == 3  # the 3 waiting ones were not needed any more
        assert backend.created == 6 + 2 and backend.most == 2
        assert pool.available("react") == 6 and pool.in_use("react") == 1
        assert len(backend.alive) == 7  # 6 warm + 1 in use: the surplus one was destroyed
        await pool.drain()

    asyncio.run(go())


def test_cli_refuses_to_start_without_command_keys(monkeypatch, capsys):
    from agentflux.cli import main
    monkeypatch.delenv("AGENTFLUX_COMMAND_KEYS", raising=False)
    assert main(["pool-manager", "--pool", "react"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("agentflux: error: pool commands are signed: set AGENTFLUX_COMMAND_KEYS")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cli_says_how_to_reach_the_docker_api(monkeypatch, capsys, tmp_path):
    from agentflux.cli import main
    monkeypatch.setenv("AGENTFLUX_COMMAND_KEYS", "k1")
    url = f"unix://{tmp_path}/absent.sock"
    assert main(["pool-manager", "--docker-url", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"agentflux: error: cannot reach the Docker API at {url}")
    assert "--docker-url" in err and "DOCKER_HOST" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cli_image_must_be_allowed(monkeypatch, capsys):
    from agentflux.cli import main
    monkeypatch.setenv("AGENTFLUX_COMMAND_KEYS", "k1")
    assert main(["pool-manager", "--image", "a/b", "--allow-image", "c/d"]) == 2
    assert "--image a/b is not in the --allow-image list" in capsys.readouterr().err


def test_a_restart_with_narrower_bounds_holds_the_target_within_them(tmp_path):
    backend = MemoryBackend()
    m = manager(tmp_path, backend)
    asyncio.run(m.handle([cmd(target=6)]))
    narrower = manager(tmp_path, backend, max_size=4)
    out = asyncio.run(narrower.recover())
    assert out["react"] == {"adopted": 6, "created": 0, "destroyed": 2, "failed": 0}
    assert narrower.last_target("react") == 6  # what was applied stays on record


def test_resync_replaces_containers_removed_behind_the_pools_back(tmp_path):
    backend = MemoryBackend()
    m = manager(tmp_path, backend)

    async def go():
        await m.handle([cmd(target=3)])
        victim = sorted(backend.alive)[0]
        backend.alive.discard(victim)  # e.g. `docker rm -f` by hand
        assert await m.resync("react") == 1
        assert victim not in m.pool.idle_ids("react")
        assert await m.reconcile("react") == {"created": 1, "destroyed": 0, "failed": 0}
        assert len(backend.alive) == 3 and await m.resync("react") == 0

    asyncio.run(go())
