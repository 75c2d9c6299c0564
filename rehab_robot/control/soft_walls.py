"""Soft walls at the patient's range of motion, in every active interaction mode.

Beyond a wall a joint feels a spring and a damper pushing it back in:

    tau = -K p - D v      (p: penetration beyond the wall [rad], D only while moving out)

A wall only pushes: the damper acts only while the joint moves further out, so it never
holds the joint against the wall on the way back. Walls lie inside the robot's URDF
limits and the supervisor's hard limits (the patient's ROM plus its margin), so they
act first. A wall torque above ``torque_limit`` means the patient (or a spasm) pushes
through the wall: the controller then makes a protective stop.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np


class WallEffort(NamedTuple):
    """What the walls do at one state.

    Attributes:
        torque: Spring torque [N·m] per joint (the damping comes separately).
        damping: Damping [N·m·s/rad] per joint, 0 where no wall acts.
        total: The wall's whole torque magnitude [N·m] per joint, spring plus damper.
    """

    torque: np.ndarray
    damping: np.ndarray
    total: np.ndarray


class SoftWalls:
    """Spring-damper walls at ``lower`` and ``upper`` [rad] per joint.

    Args:
        lower: Lower wall per joint [rad].
        upper: Upper wall per joint [rad].
        stiffness: K [N·m/rad].
        damping: D [N·m·s/rad].
        torque_limit: Wall torque [N·m] beyond which the wall counts as broken through.
    """

    def __init__(self, lower, upper, stiffness: float, damping: float, torque_limit: float) -> None:
        self.lower = np.asarray(lower, dtype=float)
        self.upper = np.asarray(upper, dtype=float)
        self.stiffness = float(stiffness)
        self.damping = float(damping)
        self.torque_limit = float(torque_limit)

    def penetration(self, q) -> np.ndarray:
        """How far [rad] each joint is beyond its wall (positive above ``upper``, negative below ``lower``)."""
        q = np.asarray(q, dtype=float)
        return np.maximum(q - self.upper, 0.0) + np.minimum(q - self.lower, 0.0)

    def effort(self, q, v) -> WallEffort:
        """Return the walls' spring torque, damping and total torque at ``q`` [rad], ``v`` [rad/s]."""
        p = self.penetration(q)
        v = np.asarray(v, dtype=float)
        moving_out = (p * v) > 0.0
        damping = np.where(moving_out, self.damping, 0.0)
        spring = -self.stiffness * p
        total = np.abs(spring) + damping * np.abs(v)
        return WallEffort(spring, damping, total)

    def broken_through(self, q, v) -> Optional[int]:
        """Return the joint whose wall torque exceeds ``torque_limit``, or None."""
        total = self.effort(q, v).total
        j = int(np.argmax(total))
        return j if total[j] > self.torque_limit else None
