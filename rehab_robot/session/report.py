"""Session metrics and the JSON report written at the end of every session."""

from __future__ import annotations

import datetime
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np


@dataclass
class SessionMetrics:
    """Accumulates what the report says about the patient's motion.

    Args:
        joint_names: Joint order of the positions given to :meth:`add_state`.
    """

    joint_names: Sequence[str]
    minimum: Optional[np.ndarray] = None
    maximum: Optional[np.ndarray] = None
    peak_force: float = 0.0

    def add_state(self, position: np.ndarray) -> None:
        """Add a measured joint position [rad] to the range of motion reached."""
        if not np.all(np.isfinite(position)):
            return
        if self.minimum is None:
            self.minimum = np.array(position, dtype=float)
            self.maximum = np.array(position, dtype=float)
        else:
            np.minimum(self.minimum, position, out=self.minimum)
            np.maximum(self.maximum, position, out=self.maximum)

    def add_force(self, force_norm: float) -> None:
        """Add a cuff force magnitude [N]."""
        if math.isfinite(force_norm):
            self.peak_force = max(self.peak_force, float(force_norm))

    def rom_reached(self) -> dict[str, dict[str, float]]:
        """Return per joint the ``min``, ``max`` and ``range`` of position reached [rad]."""
        if self.minimum is None:
            return {}
        return {
            name: {
                "min": round(float(lo), 5),
                "max": round(float(hi), 5),
                "range": round(float(hi - lo), 5),
            }
            for name, lo, hi in zip(self.joint_names, self.minimum, self.maximum)
        }


@dataclass
class SessionOutcome:
    """How a session ended and what it did.

    Attributes:
        ended: ``completed``, ``stopped`` or ``aborted``.
        end_reason: One sentence.
        repetitions_completed: Repetitions finished.
        repetitions_planned: Repetitions in the protocol.
        duration: Exercise time from start to end [s].
        started_at: Wall-clock start.
        ended_at: Wall-clock end.
        events: Notable events, ``{"time": s since start, "event": text}``.
    """

    ended: str
    end_reason: str
    repetitions_completed: int
    repetitions_planned: int
    duration: float
    started_at: Optional[datetime.datetime]
    ended_at: datetime.datetime
    events: list[dict] = field(default_factory=list)


def build_report(
    session_id: str,
    patient_id: str,
    protocol_name: str,
    outcome: SessionOutcome,
    metrics: SessionMetrics,
    provenance: Optional[Mapping[str, Any]] = None,
) -> dict:
    """Return the session report as a JSON-ready dict (fields in docs/architecture.md,
    schema in docs/report.schema.json).

    Args:
        provenance: ``inputs`` (copies and SHA-256 of the patient and protocol files),
            ``software`` and ``hardware`` records (see :mod:`rehab_robot.session.provenance`).
    """
    return {
        "session_id": session_id,
        "patient_id": patient_id,
        "protocol": protocol_name,
        "ended": outcome.ended,
        "end_reason": outcome.end_reason,
        "repetitions_completed": outcome.repetitions_completed,
        "repetitions_planned": outcome.repetitions_planned,
        "rom_reached": metrics.rom_reached(),
        "peak_interaction_force": round(metrics.peak_force, 3),
        "duration": round(outcome.duration, 3),
        "started_at": outcome.started_at.isoformat(timespec="seconds") if outcome.started_at else None,
        "ended_at": outcome.ended_at.isoformat(timespec="seconds"),
        "events": outcome.events,
        "units": {"rom_reached": "rad", "peak_interaction_force": "N", "duration": "s", "events.time": "s"},
        **dict(provenance or {}),
    }


def write_report(path: Path, report: dict) -> Path:
    """Write ``report`` as JSON to ``path`` atomically, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    with open(temporary, "w", encoding="utf-8") as stream:
        json.dump(report, stream, indent=2)
        stream.write("\n")
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(temporary, path)
    return path
