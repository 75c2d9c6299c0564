"""Metrics of one movement, one repetition and one session, from the samples a session logs.

The session manager logs, at its tick rate, the measured joint state, the patient's active
cuff force and the joint torques of robot and patient (:class:`SampleLog`). At the end of
each movement and repetition the functions here turn a time window of that log into the
numbers of the report (docs/metrics.md, "Per repetition"), with the pure functions of
:mod:`rehab_robot.metrics`. A metric that cannot be computed from the window (too few
samples, no movement) is ``None`` in the report, never a made-up number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from rehab_robot import metrics

#: Rate [Hz] of the uniform grid the smoothness metrics are computed on.
SMOOTHNESS_RATE = 50.0


@dataclass
class SampleLog:
    """Samples of one session, appended at the session's tick rate.

    Each :meth:`add` takes the clock time [s], joint positions [rad] and velocities
    [rad/s] (all joints), the patient's active cuff force magnitude [N] (None: unknown),
    the robot's and the patient's joint torques [N·m] (None: unknown) and the cuff
    position [m] in ``base_link`` (None: not computed).
    """

    t: list = field(default_factory=list)
    position: list = field(default_factory=list)
    velocity: list = field(default_factory=list)
    force: list = field(default_factory=list)
    robot_torque: list = field(default_factory=list)
    patient_torque: list = field(default_factory=list)
    cuff: list = field(default_factory=list)

    def add(self, t: float, position, velocity, force: Optional[float] = None, robot_torque=None,
            patient_torque=None, cuff=None) -> None:
        """Append one sample (non-finite positions or velocities are skipped: the supervisor stops on them)."""
        q, v = np.asarray(position, dtype=float), np.asarray(velocity, dtype=float)
        if not (np.all(np.isfinite(q)) and np.all(np.isfinite(v))):
            return
        if self.t and t <= self.t[-1]:
            return
        nan = np.full(q.shape, np.nan)
        self.t.append(float(t))
        self.position.append(q)
        self.velocity.append(v)
        self.force.append(np.nan if force is None else float(force))
        self.robot_torque.append(nan if robot_torque is None else np.asarray(robot_torque, dtype=float))
        self.patient_torque.append(nan if patient_torque is None else np.asarray(patient_torque, dtype=float))
        self.cuff.append(np.full(3, np.nan) if cuff is None else np.asarray(cuff, dtype=float))

    def window(self, start: float, end: float) -> "Window":
        """Return the samples with ``start <= t <= end`` [s]."""
        t = np.asarray(self.t)
        if not len(t):
            return Window(np.zeros(0), *(np.zeros((0, 0)),) * 2, np.zeros(0), *(np.zeros((0, 0)),) * 2,
                          np.zeros((0, 3)))
        i, j = np.searchsorted(t, start, "left"), np.searchsorted(t, end, "right")
        return Window(t[i:j], np.array(self.position[i:j]), np.array(self.velocity[i:j]),
                      np.asarray(self.force[i:j]), np.array(self.robot_torque[i:j]),
                      np.array(self.patient_torque[i:j]), np.array(self.cuff[i:j]).reshape(-1, 3))

    def trim(self, before: float) -> None:
        """Forget the samples older than ``before`` [s] (kept memory bounded in long sessions)."""
        k = int(np.searchsorted(np.asarray(self.t), before, "left"))
        for series in (self.t, self.position, self.velocity, self.force, self.robot_torque,
                       self.patient_torque, self.cuff):
            del series[:k]


@dataclass
class Window:
    """A time window of a :class:`SampleLog` as arrays (rows: samples)."""

    t: np.ndarray
    position: np.ndarray
    velocity: np.ndarray
    force: np.ndarray
    robot_torque: np.ndarray
    patient_torque: np.ndarray
    cuff: np.ndarray


def _safe(function, *args, **kwargs) -> Optional[float]:
    """The metric's value, or None when the window cannot give it (ValueError: too short, no movement)."""
    try:
        value = function(*args, **kwargs)
    except ValueError:
        return None
    return None if value is None or not math.isfinite(value) else round(float(value), 5)


