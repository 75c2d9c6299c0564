"""Integration: the ft_sensor_driver node against the emulated Net F/T, each its own process.

The emulator streams RDT over localhost UDP; the node publishes ft_sensor/wrench over real
DDS to this test's client. Checked: the emulator's force arrives in N in ft_sensor_link,
ft_sensor/tare zeroes it, gravity compensation follows joint_states, and every injected
fault shows on /diagnostics; saturation, a status error and a stopped stream end the
wrench stream until the sensor is healthy again.
"""

from __future__ import annotations

import math
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
