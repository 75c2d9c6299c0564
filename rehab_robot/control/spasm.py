"""Spasm detection from the cuff force.

A spasm is an involuntary contraction: the cuff force suddenly rises, typically against
the intended motion. Two rules, either one is a spasm:

* **threshold**: the force component against the motion, ``-F·u`` (``u`` the unit
  direction the cuff moves or is meant to move), is above ``force_threshold`` [N];
* **rate**: the force magnitude rises faster than ``force_rate`` [N/s] over
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
        force: Force magnitude [N] at detection (against the motion for the threshold rule).
        rule: ``"threshold"`` or ``"rate"``.
    """

    onset: float
    force: float
    rule: str


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

    def update(self, t: float, force, direction) -> Optional[SpasmOnset]:
        """Take the sample at ``t`` [s]; return the spasm it confirms, or None.

        Args:
            t: Sample time [s]; a sample not newer than the last one is ignored.
            force: Cuff force the patient applies [N], 3 values in ``base_link``.
            direction: Unit vector of the cuff's (intended) motion, or None at rest.
        """
        if self._last_t is not None and t <= self._last_t:
            return None
        self._last_t = t
        force = np.asarray(force, dtype=float)
        magnitude = float(np.linalg.norm(force))
        history = self._history
        history.append((t, magnitude))
        while len(history) > 2 and history[1][0] <= t - RATE_WINDOW:
            history.popleft()
        against = -float(force @ direction) if direction is not None else 0.0
        hit = None
        if against > self.force_threshold:
            hit = ("threshold", against)
        else:
            t0, f0 = history[0]
            if t - t0 >= 0.5 * RATE_WINDOW and magnitude > 0.5 * self.force_threshold \
                    and (magnitude - f0) / (t - t0) > self.force_rate:
                hit = ("rate", magnitude)
        if hit is None:
            self._run_start, self._run_length = None, 0
            return None
        if self._run_start is None:
            self._run_start = t
        self._run_length += 1
        if self._run_length >= CONFIRM_SAMPLES:
            onset = self._run_start
            self._run_start, self._run_length = None, 0
            return SpasmOnset(onset, hit[1], hit[0])
        return None
