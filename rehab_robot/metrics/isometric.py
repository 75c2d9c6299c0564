"""Isometric strength: peak torque and the highest torque sustained for a given time."""

from __future__ import annotations

import collections

import numpy as np

from rehab_robot.metrics import _checks

#: Slack [s] on the hold time, so that rounding in the stamps (k * 0.01 s) does not
#: make an interval of exactly ``hold_time`` count as shorter.
TIME_SLACK = 1e-9


def _directed(torque, n: int | None, direction) -> np.ndarray:
    tau = _checks.series(torque, "torque", n)
    if tau.ndim != 1:
        raise ValueError(f"torque must be one joint's torque, shape (N,), got {tau.shape}")
    if direction is None:
        direction = 1.0 if tau[np.argmax(np.abs(tau))] >= 0.0 else -1.0
    elif direction not in (1, -1):
        raise ValueError(f"direction = {direction!r}: must be 1, -1 or None (the sign of the largest torque)")
    return direction * tau


def isometric_peak_torque(torque, direction: int | None = None) -> float:
    """Peak torque [N·m] of an isometric (held-still) contraction, in ``direction``.

    Args:
        torque: One joint's torque [N·m], shape (N,).
        direction: +1 or -1, the direction of the effort; ``None``: the sign of the
            largest |torque|.

    Reference: the maximal voluntary contraction of isometric dynamometry.

    Returns:
        max(direction * torque) [N·m], >= 0 when the patient pushed that way.

    Raises:
        ValueError: for NaN/inf, no samples, several joints, a bad direction.
    """
    return float(np.max(_directed(torque, None, direction)))


def sustained_torque(t, torque, hold_time: float, direction: int | None = None) -> float:
    """Highest torque level [N·m] held without interruption for at least ``hold_time`` [s].

        max over intervals [t_i, t_j] with t_j - t_i >= hold_time of min_{i..j} direction * torque

    E.g. a 3 s sustained-contraction test: ``sustained_torque(t, tau, 3.0)``.
    Sampling may be non-uniform. Reference: this package's definition of an endurance
    (held-contraction) test outcome; the level is the worst moment of the best window.

    Args:
        t: Time stamps [s], strictly increasing, shape (N,).
        torque: One joint's torque [N·m], shape (N,).
        hold_time: How long the level must be held [s], > 0 and at most the recording.
        direction: As for :func:`isometric_peak_torque`.

    Raises:
        ValueError: for NaN/inf, fewer than 2 samples, a recording shorter than
            hold_time, a bad direction.
    """
    t = _checks.times(t)
    tau = _directed(torque, len(t), direction)
    hold_time = _checks.positive(hold_time, "hold_time", "a time > 0 [s]")
    hold_time -= TIME_SLACK
    if t[-1] - t[0] < hold_time:
        raise ValueError(f"the recording lasts {t[-1] - t[0]:.6g} s, shorter than "
                         f"hold_time = {hold_time + TIME_SLACK:g} s")
    # Sliding minimum over the shortest window starting at each i: both ends only move forward.
    best = -np.inf
    window: collections.deque[int] = collections.deque()  # indices, torque increasing
    j = 0
    for i in range(len(t)):
        while window and window[0] < i:
            window.popleft()
        while j < len(t) and (j == 0 or t[j - 1] - t[i] < hold_time):
            while window and tau[window[-1]] >= tau[j]:
                window.pop()
            window.append(j)
            j += 1
        if t[j - 1] - t[i] < hold_time:
            break
        best = max(best, float(tau[window[0]]))
    return best
