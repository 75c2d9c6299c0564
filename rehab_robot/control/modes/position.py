"""``position``: trajectory tracking (passive range of motion), today's behaviour."""

from __future__ import annotations

import numpy as np

from rehab_robot.control.modes.base import ControlMode


class PositionMode(ControlMode):
    """The arm tracks ``joint_trajectory``; without one it holds its setpoint."""

    name = "position"
    admittance = False

    def reset(self, state, setpoint, reference) -> None:
        """Hold at ``setpoint`` [rad] until a reference comes."""
        self._hold = np.array(setpoint, dtype=float)

    def setpoint(self, state, reference):
        """The reference sample, or a hold at the last one."""
        if reference is None:
            return self._hold.copy(), np.zeros(self.n), np.zeros(self.n)
        self._hold = np.array(reference.position, dtype=float)
        return reference.position, reference.velocity, reference.acceleration
