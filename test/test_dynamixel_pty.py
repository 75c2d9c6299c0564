"""The dynamixel backend against the emulator in another process, over a real pseudo-terminal."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import yaml

from rehab_robot.errors import HardwareError
from rehab_robot.hardware.dynamixel import DynamixelArm, default_config_path
from rehab_robot.hardware.interface import JointCommand

#: Safety bound [s] for anything that must not hang the control loop.
NO_HANG = 1.0


class EmulatorProcess:
    """``rehab-robot emulate dynamixel`` in a child process, commanded over stdin."""

    def __init__(self, tmp_path, *servos: str) -> None:
        self.link = str(tmp_path / "ttyDXL")
        self.path_file = tmp_path / "pty-path"
        args = [sys.executable, "-m", "rehab_robot.emulators.dynamixel", "--link", self.link,
                "--path-file", str(self.path_file)]
        for spec in servos:
            args += ["--servo", spec]
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, bufsize=1)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        first = self.next_line(30.0)
        assert first.startswith("PTY /dev/"), first
        # The three ways of finding the port agree.
        assert first.split()[1] == self.path_file.read_text().strip() == os.path.realpath(self.link)

    def _pump(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def next_line(self, timeout: float = 5.0) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"emulator said nothing for {timeout} s; stderr: "
                                 f"{self.process.stderr.read() if self.process.poll() is not None else ''}") from None

    def command(self, line: str) -> str:
        """Send one command and return the emulator's answer line."""
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        answer = self.next_line()
        assert not answer.startswith("error"), answer
        return answer

    def register(self, servo_id: int, address: int, size: int) -> int:
        return int(self.command(f"reg {servo_id} {address} {size}").split()[1])

    def state(self) -> tuple[np.ndarray, np.ndarray]:
        values = np.array([float(x) for x in self.command("state").split()[1:]])
        return values[:4], values[4:]

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write("quit\n")
                self.process.stdin.flush()
                self.process.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


@pytest.fixture
def emulator(tmp_path):
    started = []

    def start(*servos: str) -> EmulatorProcess:
        started.append(EmulatorProcess(tmp_path, *servos))
        return started[-1]

    yield start
    for process in started:
        process.stop()


def _config(tmp_path, **joint_changes) -> str:
    """The shipped arm with a wide response margin (a loaded test VM stalls processes for tens of ms)."""
    data = yaml.safe_load(default_config_path().read_text())
    data["response_margin"] = 0.05
    for joint, changes in joint_changes.items():
        data["joints"][joint].update(changes)
        for key in [k for k, v in changes.items() if v is None]:
            del data["joints"][joint][key]
    path = tmp_path / "arm.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _read_until_raises(arm, cycles: int = 10) -> HardwareError:
    for _ in range(cycles):
        try:
            arm.read()
        except HardwareError as exc:
            return exc
    pytest.fail(f"no HardwareError within {cycles} cycles")


def _min_jerk(s: float) -> float:
    s = min(max(s, 0.0), 1.0)
    return 10 * s**3 - 15 * s**4 + 6 * s**5


