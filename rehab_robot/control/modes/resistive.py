"""``resistive``: the patient works against a viscous and/or elastic resistance.

    tau = -B v - K (q - q_start)

bounded by ``resistive.max_torque`` per joint, with ``B = resistive.damping``,
``K = resistive.stiffness`` and ``q_start`` the start posture: the reference
trajectory's last point, or where the mode started when there is none. The reference
does not move the arm in this mode (the patient does): the session sends one from where
the arm is to the start posture, whose first point the controller accepts (it must lie
within ``start_tolerance`` of the setpoint) wherever the limb has sagged to.
"""

from __future__ import annotations

import numpy as np

from rehab_robot.control.modes.base import ControlMode, Effort, bounded


class ResistiveMode(ControlMode):
    """Viscous and elastic resistance (see module docstring)."""

    name = "resistive"

    def reset(self, state, setpoint, reference) -> None:
        """The start posture is the reference's last point, else ``setpoint`` [rad]."""
        self._start = np.array(reference.end if reference is not None else setpoint, dtype=float)
        self.torque = np.zeros(self.n)

    def effort(self, state, kinematics, velocity, reference) -> Effort:
        """Resistance torque; damping implicit while below the bound."""
        s = self.settings
        start = reference.end if reference is not None else self._start
        spring = -s.resistive_stiffness * (state.q - start)
        unbounded = spring - s.resistive_damping * velocity
        torque, _ = bounded(unbounded, s.resistive_max_torque)
        self.torque = torque
        # Below the bound the damping is integrated implicitly; at the bound the resistance
        # is the bound itself (it then only slows the patient down by that much).
        implicit = torque == unbounded
        applied = np.where(implicit, spring, torque)
        return Effort(applied, np.diag(np.where(implicit, s.resistive_damping, 0.0)))

    def values(self) -> dict[str, str]:
        """The resistance torque now [N·m]."""
        return {"resistive_torque": " ".join(f"{x:.2f}" for x in self.torque)}
