"""Integration: the fail-safe chain with real node processes over real DDS.

The driver (sim backend), safety supervisor, motion controller and session manager run
as separate processes. The test client watches ``joint_states`` and calls services.
Stop times are measured from the driver's own message stamps, so a slow test process
does not distort them; 100 ms is a safety requirement, not a benchmark.
"""

from __future__ import annotations

import signal
import threading
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool

from conftest import call_trigger, trigger_client, wait_for
from rehab_robot import resources
from rehab_robot.nodes.common import topic_qos

pytestmark = pytest.mark.integration

#: Every joint slower than this [rad/s] counts as at rest.
REST_SPEED = 0.02
#: Required stop time [s].
STOP_REQUIREMENT = 0.1

LONG_PROTOCOL = """\
protocol:
  name: long_elbow_rom
  type: passive_rom
  joint: elbow_flexion
  start_angle: 0.4
  end_angle: 1.6
  repetitions: 10
  movement_duration: 2.5
  hold_duration: 0.0
"""


class ArmWatcher:
    """Collects joint_states, heartbeats and session status seen by the test client."""

    def __init__(self, node):
        self.lock = threading.Lock()
        self.states: list[tuple[float, np.ndarray, np.ndarray]] = []
        self.heartbeat = None
        self.session = {}
        node.create_subscription(JointState, "joint_states", self.on_state, topic_qos("joint_states"))
        node.create_subscription(Bool, "safety/heartbeat", self.on_heartbeat, topic_qos("safety/heartbeat"))
        node.create_subscription(DiagnosticStatus, "session/status", self.on_status, topic_qos("session/status"))

    def on_state(self, msg):
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        with self.lock:
            self.states.append((stamp, np.array(msg.position), np.array(msg.velocity)))

    def on_heartbeat(self, msg):
        self.heartbeat = msg.data

    def on_status(self, msg):
        self.session = {kv.key: kv.value for kv in msg.values}

    def since(self, t0):
        with self.lock:
            return [s for s in self.states if s[0] >= t0]

    def moving(self) -> bool:
        with self.lock:
            return bool(self.states) and abs(self.states[-1][2][3]) > 0.3

    def rest_time_after(self, t0):
        """Stamp of the first state after t0 from which every later state is at rest."""
        states = self.since(t0)
        rest_from = None
        for stamp, _, velocity in states:
            if np.max(np.abs(velocity)) < REST_SPEED:
                rest_from = stamp if rest_from is None else rest_from
            else:
                rest_from = None
        return rest_from


@pytest.fixture
def session_graph(start_node, ros_client, tmp_path):
    """The four control nodes with a long exercise that starts by itself."""
    protocol = tmp_path / "long.yaml"
    protocol.write_text(LONG_PROTOCOL)
    watcher = ArmWatcher(ros_client)
    nodes = [
        start_node("driver_node", "hardware_driver", hardware="sim"),
        start_node("supervisor_node", "safety_supervisor", patient=str(resources.example_patient())),
        start_node("controller_node", "motion_controller"),
        start_node("session_node", "session_manager", patient=str(resources.example_patient()),
                   protocol=str(protocol), session_dir=str(tmp_path / "session"), autostart=True),
    ]
    wait_for(lambda: watcher.session.get("state") == "running", 60, "the session to start", nodes)
    for service in ("safety/estop", "safety/reset", "session/resume"):
        trigger_client(ros_client, service)
    wait_for(watcher.moving, 20, "the elbow to move at > 0.3 rad/s", nodes)
    return nodes, watcher


def max_displacement(watcher, t0):
    """Largest joint displacement [rad] of any state after t0 from the first one."""
    positions = np.array([position for _, position, _ in watcher.since(t0)])
    return float(np.max(np.abs(positions - positions[0])))


def assert_stops_and_holds(watcher, t0, what):
    time.sleep(1.0)
    rest = watcher.rest_time_after(t0)
    assert rest is not None, f"arm never came to rest after {what}"
    assert rest - t0 < STOP_REQUIREMENT, f"arm at rest {1e3 * (rest - t0):.0f} ms after {what} (> 100 ms)"
    drift = max_displacement(watcher, rest)
    assert drift < 0.005, f"arm moved {drift:.4f} rad while holding after {what}"
    return rest


def test_estop_stops_the_arm_and_latches_until_reset(session_graph, ros_client):
    """e-stop: at rest within 100 ms, held while latched (session paused), reset clears, resume moves."""
    nodes, watcher = session_graph
    t0 = time.time()
    response = call_trigger(ros_client, "safety/estop")
    assert response.success
    rest = assert_stops_and_holds(watcher, t0, "the e-stop")
    print(f"e-stop to rest: {1e3 * (rest - t0):.1f} ms")
    assert watcher.heartbeat is False
    wait_for(lambda: watcher.session.get("state") == "paused", 5, "the session to pause", nodes)

    # Latched: the session cannot resume it, and time alone does not clear it.
    assert not call_trigger(ros_client, "session/resume").success
    time.sleep(0.5)
    assert watcher.heartbeat is False
    assert watcher.rest_time_after(rest) == rest

    reset = call_trigger(ros_client, "safety/reset")
    assert reset.success, reset.message
    wait_for(lambda: watcher.heartbeat is True, 5, "the heartbeat to permit motion again", nodes)
    time.sleep(0.5)
    # The session is still paused: the drives keep holding after the reset (no hand-over to
    # the controller, so no sag) until session/resume starts a motion.
    settle = max_displacement(watcher, rest)
    print(f"displacement from hold after reset: {settle * 1e3:.2f} mrad")
    assert settle < 0.002, f"the arm moved {settle:.4f} rad on reset alone"

    assert call_trigger(ros_client, "session/resume").success
    wait_for(watcher.moving, 10, "the elbow to move again after resume", nodes)


def test_killing_the_supervisor_stops_the_arm(session_graph):
    """SIGKILL of the safety supervisor: at rest within 100 ms, holds without sagging, states keep flowing."""
    nodes, watcher = session_graph
    supervisor = nodes[1]
    t0 = time.time()
    supervisor.signal(signal.SIGKILL)
    rest = assert_stops_and_holds(watcher, t0, "killing the supervisor")
    print(f"supervisor death to rest: {1e3 * (rest - t0):.1f} ms")
    count = len(watcher.since(rest))
    time.sleep(1.0)
    assert len(watcher.since(rest)) - count > 100, "joint_states must keep flowing while holding"
    assert nodes[0].process.poll() is None, "the driver keeps running"
