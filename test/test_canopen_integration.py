"""Integration: the canopen backend against the emulated drives in another process, over
a real pseudo-terminal (python-can ``slcan`` on the emulated USB-CAN adapter); then the
hardware_driver node with ``hardware:=canopen`` over DDS."""

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
from diagnostic_msgs.msg import DiagnosticStatus
from sensor_msgs.msg import JointState

from conftest import call_trigger, trigger_client, wait_for
from rehab_robot import JOINT_NAMES, resources
from rehab_robot.errors import HardwareError
from rehab_robot.hardware.canopen import CanopenArm
from rehab_robot.hardware.canopen.config import default_config_path
from rehab_robot.hardware.interface import JointCommand
from rehab_robot.nodes.common import subscriber_qos, topic_qos

pytestmark = pytest.mark.integration

#: The backend's loop rate in these tests [Hz]: a loaded 2-core test machine keeps it.
RATE = 200.0


class EmulatorProcess:
    """``rehab-robot emulate canopen`` in a child process, commanded over stdin."""

    def __init__(self, tmp_path, *args: str) -> None:
        self.link = str(tmp_path / "ttyCAN")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rehab_robot.launcher", "emulate", "canopen", "--link", self.link, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        first = self.next_line(30.0)
        assert first.startswith("PTY /dev/"), first
        assert first.split()[1] == os.path.realpath(self.link)

    def _pump(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def next_line(self, timeout: float = 5.0) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"emulator said nothing for {timeout} s") from None

    def command(self, line: str) -> str:
        """Send one command and return the emulator's answer line."""
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        answer = self.next_line()
        while answer.startswith("PTY "):
            answer = self.next_line()
        assert not answer.startswith("error"), answer
        return answer

    def state(self) -> tuple[np.ndarray, np.ndarray]:
        values = np.array([float(x) for x in self.command("state").split()[1:]])
        return values[:4], values[4:]

    def drives(self) -> list[str]:
        return self.command("drives").split()[1:]

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write("quit\n")
                self.process.stdin.flush()
                self.process.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """One emulator for the backend tests: each start-up resets the drives' communication."""
    process = EmulatorProcess(tmp_path_factory.mktemp("canopen_emulator"))
    yield process
    process.stop()


def _config(tmp_path, link: str, joint_changes=None, **changes) -> str:
    """The shipped arm on the emulated slcan adapter, with thresholds for a loaded test VM."""
    data = yaml.safe_load(default_config_path().read_text())
    data.update(interface="slcan", channel=link, bus_options={"sleep_after_open": 0},
                eds=str(default_config_path().parent / data["eds"]),
                max_missed_cycles=40, heartbeat_timeout=0.5, startup_timeout=3.0, sdo_timeout=1.0)
    data.update(changes)
    for joint, fields in (joint_changes or {}).items():
        data["joints"][joint].update(fields)
    path = tmp_path / "arm.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _run(arm, seconds: float, command=None) -> list:
    """Cycle read() (and write(command(t)) when given) at RATE for ``seconds``; return the samples."""
    samples = []
    t0 = time.monotonic()
    next_time = t0
    while time.monotonic() - t0 < seconds:
        samples.append(arm.read())
        if command is not None:
            arm.write(command(time.monotonic() - t0))
        next_time += 1.0 / RATE
        time.sleep(max(0.0, next_time - time.monotonic()))
    return samples


