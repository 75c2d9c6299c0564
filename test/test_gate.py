"""Unit tests of the driver's motion gate (rehab_robot.safety.gate)."""

import numpy as np
import pytest

from rehab_robot.hardware.interface import JointCommand
from rehab_robot.safety.gate import HeartbeatMonitor, MotionGate

HERE = np.array([0.1, 0.2, 0.0, 0.5])
#: A commanded velocity [rad/s] of a motion under way (the elbow starting to move).
MOVING = np.array([0.0, 0.0, 0.0, 0.01])


def command(position=HERE, velocity=MOVING):
    return JointCommand(np.array(position, float), np.array(velocity, float), np.zeros(4))


def open_gate(now=0.0):
    gate = MotionGate(heartbeat_timeout=0.05, command_timeout=0.1, resume_tolerance=0.05)
    gate.on_heartbeat(now, True)
    gate.on_command(now, command())
    return gate


def test_gate_opens_only_with_fresh_heartbeat_and_command():
    """With a permitting heartbeat and a matching command the gate opens."""
    decision = open_gate().decide(0.01, HERE)
    assert decision.move and decision.command is not None


def test_gate_closed_without_heartbeat():
    """No heartbeat yet means hold."""
    gate = MotionGate()
    gate.on_command(0.0, command())
    decision = gate.decide(0.0, HERE)
    assert not decision.move and "heartbeat" in decision.reason


def test_gate_closes_when_heartbeat_goes_stale():
    """A heartbeat older than the timeout closes the gate (supervisor died)."""
    gate = open_gate()
    assert gate.decide(0.04, HERE).move
    gate.on_command(0.06, command())
    decision = gate.decide(0.06, HERE)
    assert not decision.move and "heartbeat lost" in decision.reason


def test_gate_closes_on_supervisor_stop():
    """A heartbeat saying 'not permitted' closes the gate."""
    gate = open_gate()
    gate.on_heartbeat(0.01, False)
    assert gate.decide(0.01, HERE).reason == "safety supervisor stop"


def test_gate_closes_when_commands_stop():
    """Commands older than the timeout close the gate (controller died)."""
    gate = open_gate()
    for i in range(1, 21):
        gate.on_heartbeat(i * 0.01, True)
    decision = gate.decide(0.2, HERE)
    assert not decision.move and "commands lost" in decision.reason


def test_gate_waits_for_a_matching_command_after_hold():
    """Leaving hold needs a command near the arm's position: no jump on resume."""
    gate = MotionGate(resume_tolerance=0.05)
    gate.on_heartbeat(0.0, True)
    gate.on_command(0.0, command(HERE + [0.0, 0.0, 0.0, 0.3]))
    decision = gate.decide(0.0, HERE)
    assert not decision.move and "away from the arm" in decision.reason
    gate.on_command(0.01, command(HERE + 0.01))
    decision = gate.decide(0.01, HERE)
    assert decision.move
    np.testing.assert_allclose(decision.command.position, HERE + 0.01)


def test_gate_keeps_holding_for_commands_that_do_not_move():
    """A controller that only follows the arm (session paused) never takes it out of hold."""
    gate = MotionGate()
    gate.on_heartbeat(0.0, True)
    gate.on_command(0.0, command(velocity=np.zeros(4)))
    decision = gate.decide(0.0, HERE)
    assert not decision.move and "motion starts" in decision.reason
    gate.on_command(0.01, command())
    assert gate.decide(0.01, HERE).move
    gate.on_command(0.02, command(velocity=np.zeros(4)))
    assert gate.decide(0.02, HERE).move, "once following, a hold point of the motion is followed"


def test_disengage_requires_a_new_matching_motion():
    """After disengage() (a fault cleared) the drives wait for a new motion from where the arm is."""
    gate = open_gate()
    assert gate.decide(0.0, HERE).move
    gate.disengage()
    gate.on_command(0.01, command(HERE + 0.2))
    assert not gate.decide(0.01, HERE).move


def test_engaged_gate_follows_commands_that_lead_the_arm_within_tolerance():
    """Once engaged, commands are followed as they lead the arm (tracking), up to the following tolerance."""
    gate = open_gate()
    assert gate.decide(0.0, HERE).move
    gate.on_command(0.01, command(HERE + 0.09))
    assert gate.decide(0.01, HERE).move


