"""Joint trajectories: minimum-jerk moves, smooth stops and sampled trajectories.

A :class:`QuinticSegment` joins two states (position, velocity, acceleration) with a
fifth-order polynomial per joint. A minimum-jerk move is the quintic with zero
velocity and acceleration at both ends. A :class:`SampledTrajectory` interpolates a
list of timed waypoints the same way, between each pair of waypoints.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Peak speed of a minimum-jerk move divided by its mean speed.
MIN_JERK_PEAK_SPEED_RATIO = 1.875


@dataclass(frozen=True)
class QuinticSegment:
    """Quintic polynomial from one joint state to another in ``duration`` [s].

    Attributes:
        coefficients: (6, n) polynomial coefficients, lowest order first.
        duration: Length of the segment [s].
    """

    coefficients: np.ndarray
    duration: float

    @classmethod
    def between(
        cls,
        q0, v0, a0, q1, v1, a1, duration: float,
    ) -> "QuinticSegment":
        """Return the quintic with the given boundary states.

        Args:
            q0, v0, a0: Start position [rad], velocity [rad/s], acceleration [rad/s²].
            q1, v1, a1: End position, velocity and acceleration (same units).
            duration: Segment length [s], > 0.
        """
        if not duration > 0:
            raise ValueError(f"segment duration must be > 0 s, got {duration}")
        q0, v0, a0, q1, v1, a1 = (np.atleast_1d(np.asarray(x, dtype=float)) for x in (q0, v0, a0, q1, v1, a1))
        T = float(duration)
        h = q1 - q0
        c3 = (20 * h - (8 * v1 + 12 * v0) * T - (3 * a0 - a1) * T**2) / (2 * T**3)
        c4 = (-30 * h + (14 * v1 + 16 * v0) * T + (3 * a0 - 2 * a1) * T**2) / (2 * T**4)
        c5 = (12 * h - 6 * (v1 + v0) * T + (a1 - a0) * T**2) / (2 * T**5)
        return cls(np.vstack([q0, v0, a0 / 2, c3, c4, c5]), T)

    @classmethod
    def minimum_jerk(cls, start, end, duration: float) -> "QuinticSegment":
        """Return the minimum-jerk move from rest at ``start`` to rest at ``end`` [rad]."""
        start = np.atleast_1d(np.asarray(start, dtype=float))
        zero = np.zeros_like(start)
        return cls.between(start, zero, zero, end, zero, zero, duration)

    @classmethod
    def smooth_stop(cls, position, velocity, duration: float) -> "QuinticSegment":
        """Return a stop from ``position`` [rad] moving at ``velocity`` [rad/s] to rest.

        The arm travels ``velocity * duration / 2`` further, with zero acceleration at both ends.
        """
        position = np.atleast_1d(np.asarray(position, dtype=float))
        velocity = np.atleast_1d(np.asarray(velocity, dtype=float))
        zero = np.zeros_like(position)
        return cls.between(position, velocity, zero, position + velocity * duration / 2, zero, zero, duration)

    def sample(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return position [rad], velocity [rad/s], acceleration [rad/s²] at ``t`` [s].

        ``t`` is clamped to the segment, so the ends hold.
        """
        t = min(max(t, 0.0), self.duration)
        c = self.coefficients
        position = c[0] + t * (c[1] + t * (c[2] + t * (c[3] + t * (c[4] + t * c[5]))))
        velocity = c[1] + t * (2 * c[2] + t * (3 * c[3] + t * (4 * c[4] + t * 5 * c[5])))
        acceleration = 2 * c[2] + t * (6 * c[3] + t * (12 * c[4] + t * 20 * c[5]))
        return position, velocity, acceleration

    @property
    def end(self) -> np.ndarray:
        """Final position [rad]."""
        return self.sample(self.duration)[0]


def minimum_jerk_duration(distance: float, peak_speed: float) -> float:
    """Return the shortest minimum-jerk duration [s] that keeps the peak speed.

    Args:
        distance: Length of the move [rad].
        peak_speed: Largest allowed speed [rad/s], > 0.
    """
    return MIN_JERK_PEAK_SPEED_RATIO * abs(distance) / peak_speed


@dataclass(frozen=True)
class SampledTrajectory:
    """Timed waypoints, interpolated by quintics between consecutive waypoints.

    Attributes:
        times: (m,) increasing waypoint times [s] from the trajectory start.
        positions: (m, n) positions [rad].
        velocities: (m, n) velocities [rad/s].
        accelerations: (m, n) accelerations [rad/s²].
    """

    times: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray
    accelerations: np.ndarray

    @classmethod
    def from_segment(cls, segment: QuinticSegment, step: float) -> "SampledTrajectory":
        """Sample ``segment`` every ``step`` [s], both ends included."""
        count = max(int(np.ceil(segment.duration / step)), 1) + 1
        times = np.linspace(0.0, segment.duration, count)
        samples = [segment.sample(t) for t in times]
        return cls(
            times,
            np.array([s[0] for s in samples]),
            np.array([s[1] for s in samples]),
            np.array([s[2] for s in samples]),
        )

    @property
    def duration(self) -> float:
        """Time of the last waypoint [s]."""
        return float(self.times[-1])

    def sample(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return position [rad], velocity [rad/s], acceleration [rad/s²] at ``t`` [s].

        Before the first waypoint the first one is returned; after the last, the last
        position is held at rest.
        """
        if t <= self.times[0]:
            return self.positions[0], self.velocities[0], self.accelerations[0]
        if t >= self.times[-1]:
            return self.positions[-1], np.zeros_like(self.positions[-1]), np.zeros_like(self.positions[-1])
        i = int(np.searchsorted(self.times, t, side="right")) - 1
        return self._segment(i).sample(t - self.times[i])

    def _segment(self, i: int) -> QuinticSegment:
        # The controller samples the same segment for many cycles in a row: build it once.
        cached = self.__dict__.get("_cache")
        if cached is None or cached[0] != i:
            segment = QuinticSegment.between(
                self.positions[i], self.velocities[i], self.accelerations[i],
                self.positions[i + 1], self.velocities[i + 1], self.accelerations[i + 1],
                self.times[i + 1] - self.times[i],
            )
            cached = (i, segment)
            object.__setattr__(self, "_cache", cached)
        return cached[1]
