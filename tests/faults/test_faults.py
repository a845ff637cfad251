"""The fault suite on the real broker: every scenario of ``agentflux bench faults`` at CI size
(``AGENTFLUX_FAULT_EVENTS``, default 20,000 events). Pass: nothing lost, nothing duplicated,
valid + dead-lettered (+ counted drops) = sent, no crash loop."""

from __future__ import annotations

import os

import pytest

from agentflux.bench import faults

N = faults.fault_events(20_000)


def check(out: faults.Outcome) -> None:
    d = out.to_dict()
    assert out.ok, d
    assert out.recovery_s is not None


@pytest.mark.parametrize("at", [0.25, 0.50, 0.75])
def test_worker_kill_9_at_a_quarter_half_and_three_quarters(kafka_bootstrap, at):
    out = faults.worker_kill(kafka_bootstrap, N, at)
    check(out)
    assert out.acked == out.sent == N


def test_broker_kill_9_mid_stream_and_restart(kafka_bootstrap):
    out = faults.broker_kill(N)
    check(out)
    assert out.dropped == 0 and out.landed == N


def test_broker_down_longer_than_the_emitter_buffer_spools_and_delivers_in_order():
    out = faults.broker_outage_spool(N)
    check(out)
    assert out.dropped == 0 and out.landed == N
    assert "events out of session order: 0" in out.notes


def test_beyond_the_spool_bound_drops_are_counted_never_silent():
    out = faults.broker_outage_spool(N, spool_max_bytes=64 * 1024)
    check(out)
    assert out.dropped > 0 and out.landed == N - out.dropped


def test_a_runtime_restarted_during_the_outage_delivers_its_spool():
    out = faults.broker_outage_spool(N, restart_runtime=True)
    check(out)
    assert out.dropped == 0 and out.landed == N


@pytest.mark.parametrize("fault", ["latency", "blackhole", "resets"])
def test_network_faults_between_every_client_and_the_broker(fault):
    out = faults.network(N, fault)
    check(out)
    assert out.dropped == 0 and out.landed == N


def test_hostile_input_at_one_percent(kafka_bootstrap):
    out = faults.hostile(kafka_bootstrap, max(N, 20_000))
    check(out)
    assert out.dead_lettered >= 20  # every hostile kind at least once


def test_disk_full_on_the_history_volume(kafka_bootstrap):
    if os.geteuid() != 0:
        pytest.fail("the disk-full scenario mounts a small tmpfs and needs root (CI runs as "
                    "root)", pytrace=False)
    out = faults.disk_full(kafka_bootstrap, N)
    check(out)
    assert any("worker exit 70" in n and "log: True" in n for n in out.notes), out.notes