def movement_metrics(window: Window, joints: Sequence[int]) -> dict[str, Any]:
    """Kinematic metrics of one movement of ``joints`` (indices into the joint order).

    Returns ``peak_speed`` [rad/s] (joint-space speed norm), ``movement_time`` [s]
    (5 % of peak speed), ``sparc`` and ``ldlj`` [dimensionless] on a uniform
    :data:`SMOOTHNESS_RATE` grid; each None when the window holds no movement.
    """
    if len(window.t) < 2:
        return {"peak_speed": None, "movement_time": None, "sparc": None, "ldlj": None}
    v = window.velocity[:, list(joints)]
    speed = np.linalg.norm(v, axis=1)
    try:
        grid, uniform = metrics.resample(window.t, v, SMOOTHNESS_RATE)
    except ValueError:
        grid, uniform = None, None
    smooth = grid is not None and len(grid) >= 5
    return {
        "peak_speed": _safe(metrics.peak_speed, v),
        "movement_time": _safe(metrics.movement_time, window.t, speed),
        "sparc": _safe(metrics.sparc, grid, np.linalg.norm(uniform, axis=1)) if smooth else None,
        "ldlj": _safe(metrics.ldlj, grid, uniform) if smooth else None,
    }


def interaction_metrics(window: Window) -> dict[str, Any]:
    """Peak and mean active cuff force [N], positive work [J] of robot and patient and the
    patient's share of it (None where the window has no such samples)."""
    out: dict[str, Any] = {"peak_interaction_force": None, "mean_interaction_force": None,
                           "robot_work": None, "patient_work": None, "patient_work_share": None}
    known = np.isfinite(window.force)
    if known.any():
        out["peak_interaction_force"] = _safe(metrics.peak_interaction_force, window.force[known])
        if known.sum() >= 2:
            out["mean_interaction_force"] = _safe(metrics.mean_interaction_force, window.t[known],
                                                  window.force[known])
    if len(window.t) >= 2 and window.robot_torque.size and window.patient_torque.size:
        rows = np.all(np.isfinite(window.robot_torque), axis=1) & np.all(np.isfinite(window.patient_torque), axis=1)
        if rows.sum() >= 2:
            try:
                share = metrics.work_share(window.t[rows], window.velocity[rows], window.robot_torque[rows],
                                           window.patient_torque[rows])
            except ValueError:
                share = None
            if share is not None:
                out["robot_work"] = round(share.robot_positive, 5)
                out["patient_work"] = round(share.patient_positive, 5)
                out["patient_work_share"] = (None if math.isnan(share.patient_share)
                                             else round(share.patient_share, 5))
    return out


def rom_metrics(window: Window, joint_names: Sequence[str], joints: Sequence[int]) -> dict[str, Any]:
    """Per exercised joint: ``min``, ``max`` and ``range`` of the position reached [rad] ({} if no sample)."""
    if not len(window.t):
        return {}
    rom = metrics.range_of_motion(window.position[:, list(joints)])
    return {joint_names[j]: {"min": round(float(lo), 5), "max": round(float(hi), 5), "range": round(float(r), 5)}
            for j, lo, hi, r in zip(joints, rom.minimum, rom.maximum, rom.range)}


def path_metrics(window: Window, reference: Optional[np.ndarray]) -> dict[str, Any]:
    """Path-length ratio [dimensionless] and max deviation [m] of the cuff path from the ``reference``
    polyline [m] (None without a reference or cuff samples)."""
    out: dict[str, Any] = {"path_length_ratio": None, "max_path_deviation": None}
    if reference is None or not len(window.cuff):
        return out
    cuff = window.cuff[np.all(np.isfinite(window.cuff), axis=1)]
    if len(cuff) < 2:
        return out
    out["path_length_ratio"] = _safe(metrics.path_length_ratio, cuff, reference)
    out["max_path_deviation"] = _safe(metrics.max_path_deviation, cuff, reference)
    return out


def isometric_metrics(t: np.ndarray, torque: np.ndarray, hold_time: float, direction: int) -> dict[str, Any]:
    """Peak and sustained (over ``hold_time`` [s]) torque [N·m] of one contraction in ``direction`` (+1/-1)."""
    out: dict[str, Any] = {"isometric_peak_torque": None, "sustained_torque": None}
    if len(t) < 1:
        return out
    out["isometric_peak_torque"] = _safe(metrics.isometric_peak_torque, torque, direction)
    if len(t) >= 2:
        out["sustained_torque"] = _safe(metrics.sustained_torque, t, torque, hold_time, direction)
    return out


