"""The simulator on the real runtime components, through the real broker and worker."""

import asyncio

from agentflux.sinks.catalog import connect

from agentflux.harness import WorkerProcess
from agentflux.runtime.agentsim import AgentSimConfig, ComponentRuntime
from agentflux.runtime.emitter import Emitter


def test_component_runtime_events_land_with_real_component_behaviour(settings, tmp_path):
    worker = WorkerProcess(settings, log_path=tmp_path / "worker.log").start()
    try:
        with Emitter(settings) as em:
            rt = ComponentRuntime(em, AgentSimConfig(agents=6, sessions=40, seed=5))
            asyncio.run(rt.run())
            assert em.flush(60)
            st = em.stats()
        assert st.acked == st.emitted > 0
        worker.wait_for(lambda m: m.get('agentflux_history_rows{table="events"}', 0) >= st.emitted,
                        120, "every component event to land")
    finally:
        assert worker.stop() == 0
    con = connect(settings.history_path)
    q = lambda sql: con.execute(sql).fetchall()
    assert q("SELECT count(*) FROM deadletters") == [(0,)]
    cached = q("SELECT count(*) FILTER (WHERE attrs->>'cached' = 'true'), count(*) FROM events "
               "WHERE type = 'tool.call'")[0]
    assert cached[0] > 0 and cached[1] > cached[0]
    assert q("SELECT count(*) FROM events WHERE type = 'context.compress' "
             "AND CAST(attrs->>'tokens_after' AS INT) * 3 <= CAST(attrs->>'tokens_before' AS INT)")[0][0] > 0
    warm = dict(q("SELECT attrs->>'warm', count(*) FROM events WHERE type = 'pool.acquire' GROUP BY 1"))
    assert warm.get("true", 0) > 0 and warm.get("false", 0) > 0
    assert q("SELECT count(*) FROM events WHERE type = 'routing.decision'")[0][0] > 0
    assert q("SELECT count(*) FROM events WHERE type = 'prompt_cache.lookup' AND attrs->>'outcome' = 'hit'")[0][0] > 0
    assert q("SELECT count(*) FROM events WHERE type = 'executor.task'")[0][0] > 0
    reads = q("SELECT sum(CAST(attrs->>'cache_read_tokens' AS BIGINT)) FROM events WHERE type = 'llm.call'")[0][0]
    assert reads > 0
    assert q("SELECT count(*) FROM events WHERE type = 'cache.stats'")[0][0] >= 1
    con.close()
