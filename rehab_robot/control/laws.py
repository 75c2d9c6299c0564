"""Control laws of the motion controller.

The drives close the position/velocity loop (see :mod:`rehab_robot.hardware.interface`).
The controller gives them a setpoint and the torque the model says the motion needs:
gravity compensation plus the inertial and Coriolis terms of the planned motion
(pinocchio's RNEA at the measured position). Every command is then limited to what
the arm and the patient allow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rehab_robot.hardware.interface import JointCommand


@dataclass(frozen=True)
class CommandLimits:
    """Bounds applied to every command, per joint.

    Attributes:
        lower: Lowest commanded position [rad].
        upper: Highest commanded position [rad].
        velocity: Largest commanded |velocity| [rad/s].
        effort: Largest commanded |feed-forward torque| [N·m].
    """

    lower: np.ndarray
    upper: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray


def feedforward_command(model, position, velocity, acceleration, measured_position) -> JointCommand:
    """Return the drive setpoint with model-based feed-forward torque.

    Args:
        model: An :class:`rehab_robot.model.ArmModel` of the arm (no patient).
        position: Setpoint position [rad].
        velocity: Setpoint velocity [rad/s].
        acceleration: Setpoint acceleration [rad/s²].
        measured_position: Measured position [rad]; gravity is compensated where the arm is.
    """
    effort = model.inverse_dynamics(measured_position, velocity, acceleration)
    return JointCommand(
        position=np.asarray(position, dtype=float),
        velocity=np.asarray(velocity, dtype=float),
        effort=np.asarray(effort, dtype=float),
    )


def limit_command(command: JointCommand, limits: CommandLimits) -> JointCommand:
    """Clamp ``command`` to ``limits``.

    A joint whose position is clamped gets zero velocity, so the drive does not push
    into the limit.

    Raises:
        ValueError: if the command holds NaN or inf.
    """
    if not command.is_finite():
        raise ValueError("command holds NaN or inf")
    position = np.clip(command.position, limits.lower, limits.upper)
    velocity = np.clip(command.velocity, -limits.velocity, limits.velocity)
    velocity = np.where(position != command.position, 0.0, velocity)
    effort = np.clip(command.effort, -limits.effort, limits.effort)
    return JointCommand(position=position, velocity=velocity, effort=effort)
