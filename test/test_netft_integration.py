"""Integration: the ft_sensor_driver node against the emulated Net F/T, each its own process,
then the whole graph with ``ft_sensor:=netft`` against it.

The emulator streams RDT over localhost UDP; the node publishes ft_sensor/wrench over real
DDS to this test's client. Checked: the emulator's force arrives in N in ft_sensor_link,
ft_sensor/tare zeroes it, gravity compensation follows joint_states, and every injected
fault shows on /diagnostics; saturation, a status error and a stopped stream end the
wrench stream until the sensor is healthy again.
"""

from __future__ import annotations

import json
import math
import socket
import threading
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import WrenchStamped
from sensor_msgs.msg import JointState

from conftest import call_trigger, trigger_client, wait_for
from rehab_robot.model import ArmModel
from rehab_robot.nodes.common import subscriber_qos
from rehab_robot.sensors.netft import cuff_gravity_wrench
from rehab_robot.testing_emulators import EmulatorProcess

pytestmark = pytest.mark.integration

NAME = "ft_sensor_driver"


class Watcher:
    """Keeps every wrench (with its arrival time) and the node's /diagnostics."""

    def __init__(self, node):
        self.lock = threading.Lock()
        self.wrenches: list[tuple[float, WrenchStamped]] = []
        self.diagnostics: list[tuple[float, DiagnosticStatus]] = []
        node.create_subscription(WrenchStamped, "ft_sensor/wrench", self.on_wrench, subscriber_qos("ft_sensor/wrench"))
        node.create_subscription(DiagnosticArray, "/diagnostics", self.on_diagnostics, 50)

    def on_wrench(self, msg):
        with self.lock:
            self.wrenches.append((time.monotonic(), msg))

    def on_diagnostics(self, msg):
        for status in msg.status:
            if status.name.endswith(NAME):
                with self.lock:
                    self.diagnostics.append((time.monotonic(), status))

    def latest(self, since: float = 0.0):
        """The newest wrench received after ``since`` as an array, or None."""
        with self.lock:
            fresh = [m for t, m in self.wrenches if t > since]
        if not fresh:
            return None
        w = fresh[-1].wrench
        return np.array([w.force.x, w.force.y, w.force.z, w.torque.x, w.torque.y, w.torque.z])

    def count(self) -> int:
        with self.lock:
            return len(self.wrenches)

    def status_since(self, since: float, predicate):
        """The first diagnostics status after ``since`` that satisfies ``predicate``, or None."""
        with self.lock:
            return next((s for t, s in self.diagnostics if t > since and predicate(s)), None)


def values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


@pytest.fixture
def netft(start_node, ros_client, tmp_path):
    """Start the emulator and the node; return (emulator, node, watcher)."""
    def start(*emulator_args: str, **parameters):
        emu = EmulatorProcess("netft", ["--port", "0", "--control-port", "0", *emulator_args], tmp_path)
        started.append(emu)
        node = start_node("ft_sensor_node", NAME, sensor_address="127.0.0.1", port=emu.ports[0], **parameters)
        watcher = Watcher(ros_client)
        wait_for(lambda: watcher.latest() is not None, 30, "the first ft_sensor/wrench", [node])
        trigger_client(ros_client, "ft_sensor/tare")
        return emu, node, watcher

    started: list[EmulatorProcess] = []
    yield start
    for emu in started:
        emu.stop()


def close_to(expected, atol=1e-6):
    return lambda w: w is not None and np.allclose(w, expected, atol=atol)


