"""The patient's active force at the cuff: the F/T reading with the resting load tared off.

At rest the cuff sensor already reads the weight of the patient's forearm and of the
cuff (15 N and more). That is not the patient's effort, so the session tares the
sensor when it starts: the mean reading over a short window, with the arm at rest and
the patient relaxed, is the resting load. A weight is a constant force in the base
frame, so when the sensor's orientation is known the resting load is carried to the
base frame at the tare and back into the sensor frame at every later pose (otherwise,
as the elbow turns, the forearm's weight would show again as "force"). What remains
is the patient's active force; the dynamic (inertial) part of the limb's load stays in.
"""

from __future__ import annotations

import collections
from typing import Optional

import numpy as np


class CuffForceTare:
    """Keeps the recent cuff forces and, once tared, returns the active force.

    Args:
        window: Length [s] of the averaging window used by :meth:`tare`.
        min_samples: Fewest readings the window must hold for a tare.
    """

    def __init__(self, window: float = 0.5, min_samples: int = 10) -> None:
        self.window = window
        self.min_samples = min_samples
        self.bias: Optional[np.ndarray] = None
        self._load_in_base: Optional[np.ndarray] = None
        self._recent: collections.deque = collections.deque()

    def add(self, now: float, force) -> None:
        """Record the cuff force ``force`` [N] (x, y, z in ft_sensor_link) read at ``now`` [s]."""
        force = np.asarray(force, dtype=float)
        if force.shape != (3,) or not np.all(np.isfinite(force)):
            return  # the supervisor stops on bad readings; they must not enter the bias
        self._recent.append((now, force))
        while self._recent and now - self._recent[0][0] > self.window:
            self._recent.popleft()

    def tare(self, rotation=None) -> np.ndarray:
        """Take the mean of the window as the resting load [N] and return it.

        Args:
            rotation: 3x3 orientation of the sensor frame in the base frame at the tare
                (None if unknown: the load is then taken as fixed in the sensor frame).

        Raises:
            ValueError: when the window holds fewer than ``min_samples`` readings.
        """
        if len(self._recent) < self.min_samples:
            raise ValueError(f"{len(self._recent)} F/T readings in the last {self.window:g} s; "
                             f"at least {self.min_samples} are needed to tare")
        self.bias = np.mean([f for _, f in self._recent], axis=0)
        self._load_in_base = None if rotation is None else np.asarray(rotation, dtype=float) @ self.bias
        return self.bias

    def active_force(self, force, rotation=None) -> float:
        """Return the norm [N] of ``force`` minus the resting load (the raw norm before a tare).

        Args:
            force: Cuff force [N] in the sensor frame.
            rotation: 3x3 orientation of the sensor frame in the base frame now; used
                when the tare had one too.
        """
        force = np.asarray(force, dtype=float)
        if self.bias is None:
            return float(np.linalg.norm(force))
        if self._load_in_base is not None and rotation is not None:
            return float(np.linalg.norm(force - np.asarray(rotation, dtype=float).T @ self._load_in_base))
        return float(np.linalg.norm(force - self.bias))

    def active_force_vector(self, force, rotation=None) -> np.ndarray:
        """Return ``force`` [N] (sensor frame) minus the resting load, as a vector (the raw force before a tare)."""
        force = np.asarray(force, dtype=float)
        if self.bias is None:
            return force
        if self._load_in_base is not None and rotation is not None:
            return force - np.asarray(rotation, dtype=float).T @ self._load_in_base
        return force - self.bias

    def describe(self) -> dict:
        """Return how the reported force was obtained, for the session report."""
        if self.bias is None:
            return {"method": "raw F/T reading (not tared)", "bias": None}
        carried = ", carried along with the sensor's orientation" if self._load_in_base is not None else ""
        return {
            "method": f"F/T reading minus the resting load (forearm and cuff weight), its mean over "
                      f"{self.window:g} s at rest before the start{carried}",
            "bias": [round(float(x), 3) for x in self.bias],
        }
