"""Integration: exercises in which the (virtual) patient takes part, as real processes over DDS.

`rehab-robot run` starts the whole graph with the sim backend's virtual patient. The
session manager sets the motion controller's mode and gains (contract A), publishes
the target on exercise/target, which the driver forwards to the virtual patient, and
writes per-repetition metrics to the report and the session to the patient's history.

These tests need the motion controller of the "modes" branch (interaction modes as ROS
parameters). With a controller that lacks them, the session aborts at the parameter call
with the controller's reason: the tests then fail naming it (the first assertion).
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import JointState

from conftest import run_rehab_robot
from rehab_robot import resources
from test_session_integration import read_bag

REPORT_SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "docs" / "report.schema.json").read_text())

pytestmark = pytest.mark.integration

PATIENT_OPTIONS = '{virtual_patient: {effort: 0.5, impairment: 0.6, peak_speed: 0.8, seed: 1}}'

ACTIVE_ASSIST = """\
protocol:
  name: short_active_assist
  type: active_assist
  joint: elbow_flexion
  start_angle: 0.6
  end_angle: 1.1
  repetitions: 2
  movement_duration: 1.2
  movement_timeout: 5.0
  target_tolerance: 0.08
  assist_max_torque: 8.0
"""

ISOMETRIC = """\
protocol:
  name: short_isometric
  type: isometric
  joint: elbow_flexion
  hold_angle: 1.0
  target_torque: 3.0
  hold_time: 0.8
  repetitions: 1
  rest_duration: 1.0
  contraction_timeout: 5.0
"""


def run_exercise(tmp_path: Path, domain_id: int, protocol_text: str, timeout: float = 90.0):
    """Run `rehab-robot run` on ``protocol_text`` with the virtual patient; return (status, output, folder)."""
    protocol = tmp_path / "protocol.yaml"
    protocol.write_text(protocol_text)
    status, output = run_rehab_robot(
        ["run", f"patient:={resources.example_patient()}", f"protocol:={protocol}",
         f"output_dir:={tmp_path / 'sessions'}", "session_id:=it", f"hardware_options:={PATIENT_OPTIONS}"],
        domain_id, timeout)
    return status, output, tmp_path / "sessions" / "it"


def test_active_assist_session_with_the_virtual_patient(tmp_path, domain_id):
    """The virtual patient reaches for the targets it is shown; every repetition is counted with its
    metrics; the targets are in the bag; the session is added to the patient's history."""
    status, output, session = run_exercise(tmp_path, domain_id, ACTIVE_ASSIST)
    report = json.loads((session / "report.json").read_text())
    assert report["ended"] == "completed", f"{report['end_reason']}\n{output[-4000:]}"
    assert status == 0 and "Traceback" not in output
    jsonschema.validate(report, REPORT_SCHEMA)
    assert report["exercise"]["controller_mode"] == "active_assist"
    assert len(report["repetitions"]) == 2
    reached = [m["reached"] for rep in report["repetitions"] for m in rep["movements"]]
    assert len(reached) == 4 and sum(reached) >= 3, report["repetitions"]
    for rep in report["repetitions"]:
        metrics = rep["metrics"]
        assert metrics["rom"]["elbow_flexion"]["range"] > 0.3
        assert 0.1 < metrics["peak_speed"] < 2.0
        assert metrics["sparc"] is not None and metrics["sparc"] < 0
        assert metrics["peak_interaction_force"] is not None
        assert metrics["assistance_gain"] == 1.0
    assert report["session_metrics"]["repetitions_reached"] >= 1
    assert report["history"]["updated"], report["history"]

    messages = read_bag(session / "bag")
    targets = [deserialize_message(raw, JointState) for _, raw in messages["/exercise/target"]]
    elbow = {round(t.position[3], 3) for t in targets}
    assert {0.6, 1.1} <= elbow, elbow
    history = json.loads((tmp_path / "sessions" / "history" / "P-0001.json").read_text())
    assert history["sessions"][-1]["session_id"] == "it"
    assert history["sessions"][-1]["exercise_type"] == "active_assist"


def test_isometric_session_records_the_patients_torque(tmp_path, domain_id):
    """The arm is held at hold_angle; the virtual patient pushes toward the target shown; the report
    gives the peak and sustained torque of the contraction."""
    status, output, session = run_exercise(tmp_path, domain_id, ISOMETRIC)
    report = json.loads((session / "report.json").read_text())
    assert report["ended"] == "completed", f"{report['end_reason']}\n{output[-4000:]}"
    jsonschema.validate(report, REPORT_SCHEMA)
    metrics = report["repetitions"][0]["metrics"]
    assert metrics["isometric_peak_torque"] is not None and metrics["isometric_peak_torque"] > 2.0
    assert metrics["sustained_torque"] is not None and metrics["sustained_torque"] > 0.0
    assert report["rom_reached"]["elbow_flexion"]["range"] < 0.1, "the arm is held still"
    assert np.isfinite(metrics["isometric_peak_torque"])