def test_arm_follows_a_commanded_move_then_holds(tmp_path, emulator):
    """A few hundred cycles: readings match the emulator's physics, the arm reaches the goal, holds."""
    emu = emulator()
    with DynamixelArm(config=_config(tmp_path), port=emu.link) as arm:
        time.sleep(0.3)  # torque on with goal = present: the servos settle under gravity
        start = arm.read()
        q_emu, tau_emu = emu.state()
        # Independent unit conversions on both sides agree to a few counts (signs included).
        np.testing.assert_allclose(start.position, q_emu, atol=5e-4)
        assert not arm.enabled

        delta = np.array([0.3, 0.2, -0.3, 0.5])
        goal = start.position + delta
        arm.enable()
        velocities, stamps = [], []
        t0 = time.monotonic()
        cycles = 0
        while cycles < 300 or time.monotonic() - t0 < 0.8:
            sample = arm.read()
            s = _min_jerk((time.monotonic() - t0) / 0.5)
            arm.write(JointCommand(start.position + s * delta, np.zeros(4), np.zeros(4)))
            velocities.append(sample.velocity)
            stamps.append(sample.stamp)
            cycles += 1
            time.sleep(0.001)
        sample = arm.read()
        # Position servos without feed-forward sag under gravity by load / stiffness.
        np.testing.assert_allclose(sample.position, goal, atol=0.05)
        peak = np.array(velocities)[np.argmax(np.abs(velocities), axis=0), range(4)]
        assert np.all(np.sign(peak) == np.sign(delta)), peak
        # Velocity units (rev/min counts, gear, direction) agree with the positions moved.
        travelled = np.trapezoid(np.array(velocities), np.array(stamps), axis=0)
        np.testing.assert_allclose(travelled, sample.position - start.position, rtol=0.2, atol=0.02)
        q_emu, tau_emu = emu.state()
        np.testing.assert_allclose(sample.position, q_emu, atol=2e-3)
        assert np.all(np.abs(sample.effort - tau_emu) <= 0.5 + 0.02 * np.abs(tau_emu)), (sample.effort, tau_emu)
        assert np.abs(tau_emu).max() > 1.0  # gravity loads the shoulder: the effort check bites

        # Hold with a gravity feed-forward as the controller sends it: no sag on disable().
        gravity = sample.effort.copy()
        for _ in range(100):
            arm.read()
            arm.write(JointCommand(goal, np.zeros(4), gravity))
            time.sleep(0.002)
        before = arm.read().position
        arm.disable()
        deadline = time.monotonic() + 1.0
        while not arm.read().at_rest:
            assert time.monotonic() < deadline, "not at rest 1 s after disable()"
            time.sleep(0.002)
        time.sleep(0.1)
        held = arm.read().position
        np.testing.assert_allclose(held, before, atol=0.01)
        arm.write(JointCommand(goal + 0.3, np.zeros(4), np.zeros(4)))  # ignored while disabled
        time.sleep(0.3)
        np.testing.assert_allclose(arm.read().position, held, atol=0.003)
        diagnostics = arm.diagnostics()
        assert int(diagnostics["cycles"]) >= 300
        assert diagnostics["shoulder_flexion.voltage_V"] == "24.0"


def test_feed_forward_offsets_the_goal(tmp_path, emulator):
    """The feed-forward torque moves a position servo by effort / stiffness at the joint."""
    emu = emulator()
    with DynamixelArm(config=_config(tmp_path), port=emu.link) as arm:
        start = arm.read().position
        arm.enable()
        effort = np.array([0.0, 0.0, 0.0, 20.0])  # elbow stiffness 400 N·m/rad -> +0.05 rad
        for _ in range(200):
            arm.read()
            arm.write(JointCommand(start, np.zeros(4), effort))
            time.sleep(0.002)
        moved = arm.read().position - start
        assert moved[3] == pytest.approx(0.05, abs=0.01)
        np.testing.assert_allclose(moved[:3], 0.0, atol=0.01)


def test_start_up_configures_each_family(tmp_path, emulator):
    """Mixed bus: the X-series elbow runs current-based position control with its torque limit."""
    emu = emulator("elbow_flexion:4:1120:4:1:2048")
    config = _config(tmp_path, elbow_flexion={"family": "x", "model": "XM540-W270", "counts_per_revolution": 4096,
                                              "zero_offset": 2048, "torque_constant": 2.4})
    with DynamixelArm(config=config, port=emu.link) as arm:
        limit = arm.joints[3].torque_to_current_counts(40.0)
        assert emu.register(4, 11, 1) == 5  # X-series: current-based position control
        assert emu.register(4, 38, 2) == limit  # Current Limit from torque_limit
        assert emu.register(4, 102, 2) == limit  # Goal Current = the torque limit
        assert emu.register(4, 64, 1) == 1  # holding with torque on
        assert emu.register(1, 11, 1) == 3  # Dynamixel-P: position control
        assert emu.register(1, 9, 1) == 0  # Return Delay Time written
        assert emu.register(1, 512, 1) == 1
        sample = arm.read()
        np.testing.assert_allclose(sample.position, emu.state()[0], atol=1e-3)
        arm.enable()
        for _ in range(100):
            arm.read()
            arm.write(JointCommand(sample.position + [0, 0, 0, 0.2], np.zeros(4), np.zeros(4)))
            time.sleep(0.002)
        assert arm.read().position[3] == pytest.approx(sample.position[3] + 0.2, abs=0.03)


