"""Integration: bad input to real node processes is refused clearly and moves nothing."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from sensor_msgs.msg import JointState

from conftest import wait_for
from rehab_robot import JOINT_NAMES, resources
from rehab_robot.nodes.common import topic_qos

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "module, name, parameters, expected",
    [
        ("driver_node", "hardware_driver", {"loop_rate": "nan"}, "parameter 'loop_rate'"),
        ("driver_node", "hardware_driver", {"hardware": "warp_drive"}, "available: sim"),
        ("driver_node", "hardware_driver", {"hardware_options": "'{rate_hz: 10.0}'"}, "rate_hz"),
        ("session_node", "session_manager",
         {"patient": "/nonexistent/patient.yaml", "protocol": str(resources.example_protocol()),
          "session_dir": "/tmp/unused"}, "/nonexistent/patient.yaml"),
        ("supervisor_node", "safety_supervisor", {"heartbeat_rate": "0.0"}, "parameter 'heartbeat_rate'"),
    ],
)
def test_bad_parameters_exit_2_with_one_clear_line(start_node, module, name, parameters, expected):
    """A bad parameter or file: exit status 2, one line naming it, no traceback."""
    node = start_node(module, name, **parameters)
    status = node.process.wait(timeout=30)
    output = node.output()
    assert status == 2, output
    assert expected in output and "Traceback" not in output, output
    assert output.strip().count("\n") == 0, f"expected one line, got:\n{output}"


def test_driver_refuses_nan_and_malformed_commands(start_node, ros_client):
    """With motion permitted, NaN or misnamed joint commands never move the arm."""
    states = []
    ros_client.create_subscription(
        JointState, "joint_states", lambda m: states.append(np.array(m.position)), topic_qos("joint_states")
    )
    commands = ros_client.create_publisher(JointState, "joint_commands", topic_qos("joint_commands"))
    driver = start_node("driver_node", "hardware_driver", hardware="sim")
    supervisor = start_node("supervisor_node", "safety_supervisor", patient=str(resources.example_patient()))
    nodes = [driver, supervisor]
    wait_for(lambda: "motion permitted" in supervisor.output() and states, 60, "motion to be permitted", nodes)
    rest = states[-1].copy()
    bad = [
        JointState(name=list(JOINT_NAMES), position=[math.nan] * 4, velocity=[0.0] * 4, effort=[0.0] * 4),
        JointState(name=list(JOINT_NAMES), position=list(rest + [0, 0, 0, 0.3]), velocity=[math.inf] * 4,
                   effort=[0.0] * 4),
        JointState(name=["elbow"], position=[1.0], velocity=[0.0], effort=[0.0]),
        JointState(name=list(JOINT_NAMES), position=[0.5], velocity=[], effort=[]),
    ]
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        for msg in bad:
            commands.publish(msg)
        time.sleep(0.01)
    wait_for(lambda: "joint command refused" in driver.output(), 10, "the driver to refuse the commands", nodes)
    drift = np.max(np.abs(np.array(states[-200:]) - rest))
    assert drift < 0.005, f"the arm moved {drift:.4f} rad on refused commands"
    assert driver.process.poll() is None, "bad commands must not crash the driver"
