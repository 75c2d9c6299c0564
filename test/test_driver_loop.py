"""Unit tests of the driver's cycle and fault state machine (rehab_robot.hardware.driver_loop).

The backend is the real simulated arm with faults injected through its command socket
(rehab_robot.hardware.fault_injection), driven cycle by cycle in this process.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from rehab_robot.errors import ConfigError, HardwareError
from rehab_robot.hardware.driver_loop import DriverLoop, DriverState, default_budget
from rehab_robot.hardware.fault_injection import FaultInjectingArm, send_fault
from rehab_robot.hardware.interface import JointCommand
from rehab_robot.hardware.registry import backend_class, backend_options
from rehab_robot.safety.gate import MotionGate

PERIOD = 0.002


class Rig:
    """A driver loop on a fault-injecting simulated arm, with a controller that follows the arm."""

    # The default budget is far above a normal cycle (~0.1 ms), so that a machine busy with
    # other work never turns a slow cycle into a budget fault in tests about other faults.
    def __init__(self, tmp_path, budget=0.25):
        self.socket = str(tmp_path / "faults.sock")
        self.arm = FaultInjectingArm(fault_socket=self.socket)
        self.gate = MotionGate()
        self.published = []
        self.logs = []
        self.loop = DriverLoop(self.arm, self.gate, budget, self.published.append,
                               lambda level, text: self.logs.append((level, text)))
        self.velocity = np.array([0.0, 0.0, 0.0, 0.2])

    def run(self, cycles, permitted=True, moving=True):
        for _ in range(cycles):
            now = time.monotonic()
            self.gate.on_heartbeat(now, permitted)
            position = self.arm.read().position if not self.published else self.published[-1].position
            velocity = self.velocity if moving else np.zeros(4)
            self.gate.on_command(now, JointCommand(position.copy(), velocity, np.zeros(4)))
            self.loop.cycle(now)
            time.sleep(PERIOD)

    def inject(self, command):
        send_fault(self.socket, command)

    def close(self):
        self.arm.close()


@pytest.fixture
def rig(tmp_path):
    rig = Rig(tmp_path)
    yield rig
    rig.close()


def test_follows_when_permitted_and_quick_stops_when_not(rig):
    """Permission and a moving command make the drives follow; losing permission holds them."""
    rig.run(5)
    assert rig.loop.state is DriverState.FOLLOWING and rig.arm.enabled
    rig.run(3, permitted=False)
    assert rig.loop.state is DriverState.HOLDING and not rig.arm.enabled
    assert rig.loop.status().quick_stops == 1
    assert rig.logs[-1] == ("warning", "quick stop and hold: safety supervisor stop")


def test_starting_until_the_supervisor_first_answers(rig):
    """Before any heartbeat the driver says it is starting and holds."""
    rig.loop.cycle(time.monotonic())
    assert rig.loop.state is DriverState.STARTING and not rig.arm.enabled


def test_a_single_read_error_is_a_fault_until_reset(rig):
    """One failed read() holds the arm and refuses motion until the fault is cleared on reset."""
    rig.run(5)
    rig.inject("read_raise_once elbow_flexion")
    rig.run(3)
    status = rig.loop.status()
    assert status.state is DriverState.FAULT and status.fault_joint == "elbow_flexion"
    assert "read() failed once" in status.reason and not rig.arm.enabled
    rig.run(10)
    assert rig.loop.state is DriverState.FAULT, "a fault is never cleared without a reset"
    rig.loop.request_fault_clear()
    rig.run(1)
    assert rig.loop.state is DriverState.HOLDING
    rig.run(3)
    assert rig.loop.state is DriverState.FOLLOWING


def test_a_persistent_fault_survives_a_reset_until_it_is_gone(rig):
    """clear_fault() fails while the fault persists: still FAULT, with a new fault id."""
    rig.run(5)
    rig.inject("read_raise")
    rig.run(3)
    first = rig.loop.status().fault_id
    rig.loop.request_fault_clear()
    rig.run(2)
    status = rig.loop.status()
    assert status.state is DriverState.FAULT and status.fault_id == first + 1
    assert "fault not cleared" in status.reason
    rig.inject("clear")
    rig.loop.request_fault_clear()
    rig.run(2)
    assert rig.loop.state in (DriverState.HOLDING, DriverState.FOLLOWING)


def test_write_error_is_a_fault(rig):
    """A failing write() while following holds the arm and names the cause."""
    rig.run(5)
    rig.inject("write_raise shoulder_flexion")
    rig.run(3)
    status = rig.loop.status()
    assert status.state is DriverState.FAULT and "write() failed" in status.reason
    assert status.fault_joint == "shoulder_flexion" and not rig.arm.enabled


def test_nan_in_a_sample_is_a_fault_naming_the_joint(rig):
    """A sample with NaN is bad input from the device: a fault naming the joint and field."""
    rig.run(5)
    rig.inject("nan elbow_flexion")
    rig.run(2)
    status = rig.loop.status()
    assert status.state is DriverState.FAULT and status.fault_joint == "elbow_flexion"
    assert "nan in position" in status.reason.lower()
    assert all(np.all(np.isfinite(s.position)) for s in rig.published), "a NaN sample is never published"


def test_device_lost_leaves_the_drives_alone_and_publishes_nothing(rig):
    """A lost device cannot be told to hold: the driver stops talking to it and publishes nothing."""
    rig.run(5)
    rig.inject("device_lost")
    rig.run(2)
    count = len(rig.published)
    rig.run(5)
    status = rig.loop.status()
    assert status.state is DriverState.FAULT and status.device_lost
    assert len(rig.published) == count


def test_read_over_budget_three_cycles_in_a_row_is_a_fault(tmp_path):
    """A read() that blocks beyond the declared budget, cycle after cycle, is a fault."""
    # A budget far above a normal cycle (~0.1 ms): a busy machine must not add a slow cycle.
    rig = Rig(tmp_path, budget=0.02)
    try:
        rig.run(5)
        rig.inject("read_block 0.04")
        rig.run(2)
        assert rig.loop.state is DriverState.FOLLOWING, "one or two slow cycles are counted, not a fault"
        rig.run(2)
        status = rig.loop.status()
        assert status.state is DriverState.FAULT and "over the backend's budget of 20.0 ms" in status.reason
        assert status.over_budget_cycles >= 3
    finally:
        rig.close()


def test_over_budget_while_holding_is_a_fault_only_when_it_lasts(tmp_path):
    """While the drives hold, a burst of slow cycles (a busy machine starting the graph) is
    counted and logged, not a fault; BUDGET_FAULT_CYCLES_HOLDING in a row still are one."""
    from rehab_robot.hardware.interface import BUDGET_FAULT_CYCLES_HOLDING

    rig = Rig(tmp_path, budget=0.02)
    try:
        rig.run(5, permitted=False)
        rig.inject("read_block 0.04")
        rig.run(5, permitted=False)
        assert rig.loop.state is not DriverState.FAULT
        assert rig.loop.status().over_budget_cycles >= 5
        assert any(level == "warning" and "while holding" in text for level, text in rig.logs), rig.logs
        rig.run(BUDGET_FAULT_CYCLES_HOLDING - 5, permitted=False)
        status = rig.loop.status()
        assert status.state is DriverState.FAULT and "over the backend's budget of 20.0 ms" in status.reason
    finally:
        rig.close()


def test_default_budget_is_half_the_period_and_checked():
    """Without a declared budget a backend gets half the loop period; a bad one is refused."""
    assert default_budget(500.0, None) == pytest.approx(0.001)
    assert default_budget(500.0, 0.0005) == 0.0005
    for bad in (0.0, -1.0, float("nan"), float("inf"), "1"):
        with pytest.raises(ValueError):
            default_budget(500.0, bad)


def test_fault_backend_options_are_checked_without_binding_the_socket(tmp_path):
    """check_options refuses a bad option before any process starts, and opens nothing."""
    cls = backend_class("sim_faults")
    path = tmp_path / "x.sock"
    options = backend_options(f"{{fault_socket: {path}, cycle_budget: 0.002}}", cls)
    assert options["fault_socket"] == str(path) and not path.exists()
    with pytest.raises(ConfigError, match="cycle_budget"):
        backend_options(f"{{fault_socket: {path}, cycle_budget: .nan}}", cls)
    with pytest.raises(ConfigError, match="rate_hz"):
        backend_options(f"{{fault_socket: {path}, rate_hz: 10}}", cls)


def test_hardware_error_names_joint_and_reason():
    """HardwareError reads as 'joint: reason' and keeps its fields."""
    error = HardwareError("overcurrent", joint="elbow_flexion", device_lost=False)
    assert str(error) == "elbow_flexion: overcurrent" and error.reason == "overcurrent"
    assert str(HardwareError("bus-off", device_lost=True)) == "bus-off"
