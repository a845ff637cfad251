"""The harness's waits say what went wrong, not only that time ran out."""

import pytest

from agentflux.harness import wait_until


def test_a_wait_that_times_out_names_the_last_error_it_saw():
    def refused():
        raise ConnectionRefusedError(111, "Connection refused")
    with pytest.raises(TimeoutError, match=r"the endpoint \(the last try: "
                       r"ConnectionRefusedError: \[Errno 111\] Connection refused\)"):
        wait_until(refused, 0.2, "the endpoint", interval_s=0.01)


def test_a_wait_whose_condition_answered_false_last_names_no_stale_error():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionRefusedError(111, "Connection refused")
        return False
    with pytest.raises(TimeoutError) as err:
        wait_until(flaky, 0.2, "the endpoint", interval_s=0.01)
    assert str(err.value) == "timed out after 0.2s waiting for the endpoint"
