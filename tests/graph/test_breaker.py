"""The circuit breaker of one target, driven with explicit times (no sleeping)."""

from __future__ import annotations

from gateway.state.target import CLOSED, HALF_OPEN, OPEN, TargetState

from .fakes import breaker_policy


def fresh() -> TargetState:
    return TargetState("p/m")


def test_opens_at_the_failure_threshold():
    """failure_threshold failures inside the window open the circuit."""
    policy, s = breaker_policy(failure_threshold=3, min_requests=100), fresh()
    for t in (1.0, 2.0):
        s.record(policy, True, t)
    assert s.state == CLOSED and s.allow(policy, 2.5)
    s.record(policy, True, 3.0)
    assert s.state == OPEN
    assert not s.allow(policy, 3.1) and not s.available(policy, 3.1)


def test_failures_outside_the_window_do_not_count():
    """Failures older than the window are forgotten."""
    policy, s = breaker_policy(failure_threshold=3, window=10.0, min_requests=100), fresh()
    s.record(policy, True, 0.0)
    s.record(policy, True, 1.0)
    s.record(policy, True, 20.0)
    assert s.state == CLOSED


def test_opens_at_the_failure_rate_after_min_requests():
    """failure_rate opens the circuit only once min_requests were seen."""
    policy = breaker_policy(failure_threshold=100, failure_rate=0.5, min_requests=10)
    s = fresh()
    for i in range(4):
        s.record(policy, True, float(i))
    for i in range(4, 9):
        s.record(policy, False, float(i))
    assert s.state == CLOSED  # 4 of 9: too few requests, rate under the threshold anyway
    s.record(policy, True, 9.0)  # 5 of 10 = 0.5
    assert s.state == OPEN


def test_half_open_after_cooldown_lets_limited_probes():
    """After the cooldown the circuit lets half_open_requests probes through, no more."""
    policy, s = breaker_policy(failure_threshold=1, cooldown=5.0, half_open_requests=2), fresh()
    s.record(policy, True, 0.0)
    assert not s.allow(policy, 4.9)
    assert s.available(policy, 5.0)
    assert s.allow(policy, 5.0) and s.state == HALF_OPEN
    assert s.allow(policy, 5.1)
    assert not s.allow(policy, 5.2) and not s.available(policy, 5.2)


def test_probe_success_closes():
    """A successful probe closes the circuit and clears the window."""
    policy, s = breaker_policy(failure_threshold=1, cooldown=1.0), fresh()
    s.record(policy, True, 0.0)
    assert s.allow(policy, 1.0)
    s.record(policy, False, 1.1)
    assert s.state == CLOSED and s.window_failures == 0
    assert s.transitions == {OPEN: 1, HALF_OPEN: 1, CLOSED: 1}


def test_probe_failure_reopens():
    """A failed probe opens the circuit again for a new cooldown."""
    policy, s = breaker_policy(failure_threshold=1, cooldown=1.0), fresh()
    s.record(policy, True, 0.0)
    assert s.allow(policy, 1.0)
    s.record(policy, True, 1.2)
    assert s.state == OPEN
    assert not s.allow(policy, 2.1) and s.allow(policy, 2.2)


def test_disabled_breaker_never_opens():
    """enabled: false counts but never opens."""
    policy, s = breaker_policy(enabled=False, failure_threshold=1), fresh()
    for t in range(10):
        s.record(policy, True, float(t))
    assert s.allow(policy, 10.0) and s.errors == 10


def test_snapshot_reports_window_rate():
    """The snapshot shows the breaker state and the error rate in the window."""
    policy, s = breaker_policy(failure_threshold=100, min_requests=100), fresh()
    s.record(policy, True, 0.0)
    s.record(policy, False, 0.5)
    snap = s.snapshot(policy, 1.0)
    assert snap["breaker"] == "closed" and snap["window_error_rate"] == 0.5
    assert snap["requests"] == 2 and snap["errors"] == 1
