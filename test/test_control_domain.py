"""The control chain's private DDS domain (rehab_robot.ros_env, rehab_robot.nodes.control_domain).

Unit: which domain ``control_domain:=...`` names, and the refusals.
Integration (real node processes, real DDS): with ``control_domain:=auto`` the chain
(driver, supervisor, controller) runs on its own domain; every control topic is mirrored on
the public domain for tools (default QoS); what a tool publishes there never reaches the
drives; the operator's e-stop on the public domain still stops the arm.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import WrenchStamped
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool

from conftest import call_trigger, trigger_client, wait_for
from test_safety_integration import LONG_PROTOCOL, ArmWatcher, assert_stops_and_holds
from rehab_robot import resources
from rehab_robot.errors import ConfigError
from rehab_robot.ros_env import MAX_DOMAIN_ID, control_domain_id, public_domain_id


@pytest.mark.parametrize("public, private", [(0, 100), (42, 142), (132, 232), (133, 33), (232, 132)])
def test_auto_puts_the_chain_100_domains_away(public, private):
    assert control_domain_id("auto", public) == private
    assert control_domain_id(" AUTO ", public) == private


def test_public_keeps_the_chain_on_the_public_domain():
    assert control_domain_id("public", 7) is None


def test_an_explicit_domain_is_taken_when_it_is_a_valid_other_one():
    assert control_domain_id("0", 7) == 0
    assert control_domain_id(str(MAX_DOMAIN_ID), 7) == MAX_DOMAIN_ID


@pytest.mark.parametrize("setting", ["7", "-1", "233", "1.5", "nan", "inf", "", "private"])
def test_a_bad_control_domain_is_refused_naming_what_is_allowed(setting):
    with pytest.raises(ConfigError, match=r"control_domain .* is not allowed; allowed: auto, public, or a domain id "
                                          r"0\.\.232 other than ROS_DOMAIN_ID \(7\)"):
        control_domain_id(setting, 7)


def test_public_domain_id_reads_ros_domain_id():
    assert public_domain_id({}) == 0
    assert public_domain_id({"ROS_DOMAIN_ID": " 42 "}) == 42
    for bad in ("233", "-3", "x"):
        with pytest.raises(ConfigError, match=r"ROS_DOMAIN_ID='.*' is not allowed; allowed: 0\.\.232"):
            public_domain_id({"ROS_DOMAIN_ID": bad})


# --------------------------------------------------------------------------- integration


@pytest.fixture
def chain(start_node, ros_client, tmp_path):
    """Driver, supervisor and controller on a private control domain (``auto``), with the
    session manager (public domain only) running a long exercise."""
    protocol = tmp_path / "long.yaml"
    protocol.write_text(LONG_PROTOCOL)
    watcher = ArmWatcher(ros_client)
    patient = str(resources.example_patient())
    nodes = [
        start_node("driver_node", "hardware_driver", hardware="sim", control_domain="auto"),
        start_node("supervisor_node", "safety_supervisor", patient=patient, control_domain="auto"),
        start_node("controller_node", "motion_controller", control_domain="auto"),
        start_node("session_node", "session_manager", patient=patient, protocol=str(protocol),
                   session_dir=str(tmp_path / "session"), autostart=True),
    ]
    trigger_client(ros_client, "safety/estop")
    wait_for(lambda: watcher.session.get("state") == "running", 60, "the session to start", nodes)
    wait_for(watcher.moving, 20, "the elbow to move at > 0.3 rad/s", nodes)
    return nodes, watcher


class Latest:
    """The newest message of a topic and how many arrived."""

    def __init__(self) -> None:
        self.msg = None
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, msg) -> None:
        with self._lock:
            self.msg = msg
            self.count += 1


def _value(status: DiagnosticStatus, key: str) -> str:
    return next((kv.value for kv in status.values if kv.key == key), "")


@pytest.mark.integration
def test_the_chain_runs_on_its_own_domain_and_is_mirrored_for_tools(chain, ros_client, domain_id):
    """The session runs (so the chain works, on its own domain), and every control topic
    reaches a default-QoS subscriber on the public domain."""
    nodes, _ = chain
    topics = {"joint_states": JointState, "joint_commands": JointState, "ft_sensor/wrench": WrenchStamped,
              "safety/heartbeat": Bool, "hardware/status": DiagnosticStatus, "safety/status": DiagnosticStatus}
    latest = {topic: Latest() for topic in topics}
    for topic, msg_type in topics.items():
        ros_client.create_subscription(msg_type, topic, latest[topic], 10)
    wait_for(lambda: all(seen.count > 0 for seen in latest.values()), 30,
             "every control topic mirrored on the public domain", nodes)
    wait_for(lambda: _value(latest["hardware/status"].msg, "state") == "following", 10, "the drives following", nodes)
    for node in nodes[:3]:
        assert f"control topics on the private domain {domain_id + 100}, mirrored on {domain_id}" in node.output()
    # Each node appears once on the public domain: its twin lives on the control domain.
    names = [name for name, _ in ros_client.get_node_names_and_namespaces()]
    assert names.count("hardware_driver") == 1 and names.count("safety_supervisor") == 1, names


@pytest.mark.integration
def test_commands_a_tool_publishes_on_the_public_domain_never_reach_the_drives(chain, ros_client):
    """While the session moves the elbow, a tool streams joint_commands 0.4 rad away from the
    arm on the public domain: the drives keep following the controller (no following error,
    no stop), and the arm never jumps toward the tool's setpoint."""
    nodes, watcher = chain
    hardware = Latest()
    ros_client.create_subscription(DiagnosticStatus, "hardware/status", hardware, 10)
    wait_for(lambda: hardware.msg is not None and _value(hardware.msg, "state") == "following", 10,
             "the drives following", nodes)
    stops_before = _value(hardware.msg, "quick_stops")
    intruder = ros_client.create_publisher(JointState, "joint_commands", 10)
    names = ["shoulder_flexion", "shoulder_abduction", "shoulder_rotation", "elbow_flexion"]
    t0 = time.time()
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        with watcher.lock:
            position = watcher.states[-1][1]
        msg = JointState(name=names, position=[float(p) + 0.4 for p in position], velocity=[0.0] * 4,
                         effort=[0.0] * 4)
        msg.header.stamp = ros_client.get_clock().now().to_msg()
        intruder.publish(msg)
        time.sleep(0.004)
    states = watcher.since(t0)
    positions = np.array([p for _, p, _ in states])
    largest_step = float(np.max(np.abs(np.diff(positions, axis=0)))) if len(positions) > 1 else float("nan")
    print(f"{len(states)} states while a tool published commands 0.4 rad away; largest step between two "
          f"samples {largest_step * 1e3:.2f} mrad; hardware: {hardware.msg.message}")
    assert len(states) > 300
    assert largest_step < 0.01  # the elbow moves < 1.6 rad/s: under 3.2 mrad per 2 ms sample
    assert _value(hardware.msg, "state") == "following", hardware.msg.message
    assert _value(hardware.msg, "quick_stops") == stops_before
    # The elbow kept moving through the window (its last sample may fall on a turn or a hold).
    assert max(abs(velocity[3]) for _, _, velocity in states) > 0.3


