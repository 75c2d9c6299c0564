"""Integration: the hardware_driver node with ``hardware:=dynamixel`` against the emulator.

The emulator runs in its own process behind a pseudo-terminal; the driver and the
safety supervisor are real node processes over DDS (localhost, a domain of their own).
Joint states flow with the emulated arm's positions, a servo overload becomes the
driver's FAULT naming the joint, and ``safety/reset`` reboots the servo.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from sensor_msgs.msg import JointState

from conftest import call_trigger, trigger_client, wait_for
from rehab_robot.nodes.common import subscriber_qos
from test_dynamixel_pty import EmulatorProcess, _config

pytestmark = pytest.mark.integration


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


def test_driver_node_on_the_emulated_bus(tmp_path, start_node, ros_client):
    """joint_states match the emulator; an overload is a FAULT naming the joint; reset reboots."""
    emu = EmulatorProcess(tmp_path)
    try:
        watcher = Watcher(ros_client)
        options = f"\"{{config: {_config(tmp_path)}, port: {emu.link}}}\""
        nodes = [
            start_node("driver_node", "hardware_driver", hardware="dynamixel", hardware_options=options,
                       loop_rate=250.0),
            start_node("supervisor_node", "safety_supervisor"),
        ]
        wait_for(lambda: len(watcher.joint_states) > 50, 60, "joint_states from the dynamixel driver", nodes)
        state = watcher.latest()
        assert list(state.name) == ["shoulder_flexion", "shoulder_abduction", "shoulder_rotation", "elbow_flexion"]
        np.testing.assert_allclose(state.position, emu.state()[0], atol=5e-3)
        trigger_client(ros_client, "safety/reset")

        emu.command("error 2 0x20")
        wait_for(lambda: watcher.hardware is not None and watcher.hardware.level == DiagnosticStatus.ERROR,
                 10, "the driver to report the overload", nodes)
        assert "shoulder_abduction" in watcher.hardware.message and "overload" in watcher.hardware.message
        count = len(watcher.joint_states)
        wait_for(lambda: len(watcher.joint_states) > count + 20, 10, "joint_states during the fault", nodes)

        # The driver acts on a new reset count on safety/status; a reset it could not yet
        # compare with an earlier count is pressed again, as an operator would.
        deadline = time.monotonic() + 20
        while watcher.hardware.level == DiagnosticStatus.ERROR:
            assert time.monotonic() < deadline, f"fault not cleared by safety/reset: {watcher.hardware.message}"
            call_trigger(ros_client, "safety/reset")
            end = time.monotonic() + 2
            while watcher.hardware.level == DiagnosticStatus.ERROR and time.monotonic() < end:
                time.sleep(0.02)
        assert emu.register(2, 518, 1) == 0  # rebooted: no error left
        assert emu.register(2, 512, 1) == 1  # and holding again
        count = len(watcher.joint_states)
        wait_for(lambda: len(watcher.joint_states) > count + 50, 10, "joint_states after the reset", nodes)
        assert all(node.process.poll() is None for node in nodes)
        # Ctrl-C: the driver brings the arm to rest, holding, before it closes the port.
        status = nodes[0].stop(10)
        log = nodes[0].log_path.read_text()
        assert status == 0, log
        assert "arm at rest and holding; closing the hardware" in log
    finally:
        emu.stop()
