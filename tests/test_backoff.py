"""The one backoff schedule: doubling from the base delay, capped, with jitter
inside its bounds; bad settings are refused by name."""

from __future__ import annotations

import pytest
from generals_rl.backoff import Backoff
from generals_rl.storage import RetryPolicy


def test_delays_double_up_to_the_cap_within_the_jitter():
    backoff = Backoff(base_delay=0.1, max_delay=1.0, jitter=(0.5, 1.5))
    for failures, base in ((1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (30, 1.0)):
        delays = [backoff.delay(failures) for _ in range(200)]
        assert all(0.5 * base <= d <= 1.5 * base for d in delays), failures
        assert max(delays) - min(delays) > 0.1 * base  # jittered, not constant


def test_without_jitter_the_delay_is_exact():
    assert Backoff(base_delay=0.25, max_delay=10.0, jitter=(1.0, 1.0)).delay(3) == 1.0


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"base_delay": -1.0}, "base_delay"),
        ({"jitter": (1.5, 0.5)}, "jitter"),
    ],
)
def test_bad_settings_are_refused(options, words):
    with pytest.raises(ValueError, match=words):
        Backoff(**options)


def test_the_storage_retry_policy_is_a_backoff_with_attempts():
    policy = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0)
    assert isinstance(policy, Backoff) and policy.delay(2) == 0.0
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(TypeError):
        RetryPolicy(3)  # keyword arguments only
