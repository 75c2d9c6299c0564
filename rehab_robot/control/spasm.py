"""Spasm detection from the cuff force.

A spasm is an involuntary contraction: the patient's push suddenly rises, typically
against the intended motion. The detector watches the push joint by joint, each as the
cuff force that joint alone would feel, ``F_j = tau_j / l_j`` (``tau_j`` the patient's
torque at joint j, ``l_j`` the cuff's lever about it): well defined in every posture,
also where the stretched arm makes a single equivalent cuff force ill-conditioned. Two
rules, either one is a spasm:

* **threshold**: at a joint that moves or is meant to move (direction ``s_j``), the force
  against the motion, ``-s_j F_j``, is above ``force_threshold`` [N];
* **rate**: the largest ``|F_j|`` rises faster than ``force_rate`` [N/s] over
  :data:`RATE_WINDOW`, while it is above half the threshold (a small fast twitch is no spasm).

A rule must hold for :data:`CONFIRM_SAMPLES` samples in a row, so that one corrupted
sample is not a spasm; the *onset* is the first sample of that run. At 500 Hz this
costs 2 ms of the 50 ms onset-to-reaction budget.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple, Optional

import numpy as np

#: Samples in a row that confirm a spasm.
CONFIRM_SAMPLES = 2
#: Time [s] over which the force's rise rate is measured.
RATE_WINDOW = 0.02


class SpasmOnset(NamedTuple):
    """A detected spasm.

    Attributes:
        onset: Time [s] of the first sample of the run that confirmed it.
        force: Force [N] at detection (against the motion for the threshold rule).
        rule: ``"threshold"`` or ``"rate"``.
        joint: Index of the joint with that force.
    """

    onset: float
    force: float
    rule: str
    joint: int


class SpasmDetector:
    """Watches the cuff force sample by sample.

    Args:
        force_threshold: Force against the motion that is a spasm [N].
        force_rate: Rise rate of the force magnitude that is a spasm [N/s].
    """

    def __init__(self, force_threshold: float, force_rate: float) -> None:
        self.force_threshold = float(force_threshold)
        self.force_rate = float(force_rate)
        self.reset()

    def reset(self) -> None:
        """Forget the history (after a stop, a mode change, a missing signal)."""
        self._history: deque[tuple[float, float]] = deque()
        self._run_start: Optional[float] = None
        self._run_length = 0
        self._last_t: Optional[float] = None

    def update(self, t: float, joint_forces, direction) -> Optional[SpasmOnset]:
        """Take the sample at ``t`` [s]; return the spasm it confirms, or None.

        Args:
            t: Sample time [s]; a sample not newer than the last one is ignored.
            joint_forces: The patient's push per joint as a cuff force [N] (``tau_j / l_j``).
            direction: Per joint +1 / -1 where it moves (or is meant to) that way, 0 where
                it does not; None at rest.
        """
        if self._last_t is not None and t <= self._last_t:
            return None
        self._last_t = t
        forces = np.asarray(joint_forces, dtype=float)
        strongest = int(np.argmax(np.abs(forces)))
        magnitude = float(abs(forces[strongest]))
        history = self._history
        history.append((t, magnitude))
        while len(history) > 2 and history[1][0] <= t - RATE_WINDOW:
            history.popleft()
        hit = None
        if direction is not None:
            against = -forces * np.asarray(direction, dtype=float)
            j = int(np.argmax(against))
            if against[j] > self.force_threshold:
                hit = ("threshold", float(against[j]), j)
        if hit is None:
            t0, f0 = history[0]
            if t - t0 >= 0.5 * RATE_WINDOW and magnitude > 0.5 * self.force_threshold \
                    and (magnitude - f0) / (t - t0) > self.force_rate:
                hit = ("rate", magnitude, strongest)
        if hit is None:
            self._run_start, self._run_length = None, 0
            return None
        if self._run_start is None:
            self._run_start = t
        self._run_length += 1
        if self._run_length >= CONFIRM_SAMPLES:
            onset = self._run_start
            self._run_start, self._run_length = None, 0
            return SpasmOnset(onset, hit[1], hit[0], hit[2])
        return None
