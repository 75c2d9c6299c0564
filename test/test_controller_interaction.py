"""Integration: the motion controller's interaction modes over real DDS.

The driver (sim backend, a virtual patient who pushes the elbow up with a twentieth of
its strength), the safety supervisor and the controller run as their own processes.
The test client sets the mode and gains the way the session does (contract A: one
``set_parameters_atomically`` call). In ``position`` mode the stiff arm holds against
the push; in ``active`` mode the patient moves the elbow, up to the soft wall. A mode
change while the arm moves is refused with a reason; a bad value too. ``controller/events``
announces the mode changes.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParametersAtomically
from sensor_msgs.msg import JointState

from conftest import wait_for
from rehab_robot.nodes.common import topic_qos
from rehab_robot.nodes.controller_node import EVENTS_QOS

pytestmark = pytest.mark.integration

ELBOW = 3
#: The patient pushes the elbow up from the start with 5 % of its strength (2.25 N·m): slowly enough
#: against 200 N·s/m (about 0.2 rad/s) for a mode change to be tried while it moves.
HARDWARE_OPTIONS = ('"{virtual_patient: {events: [{type: push_out, time: 0.0, joint: elbow_flexion, '
                    'direction: positive, effort: 0.05}]}}"')
#: The patient's ROM as a therapist would set it around the start posture (0, 0.1, 0, 0.3).
SOFT_WALL_LOWER = [-0.15, 0.0, -0.2, 0.0]
SOFT_WALL_UPPER = [0.3, 0.3, 0.2, 1.2]


def parameter(name, value) -> Parameter:
    """An rcl_interfaces Parameter of a double, double array or string value."""
    if isinstance(value, str):
        v = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
    elif isinstance(value, list):
        v = ParameterValue(type=ParameterType.PARAMETER_DOUBLE_ARRAY, double_array_value=[float(x) for x in value])
    else:
        v = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=float(value))
    return Parameter(name=name, value=v)


class Watcher:
    """Joint states and controller events seen by the test client."""

    def __init__(self, node):
        self.lock = threading.Lock()
        self.position = None
        self.velocity = None
        self.events: list[DiagnosticStatus] = []
        self.driver_state = ""
        node.create_subscription(JointState, "joint_states", self.on_state, topic_qos("joint_states"))
        node.create_subscription(DiagnosticStatus, "hardware/status", self.on_hardware, topic_qos("hardware/status"))
        node.create_subscription(DiagnosticStatus, "controller/events", self.on_event, EVENTS_QOS)

    def on_state(self, msg):
        with self.lock:
            self.position, self.velocity = np.array(msg.position), np.array(msg.velocity)

    def on_hardware(self, msg):
        self.driver_state = {kv.key: kv.value for kv in msg.values}.get("state", "")

    def on_event(self, msg):
        with self.lock:
            self.events.append(msg)


def set_atomically(client, **values):
    """Call set_parameters_atomically; return (successful, reason)."""
    request = SetParametersAtomically.Request(
        parameters=[parameter(name.replace("__", "."), value) for name, value in values.items()])
    future = client.call_async(request)
    deadline = time.monotonic() + 10.0
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert future.done(), "set_parameters_atomically did not answer within 10 s"
    result = future.result().result
    return result.successful, result.reason


def test_active_mode_lets_the_patient_move_the_arm_position_mode_does_not(start_node, ros_client):
    """Pushing the cuff moves the elbow in active mode only; mode switches happen at rest."""
    watcher = Watcher(ros_client)
    nodes = [
        start_node("driver_node", "hardware_driver", hardware_options=HARDWARE_OPTIONS),
        start_node("supervisor_node", "safety_supervisor"),
        start_node("controller_node", "motion_controller"),
    ]
    client = ros_client.create_client(SetParametersAtomically, "/motion_controller/set_parameters_atomically")
    assert client.wait_for_service(timeout_sec=30.0), "the controller's parameter service did not appear"
    wait_for(lambda: watcher.position is not None and watcher.driver_state == "holding", 30,
             "the arm, held by the drives", nodes)
    # Position mode (the default), no trajectory: the arm holds against the push (the
    # drives leave their hold only for a command that moves).
    start = watcher.position.copy()
    time.sleep(1.0)
    assert abs(watcher.position[ELBOW] - start[ELBOW]) < 0.02, "position mode holds the arm"

    ok, reason = set_atomically(client, admittance__damping=500.0)
    assert not ok and "admittance.damping" in reason and "2 to 200" in reason, reason
    ok, reason = set_atomically(client, mode="active", admittance__damping=200.0, weight_support=1.0,
                                limb_masses=[2.0, 1.5], soft_wall__lower=SOFT_WALL_LOWER,
                                soft_wall__upper=SOFT_WALL_UPPER)
    assert ok, reason
    wait_for(lambda: watcher.velocity is not None and watcher.velocity[ELBOW] > 0.1, 5,
             "the patient to move the elbow in active mode", nodes)
    ok, reason = set_atomically(client, mode="position")
    assert not ok and "mode" in reason and "moves" in reason, reason
    # hardware/status is its own topic: it may reach the client after the joint_states that
    # already show the elbow moving.
    wait_for(lambda: watcher.driver_state == "following", 5, "the drives to follow the controller", nodes)
    # The patient pushes the elbow up to its soft wall (1.2 rad), which holds it.
    wait_for(lambda: watcher.position[ELBOW] > 1.0 and max(abs(watcher.velocity)) < 0.02, 20,
             "the elbow to come to rest at the soft wall", nodes)
    assert watcher.position[ELBOW] < 1.2 + 0.15, watcher.position
    ok, reason = set_atomically(client, mode="position")
    assert ok, reason
    wait_for(lambda: [e.message for e in watcher.events if e.name == "mode"][-1:] == ["mode position (was active)"],
             5, "the mode events", nodes)
    names = [(e.name, e.message) for e in watcher.events]
    assert ("mode", "mode active (was position)") in names, names
    assert not [e for e in watcher.events if e.name in ("spasm", "soft_wall_limit")], names
    # path_guidance needs its waypoints (a double array parameter) in the same call.
    ok, reason = set_atomically(client, mode="path_guidance")
    assert not ok and "path_guidance.waypoints" in reason, reason
    ok, reason = set_atomically(client, mode="path_guidance",
                                path_guidance__waypoints=[0.0, -0.05, -0.5, 0.2, -0.05, -0.4])
    assert ok, reason


def test_bad_interaction_parameter_at_start_exits_2_with_one_line(start_node):
    node = start_node("controller_node", "motion_controller", mode="fast")
    status = node.process.wait(timeout=30)
    output = node.output()
    assert status == 2, output
    assert "parameter 'mode'" in output and "active_assist" in output and "Traceback" not in output, output
    assert output.strip().count("\n") == 0, output