def test_wrench_tare_and_gravity_compensation(netft, ros_client):
    emu, node, watcher = netft("--wrench", "2,-1,5,0.2,0,-0.1")
    wait_for(lambda: close_to([2, -1, 5, 0.2, 0, -0.1])(watcher.latest()), 10, "the emulator's wrench", [node])
    with watcher.lock:
        assert watcher.wrenches[-1][1].header.frame_id == "ft_sensor_link"

    response = call_trigger(ros_client, "ft_sensor/tare")
    assert response.success, response.message
    t = time.monotonic()
    wait_for(lambda: close_to(np.zeros(6))(watcher.latest(t)), 5, "a zero wrench after the tare", [node])
    assert emu.command("wrench 3 -1 5 0.2 0.5 -0.1").startswith("ok")
    t = time.monotonic()
    wait_for(lambda: close_to([1, 0, 0, 0, 0.5, 0])(watcher.latest(t)), 5, "the change since the tare", [node])

    # Gravity: tared at pose q1, the arm moves to q2 while the sensor's reading stays the same.
    # The node must then report minus the change of the cuff's weight in the sensor frame.
    model = ArmModel.from_urdf()
    q1, q2 = np.array([0.0, 0.0, 0.0, 0.3]), np.array([0.6, 0.2, 0.0, 1.4])
    publisher = ros_client.create_publisher(JointState, "joint_states", 10)
    pose = {"q": q1}
    stop = threading.Event()

    def publish_joint_states():
        while not stop.is_set():
            publisher.publish(JointState(name=list(model.joint_names), position=pose["q"].tolist(),
                                         velocity=[0.0] * 4, effort=[0.0] * 4))
            time.sleep(0.01)

    thread = threading.Thread(target=publish_joint_states, daemon=True)
    thread.start()
    try:
        t = time.monotonic()
        wait_for(lambda: watcher.status_since(t, lambda s: values(s)["orientation_age_s"] != "unknown"), 10,
                 "the node to use joint_states", [node])
        assert call_trigger(ros_client, "ft_sensor/tare").success
        t = time.monotonic()
        wait_for(lambda: watcher.status_since(t, lambda s: values(s)["gravity_compensation"] == "True"), 5,
                 "gravity compensation to be active", [node])
        pose["q"] = q2
        gravity = [cuff_gravity_wrench(model.forward_kinematics(q, "ft_sensor_link")[:3, :3], 0.3, (0, 0, -0.03))
                   for q in (q1, q2)]
        expected = -(gravity[1] - gravity[0])
        assert np.linalg.norm(expected[:3]) > 1.0  # the poses differ enough for the test to mean something
        t = time.monotonic()
        wait_for(lambda: close_to(expected, 1e-5)(watcher.latest(t)), 5, f"the gravity-compensated wrench {expected}",
                 [node])
    finally:
        stop.set()
        thread.join()


def assert_stream_ended(watcher, node):
    """No wrench arrives any more (allowing 0.3 s for those in flight)."""
    time.sleep(0.3)
    n = watcher.count()
    time.sleep(0.5)
    assert watcher.count() == n, "ft_sensor/wrench kept flowing during a fault"
    assert node.process.poll() is None


def test_injected_faults_show_on_diagnostics_and_stop_the_wrench_stream(netft, ros_client):
    emu, node, watcher = netft("--wrench", "0,0,4,0,0,0")

    # Packet loss: counted and warned about; the wrenches keep coming.
    t = time.monotonic()
    assert emu.command("burst 40").startswith("ok")
    wait_for(lambda: watcher.status_since(t, lambda s: int(values(s)["lost_packets"]) >= 40), 10,
             "40 lost packets on /diagnostics", [node])
    wait_for(lambda: watcher.status_since(t, lambda s: s.level == DiagnosticStatus.WARN), 5,
             "a WARN for lost packets", [node])
    status = watcher.status_since(t, lambda s: s.level == DiagnosticStatus.WARN)
    assert "packets lost" in status.message
    t = time.monotonic()
    wait_for(lambda: watcher.latest(t) is not None, 5, "wrenches after the loss", [node])

    # Corrupted datagrams: counted and named; the good ones around them are still published.
    t = time.monotonic()
    assert emu.command("truncate 3").startswith("ok")
    wait_for(lambda: watcher.status_since(t, lambda s: int(values(s)["bad_packets"]) >= 3), 10,
             "3 bad packets on /diagnostics", [node])
    status = watcher.status_since(t, lambda s: int(values(s)["bad_packets"]) >= 3)
    assert "20 bytes received" in values(status)["last_bad_packet"]
    wait_for(lambda: watcher.status_since(t, lambda s: "bad packets" in s.message), 5,
             "a WARN for bad packets", [node])
    t = time.monotonic()
    wait_for(lambda: watcher.latest(t) is not None, 5, "wrenches after the bad packets", [node])

    faults = [
        ("status 80000000", "status_error", "0x80000000"),
        ("saturate Fz", "saturated", "Fz"),
        ("stop", "stopped", "stream stopped"),
    ]
    for command, state, text in faults:
        t = time.monotonic()
        assert emu.command(command).startswith("ok")
        wait_for(lambda: watcher.status_since(t, lambda s: values(s)["state"] == state), 5,
                 f"state {state} on /diagnostics after {command!r}", [node])
        status = watcher.status_since(t, lambda s: values(s)["state"] == state)
        assert status.level == DiagnosticStatus.ERROR and text in status.message, status.message
        assert_stream_ended(watcher, node)
        refused = call_trigger(ros_client, "ft_sensor/tare")
        assert not refused.success and "cannot tare" in refused.message

        t = time.monotonic()
        assert emu.command("clear").startswith("ok")
        wait_for(lambda: close_to([0, 0, 4, 0, 0, 0])(watcher.latest(t)), 10,
                 f"wrenches again once {command!r} is cleared", [node])
        wait_for(lambda: watcher.status_since(t, lambda s: values(s)["state"] == "ok"), 5,
                 f"state ok on /diagnostics once {command!r} is cleared", [node])


