"""Integration: the graph behaves as ROS 2 tools expect.

* A subscriber with the default QoS (depth 10, reliable) receives the streaming topics.
* Each node's process carries its node name (``ps``, ``top``, ``pgrep``).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sensor_msgs.msg import JointState

from conftest import wait_for

pytestmark = pytest.mark.integration

LOOP_RATE = 500.0


def test_default_qos_subscriber_receives_joint_states_at_the_loop_rate(start_node, ros_client):
    """``create_subscription(JointState, 'joint_states', cb, 10)`` gets >= 95 % of the samples."""
    driver = start_node("driver_node", "hardware_driver")
    stamps: list[float] = []
    lock = threading.Lock()

    def on_state(msg):
        with lock:
            stamps.append(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)

    ros_client.create_subscription(JointState, "joint_states", on_state, 10)
    wait_for(lambda: len(stamps) > 50, 30, "joint_states with the default QoS", [driver])
    with lock:
        stamps.clear()
    time.sleep(3.0)
    with lock:
        received = sorted(stamps)
    # Counted against the driver's own stamps: a late test process does not count as loss.
    expected = (received[-1] - received[0]) * LOOP_RATE + 1
    print(f"default-QoS subscriber: {len(received)} of {expected:.0f} samples "
          f"({100 * len(received) / expected:.1f} %)")
    assert len(received) >= 0.95 * expected, f"only {len(received)} of {expected:.0f} joint_states"


def test_every_node_process_carries_its_node_name(start_node):
    """``/proc/PID/comm`` (what ``top`` and ``pgrep`` show) and the command line name the node."""
    nodes = {
        "hardware_driver": start_node("driver_node", "hardware_driver"),
        "safety_supervisor": start_node("supervisor_node", "safety_supervisor"),
        "motion_controller": start_node("controller_node", "motion_controller"),
    }

    def named(name, node):
        proc = Path(f"/proc/{node.process.pid}")
        try:
            comm = (proc / "comm").read_text().strip()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except FileNotFoundError:
            return False
        return comm == name[:15] and cmdline.startswith(name)

    for name, node in nodes.items():
        wait_for(lambda: named(name, node), 30, f"the process of {name} to carry its name", list(nodes.values()))
