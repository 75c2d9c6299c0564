"""Physical interaction between robot and patient: cuff force and mechanical work."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from rehab_robot.metrics import _checks


def _force_norm(force, n: int | None = None) -> np.ndarray:
    """|F| per sample from magnitudes (N,), forces (N, 3) or wrenches (N, 6: force first)."""
    f = _checks.series(force, "force", n, columns=(3, 6))
    return np.abs(f) if f.ndim == 1 else np.linalg.norm(f[:, :3], axis=1)


def peak_interaction_force(force) -> float:
    """Largest interaction force magnitude [N]: max_i |F_i|.

    Reference: the cuff force measured by patient-cooperative arm robots, e.g. T. Nef,
    M. Mihelj, R. Riener, "ARMin: a robot for patient-cooperative arm therapy", Med. Biol.
    Eng. Comput. 45, 2007.

    Args:
        force: Force magnitudes [N] (N,), forces (N, 3) or wrenches (N, 6) as in
            the ``ft_sensor/wrench`` topic (force first).

    Raises:
        ValueError: for NaN/inf, no samples or a wrong number of columns.
    """
    return float(np.max(_force_norm(force)))


def mean_interaction_force(t, force) -> float:
    """Time-averaged interaction force magnitude [N]: (1 / T) ∫ |F| dt (trapezoid rule).

    Sampling may be non-uniform; each sample weighs by the time it covers.
    Reference: as for :func:`peak_interaction_force`.

    Args:
        t: Time stamps [s], strictly increasing, shape (N,).
        force: As for :func:`peak_interaction_force`.

    Raises:
        ValueError: for NaN/inf, fewer than 2 samples, mismatched lengths.
    """
    t = _checks.times(t)
    norm = _force_norm(force, len(t))
    return float(np.trapezoid(norm, t) / (t[-1] - t[0]))


class WorkShare(NamedTuple):
    """Mechanical work of robot and patient over a recording.

    Attributes:
        robot_positive: Positive work the robot did on the limb [J].
        patient_positive: Positive work the patient's muscles did [J].
        robot_net: Net work of the robot [J] (positive minus absorbed).
        patient_net: Net work of the patient [J].
        patient_share: patient_positive / (robot_positive + patient_positive),
            0 (robot did everything) .. 1 (patient did everything); NaN when
            neither did positive work.
    """

    robot_positive: float
    patient_positive: float
    robot_net: float
    patient_net: float
    patient_share: float


def work_share(t, velocity, robot_torque, patient_torque) -> WorkShare:
    """Share of the mechanical work done by robot and patient, from joint torques and velocities.

    The power of each is summed over the joints, P(t) = Σ_j τ_j(t) v_j(t) [W];
    positive work is ∫ max(P, 0) dt, net work ∫ P dt (trapezoid rule; sampling may
    be non-uniform). The robot's torque is the motor effort (``joint_states``
    effort); the patient's is J^T W of the cuff wrench W (or the sim's
    ``patient_torque``). Reference: joint power τ·q̇ of rigid-body mechanics; the
    share is this package's summary of it.

    Args:
        t: Time stamps [s], shape (N,).
        velocity: Joint velocities [rad/s], shape (N,) or (N, joints).
        robot_torque: Robot joint torques [N·m], same shape.
        patient_torque: Patient joint torques [N·m], same shape.

    Raises:
        ValueError: for NaN/inf, fewer than 2 samples or mismatched shapes.
    """
    t = _checks.times(t)
    v = _checks.series(velocity, "velocity", len(t))
    robot = _checks.series(robot_torque, "robot_torque", len(t))
    patient = _checks.series(patient_torque, "patient_torque", len(t))
    for name, arr in (("robot_torque", robot), ("patient_torque", patient)):
        if arr.shape != v.shape:
            raise ValueError(f"{name} has shape {arr.shape}, velocity {v.shape}: they must match")

    def power(tau):
        p = tau * v
        return p if p.ndim == 1 else p.sum(axis=1)

    p_robot, p_patient = power(robot), power(patient)
    robot_pos = float(np.trapezoid(np.maximum(p_robot, 0.0), t))
    patient_pos = float(np.trapezoid(np.maximum(p_patient, 0.0), t))
    total = robot_pos + patient_pos
    return WorkShare(
        robot_positive=robot_pos,
        patient_positive=patient_pos,
        robot_net=float(np.trapezoid(p_robot, t)),
        patient_net=float(np.trapezoid(p_patient, t)),
        patient_share=patient_pos / total if total > 0.0 else float("nan"),
    )
