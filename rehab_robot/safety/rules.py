"""Safety rules: the per-state checks of the safety supervisor.

Each check compares one measured state of the arm with a limit and returns the
violations found. Limits come from the URDF (actuator and joint limits), tightened
by the patient's profile (range of motion, speed, interaction force).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np


@dataclass(frozen=True)
class Violation:
    """One broken safety rule.

    Attributes:
        rule: ``position``, ``velocity``, ``effort``, ``force`` or ``invalid``.
        joint: Joint name, or None for rules that are not per joint.
        value: Measured value [rad, rad/s, N·m or N].
        limit: The limit it broke, same unit.
        unit: Unit text for messages.
    """

    rule: str
    joint: Optional[str]
    value: float
    limit: float
    unit: str

    def __str__(self) -> str:
        if self.rule == "invalid":
            return f"{self.unit} reading holds NaN/inf or has the wrong number of joints"
        where = f" of {self.joint}" if self.joint else ""
        return f"{self.rule}{where} {self.value:.3f} {self.unit} beyond limit {self.limit:.3f} {self.unit}"


@dataclass(frozen=True)
class SafetyLimits:
    """The limits every measured state is checked against.

    Attributes:
        joint_names: Joint order of the arrays.
        lower: Lowest allowed position per joint [rad].
        upper: Highest allowed position per joint [rad].
        velocity: Largest allowed |velocity| per joint [rad/s].
        effort: Largest allowed |motor torque| per joint [N·m].
        max_interaction_force: Largest allowed norm of the cuff force [N].
    """

    joint_names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray
    max_interaction_force: float

    @classmethod
    def for_patient(
        cls,
        joint_names: Sequence[str],
        lower: Sequence[float],
        upper: Sequence[float],
        velocity: Sequence[float],
        effort: Sequence[float],
        *,
        rom_limits: Optional[Mapping[str, tuple[float, float]]] = None,
        max_velocity: Optional[float] = None,
        max_interaction_force: float = 40.0,
        position_margin: float = 0.1,
        velocity_margin: float = 1.25,
        effort_fraction: float = 0.9,
    ) -> "SafetyLimits":
        """Build limits from the arm's URDF limits and a patient's profile.

        Args:
            joint_names: Joint order.
            lower: URDF lower position limits [rad].
            upper: URDF upper position limits [rad].
            velocity: URDF velocity limits [rad/s].
            effort: URDF effort limits [N·m].
            rom_limits: Patient range of motion per joint [rad]; widened by
                ``position_margin`` (tracking overshoot is not a violation) and never
                beyond the URDF limits.
            max_velocity: Patient speed cap [rad/s], multiplied by ``velocity_margin``.
            max_interaction_force: Cuff force limit [N].
            position_margin: Tolerance around the patient's ROM [rad].
            velocity_margin: Factor on the patient's speed cap.
            effort_fraction: Fraction of the actuator rating that counts as a fault.
        """
        names = tuple(joint_names)
        lo = np.array(lower, dtype=float)
        hi = np.array(upper, dtype=float)
        for joint, (rom_lo, rom_hi) in (rom_limits or {}).items():
            i = names.index(joint)
            lo[i] = max(lo[i], rom_lo - position_margin)
            hi[i] = min(hi[i], rom_hi + position_margin)
        vel = np.array(velocity, dtype=float)
        if max_velocity is not None:
            vel = np.minimum(vel, max_velocity * velocity_margin)
        return cls(
            joint_names=names,
            lower=lo,
            upper=hi,
            velocity=vel,
            effort=np.array(effort, dtype=float) * effort_fraction,
            max_interaction_force=float(max_interaction_force),
        )


def check_state(
    limits: SafetyLimits,
    position: np.ndarray,
    velocity: np.ndarray,
    effort: np.ndarray,
    force: Optional[np.ndarray],
) -> list[Violation]:
    """Return every rule the measured state breaks (empty when safe).

    Args:
        limits: The limits to check against.
        position: Joint positions [rad].
        velocity: Joint velocities [rad/s].
        effort: Motor torques [N·m].
        force: Cuff force vector [N], or None when no reading is available.
    """
    violations: list[Violation] = []
    arrays = {"position": position, "velocity": velocity, "effort": effort}
    for name, values in arrays.items():
        if len(values) != len(limits.joint_names) or not np.all(np.isfinite(values)):
            violations.append(Violation("invalid", None, float("nan"), float("nan"), name))
    if force is not None and (len(force) != 3 or not np.all(np.isfinite(force))):
        violations.append(Violation("invalid", None, float("nan"), float("nan"), "force"))
    if violations:
        return violations
    for i, joint in enumerate(limits.joint_names):
        if position[i] < limits.lower[i]:
            violations.append(Violation("position", joint, position[i], limits.lower[i], "rad"))
        elif position[i] > limits.upper[i]:
            violations.append(Violation("position", joint, position[i], limits.upper[i], "rad"))
        if abs(velocity[i]) > limits.velocity[i]:
            violations.append(Violation("velocity", joint, velocity[i], limits.velocity[i], "rad/s"))
        if abs(effort[i]) > limits.effort[i]:
            violations.append(Violation("effort", joint, effort[i], limits.effort[i], "N·m"))
    if force is not None:
        magnitude = float(np.linalg.norm(force))
        if magnitude > limits.max_interaction_force:
            violations.append(
                Violation("force", None, magnitude, limits.max_interaction_force, "N")
            )
    return violations
