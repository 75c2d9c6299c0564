"""Unit tests of the safety supervisor's latch (rehab_robot.safety.supervisor)."""

from rehab_robot.safety.rules import Violation
from rehab_robot.safety.supervisor import SafetyLatch

VIOLATION = Violation("position", "elbow_flexion", 2.5, 2.4, "rad")


def fresh_latch(now=0.0):
    latch = SafetyLatch()
    refresh(latch, now)
    return latch


def refresh(latch, now):
    latch.on_signal("ft_sensor/wrench", now)
    latch.on_signal("joint_commands", now)
    latch.on_state(now, [])


def test_no_motion_before_signals_arrive():
    """Without joint states and F/T readings, motion is not permitted (missing signal = stop)."""
    latch = SafetyLatch()
    assert not latch.motion_permitted(0.0)
    latch.on_state(0.0, [])
    assert not latch.motion_permitted(0.0)
    assert "ft_sensor/wrench" in latch.describe(0.0) and "joint_commands" in latch.describe(0.0)


def test_fresh_safe_state_permits_motion():
    """Fresh, safe state and no latch: motion permitted."""
    assert fresh_latch().motion_permitted(0.05)


def test_violation_latches_until_reset_after_cause_is_gone():
    """A violation latches; reset fails while it persists and succeeds once it is gone."""
    latch = fresh_latch()
    latch.on_state(0.01, [VIOLATION])
    assert latch.latched and not latch.motion_permitted(0.01)
    ok, message = latch.reset(0.02)
    assert not ok and "elbow_flexion" in message
    refresh(latch, 0.03)
    assert not latch.motion_permitted(0.03), "the latch holds even after the cause is gone"
    ok, message = latch.reset(0.04)
    assert ok and "elbow_flexion" in message
    assert latch.motion_permitted(0.04)


def test_estop_latches_and_reset_clears():
    """An e-stop latches regardless of state, and reset clears it when the state is fine."""
    latch = fresh_latch()
    latch.estop()
    assert not latch.motion_permitted(0.01)
    assert "e-stop" in latch.describe(0.01)
    assert latch.reset(0.02)[0]
    assert latch.motion_permitted(0.02)


def test_stale_state_stops_without_latching():
    """If joint states stop arriving, motion stops while they are missing; reset cannot clear that."""
    latch = fresh_latch()
    assert not latch.motion_permitted(0.2)
    assert "joint_states stale" in latch.describe(0.2)
    ok, message = latch.reset(0.2)
    assert not ok and "stale" in message
    refresh(latch, 0.21)
    assert latch.motion_permitted(0.21) and not latch.latched


def test_command_gap_stops_motion():
    """Commands older than 80 ms stop motion: every node then sees the gap the driver reacts to."""
    latch = fresh_latch()
    latch.on_state(0.09, [])
    latch.on_signal("ft_sensor/wrench", 0.09)
    assert not latch.motion_permitted(0.09)
    assert "joint_commands stale" in latch.describe(0.09)