#: Repetition metrics summarised per session: name -> how.
SESSION_SUMMARY = {
    "peak_speed": "mean", "movement_time": "mean", "sparc": "mean", "ldlj": "mean",
    "path_length_ratio": "mean", "max_path_deviation": "max", "peak_interaction_force": "max",
    "mean_interaction_force": "mean", "robot_work": "sum", "patient_work": "sum",
    "isometric_peak_torque": "max", "sustained_torque": "max", "assistance_gain": "last",
    "tracking_error": "mean",
}


def session_summary(repetitions: Sequence[dict]) -> dict[str, Any]:
    """Summarise the per-repetition metrics over a session (:data:`SESSION_SUMMARY`; None-valued ones skipped).

    Also ``repetitions_reached`` (repetitions whose every movement reached its target) and
    ``patient_work_share`` from the summed work.
    """
    out: dict[str, Any] = {}
    for name, how in SESSION_SUMMARY.items():
        values = [r["metrics"].get(name) for r in repetitions if r.get("metrics", {}).get(name) is not None]
        if not values:
            out[name] = None
        elif how == "mean":
            out[name] = round(float(np.mean(values)), 5)
        elif how == "max":
            out[name] = round(float(np.max(values)), 5)
        elif how == "sum":
            out[name] = round(float(np.sum(values)), 5)
        else:
            out[name] = values[-1]
    robot, patient = out.get("robot_work"), out.get("patient_work")
    out["patient_work_share"] = (round(patient / (robot + patient), 5)
                                 if robot is not None and patient is not None and robot + patient > 0 else None)
    out["repetitions_reached"] = sum(1 for r in repetitions if r.get("reached"))
    return out


class PassiveRepetitions:
    """Per-repetition metrics of a passive_rom session, from its runner's events and a sample log.

    A passive repetition runs from its "repetition N started" event (the first: the end of the
    approach) to "repetition N completed"; its metrics are computed over that whole window
    (the move out, the hold, the move back): smoothness and movement time then describe the
    two moves together. Args: ``joint_names`` (joint order), ``joint`` (the exercised joint).
    """

    def __init__(self, joint_names: Sequence[str], joint: str) -> None:
        self.joint_names = list(joint_names)
        self.joints = [self.joint_names.index(joint)]
        self.repetitions: list[dict] = []
        self._seen = 0
        self._open: Optional[tuple[int, float]] = None
        self._interruptions: list = []

    def update(self, started_at: Optional[float], events: Sequence[Mapping[str, Any]], log: SampleLog) -> None:
        """Read the runner's new events (``time`` [s] since ``started_at``, clock time [s])."""
        if started_at is None:
            return
        for event in events[self._seen:]:
            text, at = str(event.get("event", "")), started_at + float(event.get("time", 0.0))
            words = text.split()
            if len(words) == 3 and words[0] == "repetition" and words[1].isdigit():
                if words[2] == "started":
                    self._open = (int(words[1]), at)
                elif words[2] == "completed" and self._open is not None:
                    self._close(self._open, at, started_at, log)
                    self._open = None
            elif text.startswith("motion interrupted") or text.startswith("paused"):
                if self._open is not None:
                    self._interruptions.append({"time": event.get("time"), "event": text})
        self._seen = len(events)

    def _close(self, opened: tuple[int, float], end: float, started_at: float, log: SampleLog) -> None:
        number, start = opened
        window = log.window(start, end)
        metrics: dict[str, Any] = {"rom": rom_metrics(window, self.joint_names, self.joints)}
        metrics.update(movement_metrics(window, self.joints))
        metrics.update(path_metrics(window, None))
        metrics.update(interaction_metrics(window))
        metrics.update({"assistance_gain": None, "tracking_error": None,
                        "isometric_peak_torque": None, "sustained_torque": None})
        self.repetitions.append({
            "repetition": number, "start": round(start - started_at, 3), "duration": round(end - start, 3),
            "reached": True, "movements": [], "interruptions": list(self._interruptions), "metrics": metrics,
        })
        self._interruptions = []

    def report(self) -> dict:
        """The report's ``repetitions`` and ``session_metrics``."""
        summary = session_summary(self.repetitions)
        summary["repetitions_reached"] = len(self.repetitions)
        return {"repetitions": self.repetitions, "session_metrics": summary}
