"""Integration: bad input to real node processes is refused clearly and moves nothing."""

from __future__ import annotations

import math
import threading
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
        ("driver_node", "hardware_driver", {"hardware": "warp_drive"}, "available: canopen, dynamixel, sim, sim_faults"),
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
    """With the supervisor satisfied, NaN or misnamed joint commands never move the arm."""
    states = []
    ros_client.create_subscription(
        JointState, "joint_states", lambda m: states.append(np.array(m.position)), topic_qos("joint_states")
    )
    commands = ros_client.create_publisher(JointState, "joint_commands", topic_qos("joint_commands"))
    bad = [
        JointState(name=list(JOINT_NAMES), position=[math.nan] * 4, velocity=[0.0] * 4, effort=[0.0] * 4),
        JointState(name=list(JOINT_NAMES), position=[0.0, 0.1, 0.0, 0.6], velocity=[math.inf] * 4,
                   effort=[0.0] * 4),
        JointState(name=["elbow"], position=[1.0], velocity=[0.0], effort=[0.0]),
        JointState(name=list(JOINT_NAMES), position=[0.5], velocity=[], effort=[]),
    ]
    # Bad commands keep arriving (so the supervisor sees a live command stream and permits
    # motion); the driver must refuse every one of them.
    stop = threading.Event()

    def publish_bad():
        while not stop.is_set():
            for msg in bad:
                commands.publish(msg)
            time.sleep(0.01)

    publisher = threading.Thread(target=publish_bad, daemon=True)
    publisher.start()
    try:
        driver = start_node("driver_node", "hardware_driver", hardware="sim")
        supervisor = start_node("supervisor_node", "safety_supervisor", patient=str(resources.example_patient()))
        nodes = [driver, supervisor]
        wait_for(lambda: "motion permitted" in supervisor.output() and len(states) > 10, 60,
                 "motion to be permitted", nodes)
        wait_for(lambda: "joint command refused" in driver.output(), 10, "the driver to refuse commands", nodes)
        count = len(states)
        wait_for(lambda: len(states) > count + 500, 10, "a second of joint_states", nodes)
    finally:
        stop.set()
        publisher.join()
    drift = np.max(np.abs(np.array(states[count:]) - states[count]))
    assert drift < 0.005, f"the arm moved {drift:.4f} rad on refused commands"
    assert driver.process.poll() is None, "bad commands must not crash the driver"
