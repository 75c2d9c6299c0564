"""Unit tests of session metrics and the JSON report (rehab_robot.session.report)."""

import datetime
import hashlib
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from rehab_robot.session.provenance import hardware_record, keep_input, sha256_of, software_record
from rehab_robot.session.report import SessionMetrics, SessionOutcome, build_report, write_report


def test_metrics_track_range_and_peak_force_ignoring_nan():
    """ROM is the min/max of measured positions; NaN readings are ignored, not propagated."""
    metrics = SessionMetrics(("a", "b"))
    metrics.add_state(np.array([0.1, 1.0]))
    metrics.add_state(np.array([0.5, 0.2]))
    metrics.add_state(np.array([np.nan, 5.0]))
    metrics.add_force(12.5)
    metrics.add_force(float("nan"))
    metrics.add_force(3.0)
    rom = metrics.rom_reached()
    assert rom["a"] == {"min": 0.1, "max": 0.5, "range": 0.4}
    assert rom["b"]["range"] == pytest.approx(0.8)
    assert metrics.peak_force == 12.5


def test_report_is_written_atomically_as_json(tmp_path):
    """The report holds every documented field and no temporary file is left behind."""
    metrics = SessionMetrics(("a",))
    metrics.add_state(np.array([0.2]))
    now = datetime.datetime(2026, 1, 2, 3, 4, 5)
    outcome = SessionOutcome("completed", "all 3 repetitions done", 3, 3, 12.3456, now, now, [])
    path = write_report(tmp_path / "s" / "report.json", build_report("s", "P-1", "proto", outcome, metrics))
    report = json.loads(path.read_text())
    for field in ("session_id", "patient_id", "protocol", "ended", "end_reason", "repetitions_completed",
                  "repetitions_planned", "rom_reached", "peak_interaction_force", "duration",
                  "started_at", "ended_at"):
        assert field in report
    assert report["duration"] == 12.346 and report["ended"] == "completed"
    assert list(tmp_path.joinpath("s").iterdir()) == [path]


REPORT_SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "docs" / "report.schema.json").read_text())


def test_report_with_provenance_matches_the_documented_schema(tmp_path):
    """build_report's output, provenance included, validates against docs/report.schema.json."""
    patient = tmp_path / "p.yaml"
    patient.write_text("patient: {id: P-1}\n")
    protocol = tmp_path / "r.yaml"
    protocol.write_text("protocol: {name: x}\n")
    session = tmp_path / "s"
    provenance = {
        "inputs": {"patient": keep_input(session, "patient", patient),
                   "protocol": keep_input(session, "protocol", protocol)},
        "software": software_record(),
        "hardware": hardware_record("sim", {"loop_rate": 500}),
    }
    metrics = SessionMetrics(("a",))
    metrics.add_state(np.array([0.2]))
    now = datetime.datetime(2026, 1, 2, 3, 4, 5)
    outcome = SessionOutcome("stopped", "stopped by the clinician", 1, 3, 4.0, now, now,
                             [{"time": 0.0, "event": "session started"}])
    report = json.loads(json.dumps(build_report("s", "P-1", "x", outcome, metrics, provenance)))
    jsonschema.validate(report, REPORT_SCHEMA)
    assert report["inputs"]["patient"]["sha256"] == hashlib.sha256(patient.read_bytes()).hexdigest()
    assert (session / report["inputs"]["protocol"]["copy"]).read_bytes() == protocol.read_bytes()
    broken = dict(report, events=[{"event": "no time"}])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, REPORT_SCHEMA)


def test_input_copy_keeps_what_was_read_even_if_the_file_changes_later(tmp_path):
    """The copy and its hash are the bytes at session start; a later edit does not touch them."""
    source = tmp_path / "protocol.yaml"
    source.write_text("before\n")
    record = keep_input(tmp_path / "s", "protocol", source)
    source.write_text("after\n")
    assert (tmp_path / "s" / record["copy"]).read_text() == "before\n"
    assert record["sha256"] == sha256_of(tmp_path / "s" / record["copy"]) != sha256_of(source)
