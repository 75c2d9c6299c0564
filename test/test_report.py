"""Unit tests of session metrics and the JSON report (rehab_robot.session.report)."""

import datetime
import json

import numpy as np
import pytest

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
