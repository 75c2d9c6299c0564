"""``active``: transparent. The patient moves the arm freely inside the soft walls.

Gravity (robot and, by ``weight_support``, limb) and joint friction are compensated;
the patient feels only the virtual mass and damping of the admittance.
"""

from __future__ import annotations

from rehab_robot.control.modes.base import ControlMode


class ActiveMode(ControlMode):
    """Adds nothing to the admittance: the cuff is a free virtual mass-damper."""

    name = "active"