def test_wrong_or_missing_servos_are_refused_at_start_up(tmp_path, emulator):
    """A servo of another model or family, or one that does not answer, is named at start-up."""
    emu = emulator("shoulder_flexion:1:2010:2", "elbow_flexion:4:1120:4")
    with pytest.raises(HardwareError) as info:
        DynamixelArm(config=_config(tmp_path), port=emu.link)
    assert info.value.joint == "shoulder_flexion"
    assert "is a PH54-100-S500-R" in str(info.value) and "expects a PH54-200-S500-R" in str(info.value)
    with pytest.raises(HardwareError) as info:
        DynamixelArm(config=_config(tmp_path, shoulder_flexion={"model": None}), port=emu.link)
    assert info.value.joint == "elbow_flexion" and "model number 1120, not a Dynamixel-P" in str(info.value)
    with pytest.raises(HardwareError) as info:
        DynamixelArm(config=_config(tmp_path, shoulder_flexion={"model": None}, elbow_flexion={"id": 9}),
                     port=emu.link)
    assert info.value.joint == "elbow_flexion" and "servo id 9: ping: no status packet" in str(info.value)


def test_servo_hardware_error_then_reboot(tmp_path, emulator):
    """An overload becomes a HardwareError naming the joint; clear_fault reboots the servo."""
    emu = emulator()
    with DynamixelArm(config=_config(tmp_path), port=emu.link) as arm:
        arm.read()
        arm.enable()
        emu.command("error 2 0x20")
        error = _read_until_raises(arm)
        assert error.joint == "shoulder_abduction" and not error.device_lost
        assert "hardware error 0x20: overload error" in str(error)
        assert not arm.enabled
        arm.disable()  # what the driver does next: must work with one servo in error
        arm.read()  # reported once: the arm stays visible while the fault lasts
        assert arm.diagnostics()["shoulder_abduction.hardware_error"] == "overload error"
        assert emu.register(2, 512, 1) == 0  # shut down by the servo itself
        arm.clear_fault()
        assert emu.register(2, 518, 1) == 0 and emu.register(2, 512, 1) == 1
        assert not arm.enabled
        arm.read()
        assert arm.diagnostics()["reboots"] == "1"
        assert arm.diagnostics()["shoulder_abduction.hardware_error"] == "none"


def test_corrupt_and_missing_replies(tmp_path, emulator):
    """One bad reply is counted and tolerated; three cycles in a row are a fault naming the joint."""
    emu = emulator()
    with DynamixelArm(config=_config(tmp_path), port=emu.link) as arm:
        arm.read()
        emu.command("crc 3 1")
        emu.command("drop 4 1")
        for _ in range(3):
            arm.read()
        diagnostics = arm.diagnostics()
        assert int(diagnostics["corrupt_packets"]) >= 1 and int(diagnostics["timeouts"]) >= 1

        emu.command("crc 3 10")
        error = _read_until_raises(arm, 3)
        assert error.joint == "shoulder_rotation" and "3 cycles in a row (last: corrupt status packet (CRC" in str(error)
        emu.command("clear")
        arm.clear_fault()
        arm.read()

        emu.command("drop 1 10")
        started = time.monotonic()
        error = _read_until_raises(arm, 3)
        assert time.monotonic() - started < NO_HANG
        assert error.joint == "shoulder_flexion" and "no status packet (timeout)" in str(error)
        emu.command("clear")
        arm.clear_fault()
        arm.read()

        for servo_id in (1, 2, 3, 4):
            emu.command(f"drop {servo_id} 10")
        error = _read_until_raises(arm, 3)
        # The whole bus is silent but the port is there: the driver keeps reading.
        assert error.joint is None and "no servo answered" in str(error) and not error.device_lost
        emu.command("clear")
        arm.clear_fault()
        arm.read()


