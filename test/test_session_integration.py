"""Integration: a complete exercise session started with `rehab-robot run`.

Every node runs as its own process over real DDS (localhost only, a domain of this
test's own). The test reads what a researcher gets afterwards: the JSON report and the
rosbag2 MCAP bag, opened with rosbags and deserialised with rclpy.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import yaml
from rclpy.serialization import deserialize_message
from rosbags.highlevel import AnyReader
from sensor_msgs.msg import JointState

from conftest import run_rehab_robot
from rehab_robot import JOINT_NAMES, resources

REPORT_SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "docs" / "report.schema.json").read_text())

pytestmark = pytest.mark.integration

SHORT_PROTOCOL = """\
protocol:
  name: short_elbow_rom
  type: passive_rom
  joint: elbow_flexion
  start_angle: 0.5
  end_angle: 1.3
  repetitions: 2
  movement_duration: 1.6
  hold_duration: 0.2
"""


def run_session(tmp_path: Path, domain_id: int, *extra: str, timeout: float = 120.0, kill=None):
    """Run `rehab-robot run` on the short protocol; return (exit status, output, session folder)."""
    protocol = tmp_path / "short.yaml"
    protocol.write_text(SHORT_PROTOCOL)
    status, output = run_rehab_robot(
        ["run", f"patient:={resources.example_patient()}", f"protocol:={protocol}",
         f"output_dir:={tmp_path / 'sessions'}", "session_id:=it", *extra], domain_id, timeout, kill)
    return status, output, tmp_path / "sessions" / "it"


def read_bag(path: Path) -> dict[str, list[tuple[int, bytes]]]:
    """Return every message of the bag by topic, as (timestamp ns, raw CDR bytes)."""
    messages: dict[str, list] = {}
    with AnyReader([path]) as reader:
        for connection, timestamp, raw in reader.messages():
            messages.setdefault(connection.topic, []).append((timestamp, bytes(raw)))
    return messages


def test_complete_session_writes_report_and_bag(tmp_path, domain_id):
    """A full passive ROM session completes; the report and the MCAP bag hold what happened."""
    status, output, session = run_session(tmp_path, domain_id)
    assert status == 0, output[-5000:]
    assert "Traceback" not in output

    report = json.loads((session / "report.json").read_text())
    assert report["ended"] == "completed", f"{report['end_reason']}\n{output[-4000:]}"
    assert report["repetitions_completed"] == report["repetitions_planned"] == 2
    jsonschema.validate(report, REPORT_SCHEMA)
    events = [e["event"] for e in report["events"]]
    for rep in (1, 2):
        assert events.index(f"repetition {rep} started") < events.index(f"repetition {rep} completed"), events
    for role in ("patient", "protocol"):
        kept = session / report["inputs"][role]["copy"]
        assert kept.read_bytes() == Path(report["inputs"][role]["source"]).read_bytes()
        assert report["inputs"][role]["sha256"] == hashlib.sha256(kept.read_bytes()).hexdigest()
    assert report["hardware"] == {"backend": "sim", "options": {}}
    assert report["software"]["ros_distro"] in ("jazzy", "kilted")
    elbow = report["rom_reached"]["elbow_flexion"]
    assert elbow["min"] == pytest.approx(0.5, abs=0.03)
    assert elbow["max"] == pytest.approx(1.3, abs=0.03)
    assert report["rom_reached"]["shoulder_flexion"]["range"] < 0.02, "joints not exercised are held"
    # The patient's forearm (1.5 kg) hangs on the cuff: the sensor feels its weight, which
    # the tare at the start takes off; a passive patient then pushes with almost nothing.
    assert 10.0 < np.linalg.norm(report["interaction_force"]["bias"]) < 40.0
    assert 0.0 < report["peak_interaction_force"] < 5.0
    assert report["duration"] > 2 * 2 * 1.6

    bag = session / "bag"
    metadata = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert metadata["storage_identifier"] == "mcap"
    messages = read_bag(bag)
    for topic in ("/joint_states", "/ft_sensor/wrench", "/joint_commands", "/joint_trajectory",
                  "/safety/heartbeat", "/session/status", "/session/events", "/diagnostics"):
        assert messages.get(topic), f"{topic} missing from the bag"
    states = [deserialize_message(raw, JointState) for _, raw in messages["/joint_states"]]
    assert tuple(states[0].name) == JOINT_NAMES
    elbow_positions = np.array([s.position[3] for s in states])
    assert np.all(np.isfinite(elbow_positions))
    assert elbow_positions.max() == pytest.approx(1.3, abs=0.03)
    stamps = np.array([s.header.stamp.sec + s.header.stamp.nanosec * 1e-9 for s in states])
    span = stamps[-1] - stamps[0]
    assert span > report["duration"], "the bag covers the whole session"
    assert len(states) > 100 * span, "joint_states are recorded throughout (nominal 500 Hz)"
    statuses = [raw for _, raw in messages["/session/status"]]
    from diagnostic_msgs.msg import DiagnosticStatus

    last = deserialize_message(statuses[-1], DiagnosticStatus)
    assert {kv.key: kv.value for kv in last.values}["state"] == "completed"
    # The bag alone tells the story: the same events as the report, in order.
    bag_events = [deserialize_message(raw, DiagnosticStatus).message for _, raw in messages["/session/events"]]
    assert bag_events == events, (bag_events, events)


def test_node_death_brings_the_graph_down(tmp_path, domain_id):
    """Killing the motion controller mid-session: the launcher names it, stops the rest, exits non-zero."""

    def kill_controller(process):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            # Only the launcher's own child: other test runs may have a motion_controller too.
            found = subprocess.run(
                ["pgrep", "-P", str(process.pid), "-f", "rehab_robot.nodes.controller_node|motion_controller"],
                capture_output=True, text=True,
            ).stdout.split()
            children = [pid for pid in found if int(pid) != process.pid]
            if children and (tmp_path / "sessions" / "it").exists():
                time.sleep(4.0)  # let the exercise get under way
                for pid in children:
                    subprocess.run(["kill", "-KILL", pid])
                return
            time.sleep(0.1)
        pytest.fail("motion_controller never started")

    status, output, session = run_session(tmp_path, domain_id, kill=kill_controller)
    assert status != 0, output[-3000:]
    assert "motion_controller" in output and "died" in output, output[-3000:]
    assert "Traceback" not in output
    report = json.loads((session / "report.json").read_text())
    jsonschema.validate(report, REPORT_SCHEMA)
    assert report["ended"] == "aborted"
    assert "motion_controller" in report["end_reason"]
    assert report["repetitions_completed"] < 2