def test_bad_parameters_are_refused(start_node):
    """A wrong value stops the node at start-up with one line naming the parameter (exit 2)."""
    node = start_node("ft_sensor_node", NAME, sensor_address="127.0.0.1", counts_per_force=-5.0)
    assert node.process.wait(30) == 2
    assert "counts_per_force" in node.output() and "a number > 0" in node.output()
    node = start_node("ft_sensor_node", NAME, sensor_address="127.0.0.1", rate=math.inf)
    assert node.process.wait(30) == 2
    assert "'rate'" in node.output()
    node = start_node("ft_sensor_node", NAME, sensor_address="no-such-sensor.invalid")
    assert node.process.wait(30) == 2
    assert "'sensor_address'" in node.output() and "cannot resolve" in node.output()


def test_saturation_makes_the_supervisor_stop_motion_until_healthy(netft, start_node, ros_client):
    """With the Net F/T as the only ft_sensor/wrench source, a saturated sensor withdraws motion permission.

    The driver (sim) runs with publish_wrench:=false, as in the graph with ft_sensor:=netft.
    The heartbeat turns False while no wrench arrives, and True again once the sensor is healthy
    (missing state stops motion without latching).
    """
    from std_msgs.msg import Bool

    from rehab_robot.nodes.common import topic_qos

    emu, ft_node, watcher = netft("--wrench", "1,0,2,0,0,0")
    nodes = [
        ft_node,
        start_node("driver_node", "hardware_driver", publish_wrench=False),
        start_node("supervisor_node", "safety_supervisor"),
        start_node("controller_node", "motion_controller"),
    ]
    beats: list[tuple[float, bool]] = []
    ros_client.create_subscription(Bool, "safety/heartbeat", lambda m: beats.append((time.monotonic(), m.data)),
                                   topic_qos("safety/heartbeat"))

    safety: list[DiagnosticStatus] = []
    safety_times: list[float] = []

    def on_safety(msg):
        safety_times.append(time.monotonic())
        safety.append(msg)

    ros_client.create_subscription(DiagnosticStatus, "safety/status", on_safety, subscriber_qos("safety/status"))
    trigger_client(ros_client, "safety/reset")

    def permitted_since(t, value):
        return any(b == value for s, b in list(beats) if s > t)

    def last_safety_status() -> str:
        return f"last safety/status: {safety[-1].message if safety else 'none'}"

    # On a loaded machine a node can miss its cycle budget at start-up and latch a stop that has
    # nothing to do with the sensor: clear such a stop before the actual test begins.
    deadline = time.monotonic() + 60
    while not permitted_since(time.monotonic() - 0.5, True) and time.monotonic() < deadline:
        if safety and values(safety[-1]).get("latched") == "True":
            call_trigger(ros_client, "safety/reset")
        time.sleep(0.5)
    assert permitted_since(time.monotonic() - 1.0, True), "motion never permitted; " + last_safety_status()

    t = time.monotonic()
    assert emu.command("saturate Fx").startswith("ok")
    wait_for(lambda: permitted_since(t, False), 5, "the supervisor to withdraw permission", nodes)
    wait_for(lambda: any("ft_sensor/wrench stale" in m.message
                         for m, at in zip(list(safety), list(safety_times)) if at > t), 5,
             "the supervisor to name the stale ft_sensor/wrench as the cause", nodes)
    t = time.monotonic()
    assert emu.command("clear").startswith("ok")
    wait_for(lambda: permitted_since(t, True), 10,
             "permission back once the sensor is healthy (missing state does not latch)", nodes)


