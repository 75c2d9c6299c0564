"""Gravity compensation of the robot and weight support of the patient's limb.

The drives get the torque that holds the robot and the (modelled) limb up as feed-forward,
so that they track with a small error. What the *patient* feels of their limb's weight
is set in the admittance's input (see :class:`~rehab_robot.control.interaction.InteractionController`):
the cuff sensor carries the forearm's weight, which ``weight_support`` cancels in part;
the upper arm hangs in its strap, so its weight is added to the input for the share
that is not supported.
"""

from __future__ import annotations

import numpy as np

from rehab_robot.control.kinematics import CuffKinematics


def limb_weight_torque(kinematics: CuffKinematics, limb_masses, weight_support: float) -> np.ndarray:
    """Joint torque [N·m] added to the admittance input for the limb's weight.

    ``+ s G_forearm`` cancels the supported share ``s`` of the forearm weight the cuff sensor
    feels; ``- (1 - s) G_upper`` lets the patient feel the unsupported share of the upper
    arm, which the sensor does not see.

    Args:
        kinematics: The arm at the current position.
        limb_masses: [upper_arm, forearm_and_hand] [kg].
        weight_support: Share compensated, 0..1.
    """
    upper, forearm = kinematics.limb_gravity(limb_masses)
    return weight_support * forearm - (1.0 - weight_support) * upper


def holding_torque(model, kinematics: CuffKinematics, limb_masses, velocity, acceleration) -> np.ndarray:
    """Feed-forward torque [N·m] of the drives: robot dynamics (RNEA) and the limb's weight.

    Args:
        model: The robot's :class:`~rehab_robot.model.ArmModel`.
        kinematics: The arm at the measured position.
        limb_masses: [upper_arm, forearm_and_hand] [kg].
        velocity: Setpoint velocity [rad/s].
        acceleration: Setpoint acceleration [rad/s²].
    """
    upper, forearm = kinematics.limb_gravity(limb_masses)
    return model.inverse_dynamics(kinematics.q, velocity, acceleration) + upper + forearm
