"""The per-patient history file (rehab_robot.session.history) and `rehab-robot history`."""

from __future__ import annotations

import json

import pytest

from rehab_robot.launcher import main
from rehab_robot.session.history import (
    FORMAT, HistoryError, append_session, format_history, history_entry, history_path, last_gain, read_history,
)


def report(session_id: str, gain=None, protocol="assist_as_needed_elbow", kind="assist_as_needed", sparc=-1.8):
    """A session report with the fields the history keeps."""
    return {
        "session_id": session_id, "patient_id": "P-7", "protocol": protocol, "ended": "completed",
        "end_reason": "all 3 repetitions done", "repetitions_completed": 3, "repetitions_planned": 3,
        "rom_reached": {"elbow_flexion": {"min": 0.6, "max": 1.2, "range": 0.6}},
        "duration": 20.0, "started_at": "2026-11-20T10:00:00",
        "exercise": {"type": kind, "final_assistance_gain": gain},
        "session_metrics": {"peak_speed": 0.7, "sparc": sparc, "peak_interaction_force": 12.0,
                            "patient_work_share": 0.6, "repetitions_reached": 2},
    }


def test_sessions_append_in_order_and_the_last_gain_of_the_protocol_is_found(tmp_path):
    append_session(tmp_path, "P-7", history_entry(report("s1", gain=0.8)))
    append_session(tmp_path, "P-7", history_entry(report("s2", gain=0.55)))
    append_session(tmp_path, "P-7", history_entry(report("s3", protocol="active_elbow", kind="active")))
    data = read_history(history_path(tmp_path, "P-7"))
    assert data["format"] == FORMAT and data["patient_id"] == "P-7"
    assert [s["session_id"] for s in data["sessions"]] == ["s1", "s2", "s3"]
    assert data["sessions"][0]["metrics"]["rom_range"] == 0.6
    assert data["sessions"][0]["repetitions_reached"] == 2
    assert last_gain(tmp_path, "P-7", "assist_as_needed_elbow") == 0.55
    assert last_gain(tmp_path, "P-7", "active_elbow") is None
    assert last_gain(tmp_path, "P-8", "assist_as_needed_elbow") is None
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("content, problem", [
    (b"{not json", "not valid JSON"),
    (b"[]", "top level must be a JSON object"),
    (json.dumps({"format": "something else", "version": 1}).encode(), "field 'format'"),
    (json.dumps({"format": FORMAT, "version": 9, "patient_id": "P-7", "sessions": []}).encode(), "version 1"),
    (json.dumps({"format": FORMAT, "version": 1, "patient_id": "P-7", "sessions": {}}).encode(), "'sessions'"),
])
def test_a_corrupt_history_is_a_clear_error_and_is_never_overwritten(tmp_path, content, problem):
    path = history_path(tmp_path, "P-7")
    path.write_bytes(content)
    with pytest.raises(HistoryError) as info:
        append_session(tmp_path, "P-7", history_entry(report("s9", gain=0.5)))
    message = str(info.value)
    assert str(path) in message and problem in message and "\n" not in message
    assert path.read_bytes() == content  # nothing lost
    with pytest.raises(HistoryError):
        last_gain(tmp_path, "P-7", "assist_as_needed_elbow")


def test_a_patient_id_that_is_not_a_code_is_refused(tmp_path):
    with pytest.raises(HistoryError, match="not allowed"):
        history_path(tmp_path, "../etc/passwd")


def test_history_command_prints_the_progression(tmp_path, capsys):
    for k, gain in enumerate((0.9, 0.7)):
        append_session(tmp_path / "history", "P-7", history_entry(report(f"s{k}", gain=gain, sparc=-2.0 + k)))
    assert main(["history", "P-7", "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "patient P-7: 2 session(s)"
    header = out[1].split()
    assert header[:6] == ["date", "session", "protocol", "type", "ended", "reps"]
    rows = out[3:]
    assert len(rows) == 2
    assert rows[0].split()[:7] == ["2026-11-20", "10:00", "s0", "assist_as_needed_elbow", "assist_as_needed",
                                   "completed", "2/3/3"]
    assert rows[0].rstrip().endswith("0.90") and rows[1].rstrip().endswith("0.70")
    assert "34.4" in rows[0]  # 0.6 rad of ROM in degrees
    assert "-2.00" in rows[0] and "-1.00" in rows[1]


def test_history_of_an_unknown_patient_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["history", "P-404", "--history-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no history for patient 'P-404'" in err


def test_format_history_shows_missing_values_as_dashes():
    text = format_history({"patient_id": "P-1", "sessions": [{"session_id": "x", "metrics": {}}]})
    assert text.splitlines()[-1].split()[1] == "x" and " - " in text.splitlines()[-1]


def test_demo_exercise_runs_the_shipped_protocol_with_the_virtual_patient(monkeypatch, capsys):
    """`demo --exercise TYPE` plans the shipped example of TYPE with the virtual patient, and prints the
    per-repetition metrics of the report."""
    import rehab_robot.launcher as launcher
    from rehab_robot.session.exercises import EXAMPLE_PROTOCOLS

    planned = {}

    def plan(texts):
        planned.update(texts)
        raise SystemExit(0)
    monkeypatch.setattr(launcher, "plan_session", plan)
    with pytest.raises(SystemExit):
        launcher.main(["demo", "--exercise", "isometric"])
    assert planned["protocol"].endswith(EXAMPLE_PROTOCOLS["isometric"])
    assert "virtual_patient" in json.loads(planned["hardware_options"])
    planned.clear()
    with pytest.raises(SystemExit):
        launcher.main(["demo", "--exercise", "passive_rom"])
    assert "hardware_options" not in planned  # the passive demo as before
    assert launcher.main(["demo", "--exercise", "active", "protocol:=other.yaml"]) == 2
    assert "give either --exercise or protocol:=" in capsys.readouterr().err


def test_exercise_metrics_are_printed_readably():
    from rehab_robot.session.exercises import format_exercise_metrics

    text = format_exercise_metrics({"repetitions": [
        {"repetition": 1, "reached": True, "metrics": {"peak_speed": 0.71234, "sparc": -1.6, "ldlj": None}},
        {"repetition": 2, "reached": False, "metrics": {"peak_speed": 0.5}}],
        "session_metrics": {"peak_speed": 0.6, "repetitions_reached": 1, "sparc": None}})
    lines = text.splitlines()
    assert lines[1] == "    1: reached; peak_speed 0.712, sparc -1.6"
    assert lines[2] == "    2: NOT reached; peak_speed 0.5"
    assert lines[3] == "  session: peak_speed 0.6, repetitions_reached 1"
    assert format_exercise_metrics({"ended": "completed"}) == ""