def test_setpoint_jump_while_following_is_a_following_error():
    """A setpoint that jumps away from the arm while following makes the drives hold.

    Seen under load: a controller whose joint_states were delayed 250 ms held the arm at a
    stale position, 0.155 rad behind it, and the drives slammed the elbow at their torque limit.
    """
    gate = MotionGate(following_tolerance=0.1, joint_names=["a", "b", "c", "elbow_flexion"])
    gate.on_heartbeat(0.0, True)
    gate.on_command(0.0, command())
    assert gate.decide(0.0, HERE).move
    gate.on_command(0.01, command(HERE - [0.0, 0.0, 0.0, 0.155], velocity=np.zeros(4)))
    decision = gate.decide(0.01, HERE)
    assert not decision.move
    assert "following error: elbow_flexion" in decision.reason and "0.155 rad apart" in decision.reason
    # The drives stay in hold until a motion starts from where the arm is.
    gate.on_command(0.02, command(HERE - [0.0, 0.0, 0.0, 0.155]))
    assert not gate.decide(0.02, HERE).move
    gate.on_command(0.03, command(HERE))
    assert gate.decide(0.03, HERE).move


def test_following_error_counts_the_carried_forward_setpoint():
    """A late command is carried along its velocity before the gap is measured (no false alarm)."""
    gate = MotionGate(following_tolerance=0.1)
    gate.on_heartbeat(0.0, True)
    gate.on_command(0.0, command(HERE, velocity=[0.0, 0.0, 0.0, 1.0]))
    assert gate.decide(0.0, HERE).move
    gate.on_heartbeat(0.04, True)
    arm = HERE + [0.0, 0.0, 0.0, 0.08]  # the arm moved on with the command, 80 ms later
    assert gate.decide(0.08, arm).move


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_command_is_refused(bad):
    """A command with NaN/inf is refused and never reaches the drives."""
    gate = open_gate()
    with pytest.raises(ValueError):
        gate.on_command(0.01, command(HERE + bad))
    assert np.all(np.isfinite(gate.decide(0.01, HERE).command.position))


def test_heartbeat_monitor_reasons():
    """The heartbeat monitor names why motion is not permitted."""
    monitor = HeartbeatMonitor(timeout=0.05)
    assert monitor.closed_reason(0.0) == "no safety heartbeat yet"
    monitor.on_heartbeat(0.0, True)
    assert monitor.permits(0.05)
    assert "lost" in monitor.closed_reason(0.051)


def test_open_gate_carries_the_setpoint_along_its_velocity():
    """Between commands the position setpoint moves on with the commanded velocity."""
    gate = MotionGate()
    gate.on_heartbeat(0.0, True)
    gate.on_command(0.0, JointCommand(HERE.copy(), np.array([0.0, 0.0, 0.0, 1.0]), np.zeros(4)))
    decision = gate.decide(0.02, HERE)
    assert decision.move
    np.testing.assert_allclose(decision.command.position, HERE + [0.0, 0.0, 0.0, 0.02])


def test_heartbeat_gap_between_checks_counts_as_interruption():
    """A gap longer than the timeout is remembered even if no check fell inside it."""
    monitor = HeartbeatMonitor(timeout=0.05)
    monitor.on_heartbeat(0.0, True)
    monitor.on_heartbeat(0.07, True)
    assert monitor.permits(0.07)
    assert monitor.take_interruption()
    assert not monitor.take_interruption(), "an interruption is reported once"


def test_gate_closes_for_an_interruption_it_did_not_see():
    """The driver holds after a heartbeat gap even if the heartbeat is fresh again at its check."""
    gate = open_gate()
    assert gate.decide(0.0, HERE).move
    gate.on_heartbeat(0.08, True)
    gate.on_command(0.08, command())
    assert gate.decide(0.08, HERE).reason == "safety heartbeat interrupted"
    assert gate.decide(0.081, HERE).move


def test_drive_stop_reported_by_the_driver_counts_as_interruption():
    """A stop only the driver saw (its own heartbeat gap, a fault) interrupts the others too."""
    monitor = HeartbeatMonitor(0.05)
    monitor.on_heartbeat(0.0, True)
    monitor.on_heartbeat(0.01, True)
    assert not monitor.take_interruption()
    monitor.on_drives_stopped("safety heartbeat lost (61 ms old)")
    assert monitor.permits(0.02), "the heartbeat itself is still fresh and True"
    assert monitor.take_interruption() and not monitor.take_interruption()
    assert monitor.interruption == "drives stopped: safety heartbeat lost (61 ms old)"
