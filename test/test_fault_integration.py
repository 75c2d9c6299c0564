"""Integration: hardware faults are contained, reported and cleared only on reset.

The driver runs the ``sim_faults`` backend (the simulated arm with faults injected
through a local socket) with the supervisor, controller and session manager, each its
own process over real DDS. For each injected fault: the arm comes to rest and holds,
the driver reports the backend's reason on ``/diagnostics`` (ERROR) and
``hardware/status``, the session pauses, no process dies, and after the fault is
gone ``safety/reset`` plus ``session/resume`` bring the exercise back.
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

from conftest import call_trigger, trigger_client, wait_for
from rehab_robot import resources
from rehab_robot.hardware.fault_injection import send_fault
from rehab_robot.nodes.common import subscriber_qos
from test_safety_integration import LONG_PROTOCOL, REST_SPEED, ArmWatcher

pytestmark = pytest.mark.integration


class FaultWatcher(ArmWatcher):
    """Also keeps the driver's hardware/status and its /diagnostics."""

    def __init__(self, node):
        super().__init__(node)
        self.hardware = None
        self.driver_diagnostics = None
        self.diag_lock = threading.Lock()
        node.create_subscription(DiagnosticStatus, "hardware/status", self.on_hardware,
                                 subscriber_qos("hardware/status"))
        node.create_subscription(DiagnosticArray, "/diagnostics", self.on_diagnostics, 50)

    def on_hardware(self, msg):
        self.hardware = msg

    def on_diagnostics(self, msg):
        for status in msg.status:
            if status.name.endswith("hardware_driver"):
                with self.diag_lock:
                    self.driver_diagnostics = status

    def at_rest_since(self, t0):
        states = self.since(t0)
        return bool(states) and all(np.max(np.abs(v)) < REST_SPEED for _, _, v in states[-50:])


@pytest.fixture
def fault_graph(start_node, ros_client, tmp_path):
    protocol = tmp_path / "long.yaml"
    protocol.write_text(LONG_PROTOCOL)
    socket_path = str(tmp_path / "faults.sock")
    watcher = FaultWatcher(ros_client)
    patient = str(resources.example_patient())
    nodes = [
        start_node("driver_node", "hardware_driver", hardware="sim_faults",
                   hardware_options=f"\"{{fault_socket: {socket_path}, cycle_budget: 0.003}}\""),
        start_node("supervisor_node", "safety_supervisor", patient=patient),
        start_node("controller_node", "motion_controller"),
        start_node("session_node", "session_manager", patient=patient, protocol=str(protocol),
                   session_dir=str(tmp_path / "session"), autostart=True, exit_when_done=True),
    ]
    wait_for(lambda: watcher.session.get("state") == "running", 60, "the session to start", nodes)
    for service in ("safety/reset", "session/resume", "session/stop"):
        trigger_client(ros_client, service)
    return nodes, watcher, socket_path, tmp_path / "session" / "report.json"


#: (command that injects it, text the driver must report, fault persists until "clear")
CASES = [
    ("read_raise_once elbow_flexion", "read() failed once", False),
    ("read_raise elbow_flexion", "read() failed", True),
    ("write_raise shoulder_flexion", "write() failed", True),
    ("read_block 0.006", "over the backend's budget", True),
    ("nan elbow_flexion", "nan in position", False),
    ("device_lost", "device not answering", True),
]


def test_each_injected_fault_holds_reports_and_recovers_after_reset(fault_graph, ros_client):
    """Every fault: arm at rest, reason on /diagnostics and hardware/status, session paused,
    no crash; motion only after the fault is gone, safety/reset and session/resume."""
    nodes, watcher, socket_path, report_path = fault_graph
    for command, text, persistent in CASES:
        wait_for(watcher.moving, 20, f"the elbow to move before '{command}'", nodes)
        t0 = time.time()
        send_fault(socket_path, command)
        wait_for(lambda: watcher.hardware is not None and watcher.hardware.level == DiagnosticStatus.ERROR
                 and text in watcher.hardware.message.lower(), 5, f"hardware/status to report '{text}'", nodes)
        wait_for(lambda: watcher.session.get("state") == "paused", 5, f"the session to pause after '{command}'", nodes)
        if command != "device_lost" and not command.startswith("read_raise "):
            # The driver keeps reading a device that answers: the arm is seen holding.
            wait_for(lambda: watcher.at_rest_since(t0 + 0.2), 5, f"the arm to rest after '{command}'", nodes)
        wait_for(lambda: watcher.driver_diagnostics is not None
                 and watcher.driver_diagnostics.level == DiagnosticStatus.ERROR
                 and text in watcher.driver_diagnostics.message.lower(), 5, f"/diagnostics ERROR naming '{text}'", nodes)
        assert all(node.process.poll() is None for node in nodes), f"a node died after '{command}'"

        if persistent:
            # A reset while the fault is still there does not bring motion back.
            call_trigger(ros_client, "safety/reset")
            time.sleep(0.5)
            assert watcher.hardware.level == DiagnosticStatus.ERROR, f"'{command}' cleared while still present"
            assert not call_trigger(ros_client, "session/resume").success
            send_fault(socket_path, "clear")
        # Two resets at most: the first clears the driver's fault, which may be what kept a
        # signal (joint_states) missing; the second clears the supervisor's stop.
        deadline = time.monotonic() + 10
        while not call_trigger(ros_client, "safety/reset").success and time.monotonic() < deadline:
            time.sleep(0.3)
        wait_for(lambda: watcher.heartbeat is True and watcher.hardware.level != DiagnosticStatus.ERROR, 5,
                 f"the fault to clear after '{command}'", nodes)
        assert call_trigger(ros_client, "session/resume").success, f"resume after '{command}'"

    wait_for(watcher.moving, 20, "the elbow to move after the last fault", nodes)
    assert call_trigger(ros_client, "session/stop").success
    wait_for(report_path.exists, 10, "the report", nodes)
    events = " | ".join(e["event"] for e in json.loads(report_path.read_text())["events"])
    for _, text, _ in CASES:
        assert text in events.lower(), f"the report does not name '{text}': {events}"
