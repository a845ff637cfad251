"""The Prometheus freshness figure of ``agentflux bench pipeline``: event time to the first
query answer that counts the event."""

from agentflux.bench.pipeline import visibility_freshness

S = 10**9


def test_each_event_is_visible_at_the_first_answer_that_counts_it():
    events = [10 * S, 11 * S, 12 * S, 13 * S]  # event times
    # (answer time, counter): 100 before the phase; two events counted at 12.5 s, all at 14 s
    answers = [(11 * S, 100.0), (12.5 * S, 102.0), (13 * S, 102.0), (14 * S, 104.0)]
    fresh, unseen = visibility_freshness(events, answers, baseline=100.0)
    assert fresh == [2.5, 1.5, 2.0, 1.0] and unseen == 0


def test_events_never_counted_are_reported_and_a_counter_reset_does_not_go_back():
    events = [1 * S, 2 * S, 3 * S]
    answers = [(2 * S, 1.0), (3 * S, 0.0), (4 * S, 1.0)]  # (a restarted target reads lower)
    fresh, unseen = visibility_freshness(events, answers, baseline=0.0)
    assert fresh == [1.0] and unseen == 2
    assert visibility_freshness([], answers, 0.0) == ([], 0)
    assert visibility_freshness(events, [], 0.0) == ([], 3)