def test_closed_port_is_device_lost_and_reopened_by_clear_fault(tmp_path, emulator):
    """The port vanishing raises device_lost at once, never hangs; clear_fault reopens it."""
    emu = emulator()
    with DynamixelArm(config=_config(tmp_path), port=emu.link) as arm:
        arm.read()
        arm.enable()
        emu.command("close")
        started = time.monotonic()
        error = _read_until_raises(arm, 3)
        assert time.monotonic() - started < NO_HANG
        assert error.device_lost
        with pytest.raises(HardwareError) as info:
            arm.read()
        assert info.value.device_lost
        with pytest.raises(HardwareError, match="does not exist"):
            arm.clear_fault()
        emu.command("reopen")
        emu.next_line()  # the new PTY line
        arm.clear_fault()
        assert not arm.enabled
        np.testing.assert_allclose(arm.read().position, emu.state()[0], atol=2e-3)


def test_one_lost_reply_does_not_fail_start_up(tmp_path, emulator):
    """Start-up and fault reset retry a lost or corrupt reply, as the cycle tolerates one."""
    emu = emulator()
    emu.command("drop 1 1")
    emu.command("crc 3 1")
    with DynamixelArm(config=_config(tmp_path), port=emu.link) as arm:
        diagnostics = arm.diagnostics()
        assert int(diagnostics["timeouts"]) >= 1 and int(diagnostics["corrupt_packets"]) >= 1
        np.testing.assert_allclose(arm.read().position, emu.state()[0], atol=5e-3)


def _step_response(arm, joint: int, step: float, seconds: float) -> tuple[float, float]:
    """Command a position step on one joint; return (peak |effort| [N·m], distance moved [rad])."""
    start = arm.read().position
    target = start.copy()
    target[joint] += step
    arm.enable()
    peak, t0 = 0.0, time.monotonic()
    while time.monotonic() - t0 < seconds:
        sample = arm.read()
        arm.write(JointCommand(target, np.zeros(4), np.zeros(4)))
        peak = max(peak, abs(sample.effort[joint]))
        time.sleep(0.002)
    moved = arm.read().position[joint] - start[joint]
    arm.disable()
    return peak, moved


def test_goal_current_limits_the_torque(tmp_path, emulator):
    """Current-based position control: a step asks for more torque than Goal Current allows."""
    emu = emulator("elbow_flexion:4:1120:4:1:2048")
    x_elbow = {"family": "x", "model": "XM540-W270", "counts_per_revolution": 4096, "zero_offset": 2048,
               "torque_constant": 2.4}
    with DynamixelArm(config=_config(tmp_path, elbow_flexion={**x_elbow, "torque_limit": 40.0}),
                      port=emu.link) as arm:
        strong_peak, strong_moved = _step_response(arm, 3, 0.3, 0.6)
    emu.command("power")  # a new Current Limit is EEPROM: written only with torque off
    with DynamixelArm(config=_config(tmp_path, elbow_flexion={**x_elbow, "torque_limit": 6.0}),
                      port=emu.link) as arm:
        assert emu.register(4, 102, 2) == arm.joints[3].torque_to_current_counts(6.0)
        weak_peak, weak_moved = _step_response(arm, 3, 0.3, 0.6)
    assert strong_peak > 15.0 and strong_moved == pytest.approx(0.3, abs=0.05)
    assert 6.0 * 0.8 <= weak_peak <= 6.0 * 1.05 + 0.5, weak_peak  # saturates at the limit
    assert 0.0 < weak_moved


def test_eeprom_change_never_drops_a_holding_arm(tmp_path, emulator):
    """A servo left holding (torque on) by a previous run is not made limp to rewrite EEPROM."""
    emu = emulator()
    with DynamixelArm(config=_config(tmp_path), port=emu.link) as arm:
        arm.read()
    assert emu.register(3, 512, 1) == 1  # close() leaves the arm held
    path = _config(tmp_path)
    data = yaml.safe_load(open(path))
    data["return_delay_time"] = 0.0001  # 50 x 2 us: an EEPROM change
    open(path, "w").write(yaml.safe_dump(data))
    with pytest.raises(HardwareError) as info:
        DynamixelArm(config=path, port=emu.link)
    assert info.value.joint == "shoulder_flexion"
    assert "Return Delay Time is 0, needs 50" in str(info.value) and "torque off" in str(info.value)
    assert emu.register(1, 512, 1) == 1 and emu.register(1, 9, 1) == 0  # still holding, unchanged
    emu.command("power")  # servos off (the arm supported): now the new setting is written
    with DynamixelArm(config=path, port=emu.link):
        assert emu.register(1, 9, 1) == 50 and emu.register(1, 512, 1) == 1