LONG_PROTOCOL = """\
protocol:
  name: long_elbow
  type: passive_rom
  joint: elbow_flexion
  start_angle: 0.5
  end_angle: 1.5
  repetitions: 20
  movement_duration: 2.0
  hold_duration: 0.0
"""


def test_through_the_graph_sensor_faults_stop_and_hold_the_arm_and_are_named(tmp_path, domain_id, ros_client):
    """The whole graph with ``ft_sensor:=netft`` (``rehab-robot demo --hardware dynamixel``), faults injected
    into its Net F/T emulator mid-exercise:

    * packets lost: counted and named (WARN) on the sensor's /diagnostics;
    * saturation: the wrench is withheld, the supervisor withdraws permission naming the stale
      ft_sensor/wrench on safety/status and /diagnostics, the driver holds and the arm comes to rest
      and stays there; permission returns once the sensor is healthy;
    * the stream stops: the same, with the sensor's /diagnostics saying the stream stopped;
    * Ctrl-C ends the demo: the report is written with the interruptions, the emulators are stopped.
    """
    import re
    import signal

    from std_msgs.msg import Bool

    from rehab_robot.nodes.common import topic_qos
    from test_hardware_demo import Demo

    states: list[tuple[float, np.ndarray, np.ndarray]] = []
    beats: list[tuple[float, bool]] = []
    safety: list[tuple[float, DiagnosticStatus]] = []
    diagnostics: list[tuple[float, DiagnosticStatus]] = []
    hardware: list[tuple[float, DiagnosticStatus]] = []
    ros_client.create_subscription(
        JointState, "joint_states",
        lambda m: states.append((time.monotonic(), np.array(m.position), np.array(m.velocity))),
        subscriber_qos("joint_states"))
    ros_client.create_subscription(Bool, "safety/heartbeat", lambda m: beats.append((time.monotonic(), m.data)),
                                   topic_qos("safety/heartbeat"))
    ros_client.create_subscription(DiagnosticStatus, "safety/status", lambda m: safety.append((time.monotonic(), m)),
                                   subscriber_qos("safety/status"))
    ros_client.create_subscription(DiagnosticStatus, "hardware/status",
                                   lambda m: hardware.append((time.monotonic(), m)), subscriber_qos("hardware/status"))
    ros_client.create_subscription(
        DiagnosticArray, "/diagnostics",
        lambda m: diagnostics.extend((time.monotonic(), s) for s in m.status), 50)

    protocol = tmp_path / "long.yaml"
    protocol.write_text(LONG_PROTOCOL)
    demo = Demo(tmp_path, domain_id, "--hardware", "dynamixel", f"protocol:={protocol}",
                f"output_dir:={tmp_path / 'out'}", "session_id:=faults")
    try:
        def started():
            assert demo.process.poll() is None, demo.output()
            return "drives follow commands" in demo.stderr

        # Generous: on a machine shared with other test runs, seven processes importing pinocchio
        # and rclpy at once have taken a minute.
        wait_for(started, 150, "the session to start moving the arm on the emulated servos")
        control = int(re.search(r"netft emulator: RDT on [0-9.]+:\d+, control on [0-9.]+:(\d+)", demo.stderr)[1])

        def command(text: str) -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(2.0)
                sock.sendto(text.encode(), ("127.0.0.1", control))
                assert sock.recv(4096).decode().startswith("ok"), text

        def status_since(t, name, predicate):
            return next((s for at, s in list(diagnostics) if at > t and s.name.endswith(name) and predicate(s)), None)

        def permitted_since(t, value):
            return any(b == value for at, b in list(beats) if at > t)

        def moving():
            return bool(states) and states[-1][0] > time.monotonic() - 0.1 and abs(states[-1][2][3]) > 0.05

        def resume_until_moving(before: str) -> None:
            """After an interruption the session resumes only when asked (as the operator would)."""
            deadline = time.monotonic() + 30
            while not moving():
                assert time.monotonic() < deadline, f"the arm did not move again before {before}:\n{demo.output()}"
                if permitted_since(time.monotonic() - 0.3, True):
                    call_trigger(ros_client, "session/resume")
                end = time.monotonic() + 1.5
                while not moving() and time.monotonic() < end:
                    time.sleep(0.02)

        trigger_client(ros_client, "session/resume")
        # Packets lost (30 records, 60 ms at the demo's 500 Hz: shorter than the supervisor's 100 ms staleness limit):
        # reported, by count, as a warning of the sensor's node.
        t = time.monotonic()
        command("burst 30")
        wait_for(lambda: status_since(t, "ft_sensor_driver", lambda s: s.level == DiagnosticStatus.WARN
                                      and "packets lost" in s.message and int(values(s)["lost_packets"]) >= 30),
                 10, "the lost packets named on /diagnostics")

        for fault, sensor_says in (("saturate Fz", "saturated: Fz"), ("stop", "stream stopped")):
            resume_until_moving(repr(fault))
            t = time.monotonic()
            command(fault)
            wait_for(lambda: permitted_since(t, False), 5, f"the supervisor to withdraw permission on {fault!r}")
            wait_for(lambda: status_since(t, "ft_sensor_driver", lambda s: s.level == DiagnosticStatus.ERROR
                                          and sensor_says in s.message), 5, f"{sensor_says!r} on /diagnostics")
            wait_for(lambda: any("ft_sensor/wrench stale" in s.message for at, s in list(safety) if at > t), 5,
                     "safety/status naming the stale ft_sensor/wrench")
            wait_for(lambda: status_since(t, "safety_supervisor", lambda s: "ft_sensor/wrench stale" in s.message),
                     5, "the supervisor's /diagnostics naming the stale ft_sensor/wrench")
            wait_for(lambda: any(values(s)["state"] == "holding" for at, s in list(hardware) if at > t), 5,
                     "the driver holding")
            # Stopped and held: at rest (a safety bound with margin: the driver quick-stops within
            # tens of ms), then no drift while the fault lasts.
            wait_for(lambda: states and states[-1][0] > t and np.all(np.abs(states[-1][2]) < 0.02), 2,
                     "the arm at rest")
            rest = states[-1][1]
            time.sleep(1.0)
            assert not permitted_since(t + 0.2, True), "permission came back while the sensor was faulty"
            assert np.max(np.abs(states[-1][1] - rest)) < 0.01, (rest, states[-1][1])
            t = time.monotonic()
            command("clear" if fault != "stop" else "resume")
            wait_for(lambda: permitted_since(t, True), 10,
                     f"permission back once {fault!r} is cleared (a missing signal does not latch)")
            wait_for(lambda: status_since(t, "ft_sensor_driver", lambda s: values(s)["state"] == "ok"), 5,
                     f"the sensor ok again after {fault!r}")
    finally:
        demo.process.send_signal(signal.SIGINT)  # Ctrl-C
        status = demo.wait(30)
    assert status == 128 + signal.SIGINT, demo.output()
    output = demo.stdout + demo.stderr
    assert "Traceback" not in output
    for name in ("dynamixel_emulator", "netft_emulator"):
        assert f"rehab-robot: stopped {name} (exit status 0)" in demo.stderr, demo.output()
    report = json.loads((tmp_path / "out" / "faults" / "report.json").read_text())
    assert report["ended"] != "completed"
    interruptions = [e["event"] for e in report["events"] if e["event"].startswith("motion interrupted")]
    assert len(interruptions) >= 2 and all("ft_sensor/wrench stale" in e for e in interruptions), report["events"]