def _fault(arm, seconds: float = 3.0) -> HardwareError:
    """Cycle until read() raises; return the error."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            arm.read()
        except HardwareError as exc:
            return exc
        time.sleep(1.0 / RATE)
    pytest.fail(f"no HardwareError within {seconds} s")


def _min_jerk(s: float) -> float:
    s = min(max(s, 0.0), 1.0)
    return 10 * s**3 - 15 * s**4 + 6 * s**5


def test_backend_follows_holds_and_a_drive_fault_is_named(tmp_path, emulator):
    """Start-up holds; CSP follows a move with the units of the drives; a drive fault with EMCY
    0x2310 names the joint and the text, motion is refused until clear_fault()."""
    with CanopenArm(config=_config(tmp_path, emulator.link), loop_rate=RATE) as arm:
        assert emulator.drives() == ["quick_stop_active"] * 4  # holding, energised
        assert not arm.enabled
        start = _run(arm, 0.2)[-1]
        q_emu, tau_emu = emulator.state()
        # Independent unit conversions on both sides agree (signs, gear, zero offset).
        np.testing.assert_allclose(start.position, q_emu, atol=2e-3)

        delta = np.array([0.2, 0.15, -0.2, 0.3])
        arm.enable()
        gravity = start.effort
        samples = _run(arm, 1.0, lambda t: JointCommand(start.position + _min_jerk(t / 0.6) * delta,
                                                        np.zeros(4), gravity))
        assert emulator.drives() == ["operation_enabled"] * 4
        goal = JointCommand(start.position + delta, np.zeros(4), gravity)
        end = _run(arm, 0.4, lambda t: goal)[-1]
        np.testing.assert_allclose(end.position, start.position + delta, atol=0.02)
        q_emu, tau_emu = emulator.state()
        np.testing.assert_allclose(end.position, q_emu, atol=5e-3)
        # Torque actual (per mille of rated torque, gear, sign) agrees within a per mille step.
        assert np.all(np.abs(end.effort - tau_emu) <= 0.3 + 0.05 * np.abs(tau_emu)), (end.effort, tau_emu)
        assert np.abs(tau_emu).max() > 1.0  # gravity loads the shoulder: the check bites
        velocities = np.array([s.velocity for s in samples])
        peak = velocities[np.argmax(np.abs(velocities), axis=0), range(4)]
        assert np.all(np.sign(peak) == np.sign(delta)), peak

        arm.disable()
        held = _run(arm, 0.3)[-1].position
        assert emulator.drives() == ["quick_stop_active"] * 4
        arm.write(JointCommand(held + 0.3, np.zeros(4), np.zeros(4)))  # ignored while disabled
        np.testing.assert_allclose(_run(arm, 0.3)[-1].position, held, atol=0.005)

        emulator.command("fault 2 0x2310")
        error = _fault(arm)
        assert error.joint == "shoulder_abduction" and not error.device_lost
        assert "EMCY 0x2310 continuous over-current" in error.reason
        arm.disable()
        with pytest.raises(HardwareError, match="not cleared"):
            arm.enable()
        samples = _run(arm, 0.2)  # readings keep coming while the fault is latched
        assert emulator.drives()[1] == "fault"
        np.testing.assert_allclose(samples[-1].position, held, atol=0.01)  # the arm holds

        arm.clear_fault()
        assert emulator.drives() == ["quick_stop_active"] * 4
        assert "0x2310" in arm.diagnostics()["shoulder_abduction.last_emcy"]
        arm.enable()
        _run(arm, 0.2, lambda t: JointCommand(held, np.zeros(4), np.zeros(4)))
        assert emulator.drives() == ["operation_enabled"] * 4


def test_backend_heartbeat_pdo_bus_and_adapter_faults(tmp_path, emulator):
    """Heartbeat loss, a silent drive and a malformed TPDO name the joint; bus-off and an unplugged adapter are
    device_lost; each refuses clear_fault() while present and clears once gone."""
    with CanopenArm(config=_config(tmp_path, emulator.link), loop_rate=RATE) as arm:
        _run(arm, 0.1)
        emulator.command("heartbeat 3 off")
        error = _fault(arm)
        assert error.joint == "shoulder_rotation" and "heartbeat lost" in error.reason, error
        arm.disable()
        with pytest.raises(HardwareError, match="heartbeat"):
            arm.clear_fault()
        emulator.command("heartbeat 3 on")
        arm.clear_fault()
        _run(arm, 0.1)

        emulator.command("silent 4 on")
        error = _fault(arm)
        assert error.joint == "elbow_flexion" and "no TPDO" in error.reason, error
        arm.disable()
        emulator.command("silent 4 off")
        arm.clear_fault()
        _run(arm, 0.1)

        emulator.command("truncate 1 on")  # bytes that do not match the mapping are refused, not guessed
        error = _fault(arm)
        assert error.joint == "shoulder_flexion" and "TPDO1 has 7 bytes, the mapping written needs 8" in error.reason
        arm.disable()
        emulator.command("truncate 1 off")
        arm.clear_fault()
        _run(arm, 0.1)

        emulator.command("busoff on")
        error = _fault(arm)
        assert error.device_lost and error.joint is None and "no drive answered SYNC" in error.reason, error
        with pytest.raises(HardwareError):
            arm.clear_fault()
        emulator.command("busoff off")
        arm.clear_fault()
        _run(arm, 0.1)
        assert emulator.drives() == ["quick_stop_active"] * 4

        emulator.command("close")
        error = _fault(arm)
        assert error.device_lost and "lost" in error.reason, error
        with pytest.raises(HardwareError):
            arm.clear_fault()
        emulator.command("reopen")
        arm.clear_fault()
        _run(arm, 0.1)
        assert emulator.drives() == ["quick_stop_active"] * 4


def test_start_up_refuses_a_wrong_device_and_a_missing_node(tmp_path, emulator):
    """0x1000 must say CiA 402; a node id nobody answers is named with the file and field."""
    emulator.command("set 2 0x1000 0 0x00020191")
    with pytest.raises(HardwareError) as info:
        CanopenArm(config=_config(tmp_path, emulator.link), loop_rate=RATE)
    message = str(info.value)
    assert "joints.shoulder_abduction.node_id = 2" in message and "not a CiA 402 drive" in message
    assert "0x00020191" in message and "0x0192" in message
    emulator.command("set 2 0x1000 0 0x00020192")
    path = _config(tmp_path, emulator.link, {"elbow_flexion": {"node_id": 9}}, startup_timeout=0.5)
    with pytest.raises(HardwareError) as info:
        CanopenArm(config=path, loop_rate=RATE)
    assert info.value.joint == "elbow_flexion" and "joints.elbow_flexion.node_id = 9: no drive answered" in str(info.value)
    assert emulator.drives() != ["operation_enabled"] * 4  # nothing was enabled


# -- the driver node over DDS -----------------------------------------------------------------------


class Watcher:
    """Latest joint_states and hardware/status."""

    def __init__(self, node):
        self.lock = threading.Lock()
        self.joint_states = []
        self.hardware = None
        node.create_subscription(JointState, "joint_states", self.on_state, subscriber_qos("joint_states"))
        node.create_subscription(DiagnosticStatus, "hardware/status", self.on_hardware,
                                 subscriber_qos("hardware/status"))

    def on_state(self, msg):
        with self.lock:
            self.joint_states.append(msg)

    def on_hardware(self, msg):
        self.hardware = msg

    def latest(self):
        with self.lock:
            return self.joint_states[-1] if self.joint_states else None


def test_driver_node_follows_commands_and_names_a_drive_fault(tmp_path, start_node, ros_client):
    """joint_states follow the emulated arm and the commands; a drive fault is named on
    hardware/status with the EMCY text, the arm holds, and safety/reset clears it."""
    emu = EmulatorProcess(tmp_path)
    stop = threading.Event()
    try:
        watcher = Watcher(ros_client)
        commands = ros_client.create_publisher(JointState, "joint_commands", topic_qos("joint_commands"))
        options = f"\"{{config: {_config(tmp_path, emu.link)}}}\""
        nodes = [
            start_node("driver_node", "hardware_driver", hardware="canopen", hardware_options=options,
                       loop_rate=RATE),
            start_node("supervisor_node", "safety_supervisor", patient=str(resources.example_patient())),
        ]
        wait_for(lambda: len(watcher.joint_states) > 20, 60, "joint_states from the canopen driver", nodes)
        state = watcher.latest()
        assert list(state.name) == list(JOINT_NAMES)
        np.testing.assert_allclose(state.position, emu.state()[0], atol=5e-3)
        start = np.array(state.position)
        trigger_client(ros_client, "safety/reset")

        # A slow elbow move from where the arm is, as a controller streams it: until the driver
        # follows, the command is the measured position (moving, so the gate engages); then a ramp.
        def following():
            status = watcher.hardware
            return status is not None and any(v.key == "state" and v.value == "following" for v in status.values)

        def publish():
            base, t0 = np.array(watcher.latest().position), time.monotonic()
            while not stop.is_set():
                if not following():
                    base, t0 = np.array(watcher.latest().position), time.monotonic()
                s = min((time.monotonic() - t0) / 2.0, 1.0)
                position = base + np.array([0.0, 0.0, 0.0, 0.25 * s])
                velocity = np.array([0.0, 0.0, 0.0, 0.125 if s < 1.0 else 0.0])
                commands.publish(JointState(name=list(JOINT_NAMES), position=position.tolist(),
                                            velocity=velocity.tolist(), effort=[0.0] * 4))
                time.sleep(0.01)

        publisher = threading.Thread(target=publish, daemon=True)
        publisher.start()
        deadline = time.monotonic() + 30
        while watcher.latest().position[3] < start[3] + 0.2:
            assert time.monotonic() < deadline, f"the elbow did not follow; hardware/status: {watcher.hardware}"
            if not following():
                call_trigger(ros_client, "safety/reset")  # a reset the supervisor had not yet counted
            time.sleep(0.5)
        assert emu.state()[0][3] > start[3] + 0.15  # the emulated drive moved the elbow, not only the numbers

        emu.command("fault 4 0x2310")
        wait_for(lambda: watcher.hardware is not None and watcher.hardware.level == DiagnosticStatus.ERROR,
                 10, "the driver to report the drive fault", nodes)
        message = watcher.hardware.message
        assert "elbow_flexion" in message and "continuous over-current" in message, message
        count = len(watcher.joint_states)
        wait_for(lambda: len(watcher.joint_states) > count + 40, 10, "joint_states during the fault", nodes)
        held = np.array([m.position for m in watcher.joint_states[-20:]])
        assert np.ptp(held, axis=0).max() < 0.01  # the arm holds
        assert emu.drives()[3] == "fault"

        deadline = time.monotonic() + 20
        while watcher.hardware.level == DiagnosticStatus.ERROR:
            assert time.monotonic() < deadline, f"fault not cleared by safety/reset: {watcher.hardware.message}"
            call_trigger(ros_client, "safety/reset")
            end = time.monotonic() + 2
            while watcher.hardware.level == DiagnosticStatus.ERROR and time.monotonic() < end:
                time.sleep(0.02)
        assert emu.drives()[3] in ("quick_stop_active", "operation_enabled")
        assert all(node.process.poll() is None for node in nodes)
        stop.set()
        status = nodes[0].stop(10)
        assert status == 0, nodes[0].log_path.read_text()
    finally:
        stop.set()
        emu.stop()
