"""``isometric``: the arm holds still where it is, stiff; the patient pushes against it."""

from __future__ import annotations

import numpy as np

from rehab_robot.control.modes.base import ControlMode


class IsometricMode(ControlMode):
    """Holds the position of the last reset with the drives' full stiffness (no trajectory needed)."""

    name = "isometric"
    admittance = False

    def reset(self, state, setpoint, reference) -> None:
        """Hold where the arm is commanded now [rad]."""
        self._hold = np.array(setpoint, dtype=float)

    def setpoint(self, state, reference):
        """The hold position, at rest."""
        return self._hold.copy(), np.zeros(self.n), np.zeros(self.n)
