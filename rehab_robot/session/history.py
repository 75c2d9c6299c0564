"""Per-patient history: one JSON file per patient holding every session's key results.

``<history_dir>/<patient_id>.json`` (format in docs/file-formats.md, "Patient history")
lists the sessions of one patient in the order they ended: the exercise, how the session
ended, the repetitions, the key metrics of the session summary and the adapted assistance
gain. The session manager appends to it when a session ends; an assist_as_needed session
starts from the last gain of the same protocol; ``rehab-robot history PATIENT_ID`` prints
the progression.

Writing is atomic (a temporary file, fsync, rename), so a crash never leaves half a file.
A file that cannot be read as a history is never overwritten: :class:`HistoryError` names
it and what is wrong, and the session report (report.json) still holds the session.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from rehab_robot.errors import ConfigError

#: ``format`` field of a history file.
FORMAT = "rehab_robot patient history"
#: Version of the file layout.
VERSION = 1
#: Session-summary metrics kept in the history (report ``session_metrics``).
KEY_METRICS = (
    "rom_range", "peak_speed", "movement_time", "sparc", "ldlj", "path_length_ratio", "max_path_deviation",
    "peak_interaction_force", "mean_interaction_force", "patient_work_share", "isometric_peak_torque",
    "sustained_torque", "tracking_error",
)
#: Largest history file read [bytes]: thousands of sessions.
MAX_FILE_SIZE = 16 * 1024 * 1024
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class HistoryError(ConfigError):
    """A history file that cannot be read or written; the message names it and the problem."""


def history_path(history_dir: Path | str, patient_id: str) -> Path:
    """Return ``<history_dir>/<patient_id>.json``.

    Raises:
        HistoryError: for a patient id that is not a pseudonymous code (it names a file).
    """
    if not _ID.fullmatch(patient_id):
        raise HistoryError(f"patient id {patient_id!r} is not allowed; use 1 to 64 letters, digits, '-', '_' "
                           "or '.', starting with a letter or digit")
    return Path(history_dir) / f"{patient_id}.json"


def read_history(path: Path | str) -> dict:
    """Read and check one patient's history file.

    Raises:
        FileNotFoundError: when there is none.
        HistoryError: naming the file and what is wrong with it.
    """
    path = Path(path)
    with open(path, "rb") as stream:
        raw = stream.read(MAX_FILE_SIZE + 1)
    if len(raw) > MAX_FILE_SIZE:
        raise HistoryError(f"history file {path}: larger than {MAX_FILE_SIZE // 2**20} MiB; not a history file")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise HistoryError(f"history file {path}: not valid JSON ({exc}); it is left as it is: "
                           "repair or move it, the session reports hold every session") from None
    problem = _problem(data)
    if problem:
        raise HistoryError(f"history file {path}: {problem}; it is left as it is: repair or move it")
    return data


def _problem(data: Any) -> str:
    if not isinstance(data, dict):
        return "the top level must be a JSON object"
    if data.get("format") != FORMAT:
        return f"field 'format' must be {FORMAT!r}, got {data.get('format')!r}"
    if data.get("version") != VERSION:
        return f"field 'version' is {data.get('version')!r}; this version of rehab_robot reads version {VERSION}"
    if not isinstance(data.get("patient_id"), str):
        return "field 'patient_id' must be text"
    sessions = data.get("sessions")
    if not isinstance(sessions, list) or not all(isinstance(s, dict) for s in sessions):
        return "field 'sessions' must be a list of objects"
    return ""


def history_entry(report: Mapping[str, Any]) -> dict:
    """Return the history record of a session from its report (report.json fields)."""
    summary = report.get("session_metrics") or {}
    exercise = report.get("exercise") or {}
    rom = report.get("rom_reached") or {}
    ranges = [v.get("range") for v in rom.values() if isinstance(v, Mapping) and v.get("range") is not None]
    metrics = {name: summary.get(name) for name in KEY_METRICS if name != "rom_range"}
    metrics["rom_range"] = max(ranges) if ranges else None
    return {
        "session_id": report.get("session_id"),
        "started_at": report.get("started_at"),
        "protocol": report.get("protocol"),
        "exercise_type": exercise.get("type", "passive_rom"),
        "ended": report.get("ended"),
        "repetitions_completed": report.get("repetitions_completed"),
        "repetitions_planned": report.get("repetitions_planned"),
        "repetitions_reached": summary.get("repetitions_reached"),
        "duration": report.get("duration"),
        "metrics": metrics,
        "final_assistance_gain": exercise.get("final_assistance_gain"),
    }


def append_session(history_dir: Path | str, patient_id: str, entry: Mapping[str, Any]) -> Path:
    """Append ``entry`` (see :func:`history_entry`) to the patient's history, creating it if needed.

    Raises:
        HistoryError: when the existing file cannot be read (it is left untouched) or the
            folder cannot be written.
    """
    path = history_path(history_dir, patient_id)
    try:
        data = read_history(path)
    except FileNotFoundError:
        data = {"format": FORMAT, "version": VERSION, "patient_id": patient_id, "sessions": []}
    except OSError as exc:
        raise HistoryError(f"history file {path}: cannot be read: {exc.strerror or exc}") from None
    if data["patient_id"] != patient_id:
        raise HistoryError(f"history file {path}: holds patient {data['patient_id']!r}, not {patient_id!r}; "
                           "it is left as it is")
    data["sessions"].append(dict(entry))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".json.tmp")
        with open(temporary, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=1, allow_nan=False)
            stream.write("\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except (OSError, ValueError) as exc:
        raise HistoryError(f"history file {path}: cannot be written: {getattr(exc, 'strerror', None) or exc}") \
            from None
    return path


def last_gain(history_dir: Path | str, patient_id: str, protocol_name: str) -> Optional[float]:
    """The final assistance gain of the patient's last session of ``protocol_name`` that has one, or None.

    Raises:
        HistoryError: when the history file exists but cannot be read.
    """
    try:
        data = read_history(history_path(history_dir, patient_id))
    except FileNotFoundError:
        return None
    for session in reversed(data["sessions"]):
        gain = session.get("final_assistance_gain")
        if session.get("protocol") == protocol_name and isinstance(gain, (int, float)) \
                and not isinstance(gain, bool) and math.isfinite(gain) and 0.0 <= gain <= 1.0:
            return float(gain)
    return None


def _cell(value: Any, digits: int = 2, scale: float = 1.0) -> str:
    if isinstance(value, bool) or value is None:
        return "-"
    if isinstance(value, (int, float)):
        return f"{value * scale:.{digits}f}"
    return str(value)


#: Columns of the progression table: header, unit, how to show a session.
_COLUMNS: Sequence[tuple[str, Any]] = (
    ("date", lambda s: (s.get("started_at") or "-").replace("T", " ")[:16]),
    ("session", lambda s: str(s.get("session_id") or "-")),
    ("protocol", lambda s: str(s.get("protocol") or "-")),
    ("type", lambda s: str(s.get("exercise_type") or "-")),
    ("ended", lambda s: str(s.get("ended") or "-")),
    ("reps", lambda s: f"{_cell(s.get('repetitions_reached'), 0)}/{_cell(s.get('repetitions_completed'), 0)}"
                       f"/{_cell(s.get('repetitions_planned'), 0)}"),
    ("ROM deg", lambda s: _cell(s.get("metrics", {}).get("rom_range"), 1, 180.0 / math.pi)),
    ("speed rad/s", lambda s: _cell(s.get("metrics", {}).get("peak_speed"))),
    ("SPARC", lambda s: _cell(s.get("metrics", {}).get("sparc"))),
    ("force N", lambda s: _cell(s.get("metrics", {}).get("peak_interaction_force"), 1)),
    ("patient work", lambda s: _cell(s.get("metrics", {}).get("patient_work_share"))),
    ("torque N·m", lambda s: _cell(s.get("metrics", {}).get("sustained_torque"))),
    ("gain", lambda s: _cell(s.get("final_assistance_gain"))),
)


def format_history(data: Mapping[str, Any]) -> str:
    """Return the progression of a patient as a readable table, oldest session first.

    Columns: date, session, protocol, type, ended, repetitions reached/completed/planned,
    largest ROM range [deg], mean peak speed [rad/s], mean SPARC, peak cuff force [N],
    patient's share of the positive work, best sustained isometric torque [N·m], final
    assistance gain; ``-`` where a session has no such value.
    """
    sessions = data.get("sessions", [])
    rows = [[header for header, _ in _COLUMNS]]
    for session in sessions:
        rows.append([show(session) for _, show in _COLUMNS])
    widths = [max(len(row[k]) for row in rows) for k in range(len(_COLUMNS))]
    lines = [f"patient {data.get('patient_id')}: {len(sessions)} session(s)"]
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)