@pytest.mark.integration
def test_the_operators_estop_on_the_public_domain_stops_the_arm_within_100_ms(chain, ros_client):
    """``safety/estop`` is a public service; the supervisor's heartbeat on the control domain
    turns False and the driver, which listens there, brings the arm to rest within 100 ms."""
    _, watcher = chain
    t0 = time.time()
    assert call_trigger(ros_client, "safety/estop").success
    rest = assert_stops_and_holds(watcher, t0, "the e-stop")
    print(f"e-stop to rest with the chain on its own domain: {1e3 * (rest - t0):.1f} ms")
    assert watcher.heartbeat is False


@pytest.mark.integration
def test_a_batching_mirror_publishes_every_message_in_order(ros_client):
    """The public mirror's thread wakes every 10 ms: a burst of 300 messages offered at once
    arrives complete and in order at a reliable subscriber (what the bag records)."""
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    from rehab_robot.nodes.control_domain import PUBLIC_BATCH_PERIOD, PUBLIC_QUEUE
    from rehab_robot.nodes.nonblocking import LatestValuePublisher

    qos = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=PUBLIC_QUEUE)
    received: list[int] = []
    ros_client.create_subscription(JointState, "mirror_probe", lambda m: received.append(int(m.position[0])), qos)
    mirror = LatestValuePublisher(ros_client.create_publisher(JointState, "mirror_probe", qos), "probe",
                                  PUBLIC_QUEUE, batch_period=PUBLIC_BATCH_PERIOD)
    wait_for(lambda: ros_client.count_subscribers("mirror_probe") > 0, 10, "the probe subscription")
    time.sleep(0.5)  # both directions matched
    for k in range(300):
        mirror.offer(JointState(position=[float(k)]))
    mirror.stop(5.0)
    wait_for(lambda: len(received) >= 300, 10, "300 mirrored messages")
    assert received == list(range(300))
    assert mirror.published == 300 and mirror.skipped == 0
