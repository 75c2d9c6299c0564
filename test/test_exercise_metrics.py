"""Per-movement, per-repetition and per-session metrics (rehab_robot.session.repetition_metrics)."""

from __future__ import annotations

import numpy as np
import pytest

from rehab_robot.session import repetition_metrics as rm


def minimum_jerk_log(distance=0.6, duration=1.5, rate=50.0, force=3.0):
    """A log of one elbow minimum-jerk movement, the patient pushing with ``force`` [N]."""
    log = rm.SampleLog()
    t = np.arange(0.0, duration + 1e-9, 1.0 / rate)
    s = t / duration
    q = distance * (10 * s**3 - 15 * s**4 + 6 * s**5)
    v = distance / duration * (30 * s**2 - 60 * s**3 + 30 * s**4)
    for ti, qi, vi in zip(t, q, v):
        log.add(ti, [0.0, 0.0, 0.0, 0.6 + qi], [0.0, 0.0, 0.0, vi], force,
                robot_torque=[0.0, 0.0, 0.0, 1.0], patient_torque=[0.0, 0.0, 0.0, 3.0],
                cuff=[0.3 * qi, 0.0, 0.0])
    return log


def test_movement_metrics_of_a_minimum_jerk_reach():
    """Peak speed 1.875 d/T, the LDLJ of a minimum-jerk reach (-ln 204.8 ≈ -5.32), SPARC near -1.6."""
    log = minimum_jerk_log()
    m = rm.movement_metrics(log.window(0.0, 2.0), [3])
    assert m["peak_speed"] == pytest.approx(1.875 * 0.6 / 1.5, rel=1e-3)
    assert m["ldlj"] == pytest.approx(-5.32, abs=0.15)
    assert -1.75 < m["sparc"] < -1.4
    assert 1.0 < m["movement_time"] < 1.5


def test_interaction_and_work_shares():
    m = rm.interaction_metrics(minimum_jerk_log(force=3.0).window(0.0, 2.0))
    assert m["peak_interaction_force"] == 3.0 and m["mean_interaction_force"] == pytest.approx(3.0)
    # Robot 1 N·m, patient 3 N·m along the same 0.6 rad: 0.6 J and 1.8 J.
    assert m["robot_work"] == pytest.approx(0.6, rel=1e-2)
    assert m["patient_work"] == pytest.approx(1.8, rel=1e-2)
    assert m["patient_work_share"] == pytest.approx(0.75, rel=1e-3)


def test_path_metrics_against_the_guided_path():
    window = minimum_jerk_log().window(0.0, 2.0)
    m = rm.path_metrics(window, np.array([[0.0, 0.0, 0.0], [0.18, 0.0, 0.0]]))
    assert m["path_length_ratio"] == pytest.approx(1.0, abs=1e-6)
    assert m["max_path_deviation"] == pytest.approx(0.0, abs=1e-9)
    offset = rm.path_metrics(window, np.array([[0.0, 0.01, 0.0], [0.18, 0.01, 0.0]]))
    assert offset["max_path_deviation"] == pytest.approx(0.01)
    assert rm.path_metrics(window, None) == {"path_length_ratio": None, "max_path_deviation": None}


def test_a_window_without_movement_gives_none_not_numbers():
    log = rm.SampleLog()
    for k in range(20):
        log.add(k * 0.02, [0.0] * 4, [0.0] * 4)
    m = rm.movement_metrics(log.window(0.0, 1.0), [3])
    assert m["peak_speed"] == 0.0
    assert m["movement_time"] is None and m["sparc"] is None and m["ldlj"] is None
    i = rm.interaction_metrics(log.window(0.0, 1.0))
    assert i["peak_interaction_force"] is None and i["patient_work_share"] is None


def test_non_finite_samples_are_skipped():
    log = rm.SampleLog()
    log.add(0.0, [np.nan, 0, 0, 0], [0] * 4)
    log.add(0.02, [0.0] * 4, [np.inf, 0, 0, 0])
    assert log.t == []


def test_isometric_metrics():
    t = np.arange(0.0, 3.0, 0.01)
    torque = -np.clip(4.0 * t, 0.0, 5.0)  # pushing toward the lower limit
    m = rm.isometric_metrics(t, torque, 1.0, -1)
    assert m["isometric_peak_torque"] == pytest.approx(5.0)
    assert m["sustained_torque"] == pytest.approx(5.0)


def test_session_summary():
    reps = [{"reached": True, "metrics": {"peak_speed": 0.6, "peak_interaction_force": 10.0, "robot_work": 1.0,
                                          "patient_work": 1.0, "assistance_gain": 0.9, "sparc": None}},
            {"reached": False, "metrics": {"peak_speed": 0.8, "peak_interaction_force": 14.0, "robot_work": 1.0,
                                           "patient_work": 3.0, "assistance_gain": 0.7, "sparc": -1.6}}]
    s = rm.session_summary(reps)
    assert s["peak_speed"] == pytest.approx(0.7) and s["peak_interaction_force"] == 14.0
    assert s["patient_work_share"] == pytest.approx(4.0 / 6.0, rel=1e-4)
    assert s["assistance_gain"] == 0.7 and s["sparc"] == -1.6 and s["repetitions_reached"] == 1
    assert s["ldlj"] is None


def test_passive_repetitions_from_the_runners_events():
    """A passive repetition spans its 'started' and 'completed' events; its metrics come from that window."""
    log = rm.SampleLog()
    t = np.arange(0.0, 4.0, 0.02)
    q = 0.5 + 0.5 * (1 - np.cos(np.pi * t / 2.0))  # out and back over 4 s
    v = 0.5 * np.pi / 2.0 * np.sin(np.pi * t / 2.0)
    for ti, qi, vi in zip(t, q, v):
        log.add(10.0 + ti, [0.0, 0.0, 0.0, qi], [0.0, 0.0, 0.0, vi], 2.0)
    reps = rm.PassiveRepetitions(["a", "b", "c", "elbow_flexion"], "elbow_flexion")
    events = [{"time": 0.0, "event": "session started"}, {"time": 0.0, "event": "repetition 1 started"}]
    reps.update(10.0, events, log)
    assert reps.repetitions == []
    events += [{"time": 3.98, "event": "repetition 1 completed"}]
    reps.update(10.0, events, log)
    (rep,) = reps.repetitions
    assert rep["repetition"] == 1 and rep["duration"] == pytest.approx(3.98)
    assert rep["metrics"]["rom"]["elbow_flexion"]["range"] == pytest.approx(1.0, abs=0.01)
    assert rep["metrics"]["peak_speed"] == pytest.approx(np.pi / 4, rel=0.01)
    assert rep["metrics"]["peak_interaction_force"] == 2.0
    report = reps.report()
    assert report["session_metrics"]["repetitions_reached"] == 1
