"""Kinematic metrics: range of motion, peak speed, movement time, path straightness."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from rehab_robot.metrics import _checks


class RangeOfMotion(NamedTuple):
    """Range of motion per joint (or of a single joint): minimum, maximum, range = max - min."""

    minimum: np.ndarray | float
    maximum: np.ndarray | float
    range: np.ndarray | float


def range_of_motion(position) -> RangeOfMotion:
    """Smallest, largest and range (max - min) of the positions reached [rad or m].

    Args:
        position: Joint positions [rad], shape (N,) for one joint or (N, joints).

    Returns:
        Floats for 1-D input, per-joint arrays for 2-D input.

    Reference: the clinical (goniometric) range of motion, here of the measured joint angles.

    Raises:
        ValueError: for NaN/inf or no samples.
    """
    q = _checks.series(position, "position")
    low, high = q.min(axis=0), q.max(axis=0)
    if q.ndim == 1:
        return RangeOfMotion(float(low), float(high), float(high - low))
    return RangeOfMotion(low, high, high - low)


def peak_speed(velocity) -> float:
    """Largest speed [unit/s]: max |v| of a 1-D velocity, max row norm of (N, d).

    Reference: a standard reaching outcome, e.g. B. Rohrer et al., "Movement smoothness
    changes during stroke recovery", J. Neurosci. 22(18), 2002.

    Raises:
        ValueError: for NaN/inf or no samples.
    """
    return float(np.max(_checks.magnitude(_checks.series(velocity, "velocity"))))


def movement_bounds(t, speed, threshold: float = 0.05) -> tuple[int, int]:
    """Indices of a movement's onset and end: the first and the last sample whose
    speed is at least ``threshold`` times the peak speed.

    Args:
        t: Time stamps [s], strictly increasing, shape (N,).
        speed: Speed, shape (N,); or velocity (N, d) (row norms are used).
        threshold: Share of the peak speed, in (0, 1); 5 % is customary.

    Raises:
        ValueError: for NaN/inf, fewer than 2 samples, a bad threshold or no movement.
    """
    t = _checks.times(t)
    s = _checks.magnitude(_checks.series(speed, "speed", len(t)))
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold = {threshold!r}: must be a share of the peak speed between 0 and 1 (excluded)")
    peak = s.max()
    if peak <= 0.0:
        raise ValueError("speed is zero throughout: no movement to measure")
    moving = np.flatnonzero(s >= threshold * peak)
    return int(moving[0]), int(moving[-1])


def movement_time(t, speed, threshold: float = 0.05) -> float:
    """Movement time [s]: from the first to the last sample whose speed is at least
    ``threshold`` times the peak speed (see :func:`movement_bounds`).

    Reference: the customary 5 %-of-peak-speed onset criterion of reaching studies
    (e.g. Rohrer et al. 2002, above).

    Raises:
        ValueError: for NaN/inf, fewer than 2 samples, a bad threshold or no movement.
    """
    t = _checks.times(t)
    onset, end = movement_bounds(t, speed, threshold)
    return float(t[end] - t[onset])


def path_length_ratio(path, reference=None) -> float:
    """Length of a Cartesian path over the length of the reference path [dimensionless].

    1 for a path along the reference, more for a detour. The reference is a
    polyline (e.g. the exercise's via points), by default the straight line from
    the path's first to its last point. Reference: healthy reaches are nearly straight
    (T. Flash, N. Hogan, J. Neurosci. 5(7), 1985); used as a robot-therapy outcome e.g. by
    L. E. Kahn et al., J. NeuroEngineering Rehabil. 3:12, 2006.

    Args:
        path: Points [m], shape (N, d), e.g. the cuff position over time.
        reference: Polyline [m], shape (M, d), M >= 2; default: first and last point.

    Raises:
        ValueError: for NaN/inf, fewer than 2 points, mismatched dimensions or a
            reference of zero length.
    """
    p, ref = _path_and_reference(path, reference)
    length = float(np.sum(np.linalg.norm(np.diff(p, axis=0), axis=1)))
    ref_length = float(np.sum(np.linalg.norm(np.diff(ref, axis=0), axis=1)))
    if ref_length <= 0.0:
        raise ValueError("the reference path has zero length (start and end coincide): "
                         "give a reference polyline")
    return length / ref_length


def max_path_deviation(path, reference=None) -> float:
    """Largest distance [m] of a path's points from the reference polyline.

        max_i min_segments | p_i - closest point of the segment |

    Reference: as for :func:`path_length_ratio`.

    Args:
        path: Points [m], shape (N, d).
        reference: Polyline [m], shape (M, d), M >= 2; default: first and last point.

    Raises:
        ValueError: for NaN/inf, fewer than 2 points or mismatched dimensions.
    """
    p, ref = _path_and_reference(path, reference)
    start, end = ref[:-1], ref[1:]  # segments (M-1, d)
    seg = end - start
    seg_len2 = np.sum(seg * seg, axis=1)
    rel = p[:, None, :] - start[None, :, :]  # (N, M-1, d)
    with np.errstate(invalid="ignore", divide="ignore"):
        u = np.where(seg_len2 > 0.0, np.sum(rel * seg[None], axis=2) / seg_len2, 0.0)
    u = np.clip(u, 0.0, 1.0)
    closest = start[None] + u[..., None] * seg[None]
    distance = np.linalg.norm(p[:, None, :] - closest, axis=2).min(axis=1)
    return float(distance.max())


def _path_and_reference(path, reference) -> tuple[np.ndarray, np.ndarray]:
    p = _checks.series(path, "path", min_samples=2)
    if p.ndim == 1:
        p = p[:, None]
    if reference is None:
        ref = p[[0, -1]]
    else:
        ref = _checks.series(reference, "reference", min_samples=2)
        if ref.ndim == 1:
            ref = ref[:, None]
        if ref.shape[1] != p.shape[1]:
            raise ValueError(f"reference has {ref.shape[1]} coordinates per point, path has {p.shape[1]}")
    return p, ref
