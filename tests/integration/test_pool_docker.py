"""The container pool against a real Docker Engine API (podman serving it) and real containers."""

import asyncio
import uuid


from agentflux.runtime.instrument import CountingEmitter, Instrumentation
from agentflux.runtime.pool import ContainerPool, DockerBackend
from agentflux.runtime.resources import ResourceSampler
from agentflux.schemas import check




def test_pool_runs_real_containers_warm_and_cold(docker_api):
    client, image, _ = docker_api
    label = uuid.uuid4().hex[:8]
    backend = DockerBackend(client, image, labels={"agentflux.test": label})
    sink = CountingEmitter()
    pool = ContainerPool(pool_size=1, instrumentation=Instrumentation(sink), backend=backend)

    def running():
        return {c.id for c in client.containers.list(filters={"label": f"agentflux.test={label}"})}

    async def scenario():
        a, warm_a = await pool.acquire("react")
        b, warm_b = await pool.acquire("react")
        assert (warm_a, warm_b) == (False, False)
        assert running() == {a, b}
        assert await pool.release("react", a)
        assert not await pool.release("react", b)  # over pool_size: removed
        assert running() == {a}
        c, warm_c = await pool.acquire("react")
        assert (c, warm_c) == (a, True)
        await pool.release("react", c)
        assert await pool.pre_warm("multi_agent", count=3) == 1
        stats = pool.get_pool_stats()
        assert stats["pools"]["multi_agent"]["available"] == 1
        sample = ResourceSampler(Instrumentation(sink), docker_client=client).sample_container(a, "react")
        assert sample["memory_mb"] >= 0
        assert await pool.drain() == 2
        assert running() == set()

    asyncio.run(scenario())
    acq = sink.of_type("pool.acquire")
    assert [e["attrs"]["warm"] for e in acq] == [False, False, True]
    cold = [e["attrs"]["startup_ms"] for e in acq if not e["attrs"]["warm"]]
    warm = [e["attrs"]["startup_ms"] for e in acq if e["attrs"]["warm"]]
    assert min(cold) > max(warm)  # a real container start costs more than a pooled hand-out
    for e in sink.events:
        assert check(e) is None
