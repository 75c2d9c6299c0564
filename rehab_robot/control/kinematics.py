"""What the interaction loop needs to know about the cuff, computed once per cycle.

:class:`CuffKinematics` evaluates the arm at one joint position: the cuff's position,
its Jacobian, the F/T sensor's Jacobian and orientation, and the points where the
patient's limb segments have their centres of mass, for weight support.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pinocchio as pin

#: Standard gravity [m/s²], along -z of ``base_link`` (REP-103: z up).
GRAVITY = 9.81
#: Centre of mass of the upper arm, as a fraction of the shoulder-to-elbow distance from the
#: shoulder (Winter, "Biomechanics and Motor Control of Human Movement", table 4.1: 0.436).
UPPER_ARM_COM_FRACTION = 0.436
#: Centre of mass of the forearm and hand, as a fraction of the elbow-to-cuff distance from
#: the elbow: an approximation. The cuff sits on the distal forearm; the forearm's own centre
#: of mass is nearer the elbow, the hand's lies beyond the cuff, so together about half-way.
FOREARM_COM_FRACTION = 0.5

#: Damping [m] of the equivalent cuff force: it is at most |torque| / (2 * 0.05 m), and an
#: elbow torque at a 25 cm lever reads 4 % low.
EQUIVALENT_FORCE_DAMPING = 0.05

SHOULDER_FRAME = "upper_arm_link"
ELBOW_FRAME = "forearm_link"
CUFF_FRAME = "cuff_link"
FT_FRAME = "ft_sensor_link"


@dataclass(frozen=True)
class CuffKinematics:
    """The arm's cuff and limb geometry at one joint position.

    Attributes:
        q: The joint positions [rad] it was computed at.
        cuff_position: Origin of ``cuff_link`` in ``base_link`` [m].
        cuff_jacobian: 6xn Jacobian of ``cuff_link`` (origin, axes of ``base_link``):
            linear [m/s] rows 0-2, angular [rad/s] rows 3-5, per joint velocity [rad/s].
        ft_jacobian: 6xn Jacobian of ``ft_sensor_link`` in its own axes, so that a wrench
            measured in that frame maps to joint torques as ``J^T W``.
        ft_rotation: 3x3 rotation of ``ft_sensor_link`` into ``base_link``.
        upper_arm_com_jacobian: 3xn linear Jacobian of the upper arm's centre of mass.
        forearm_com_jacobian: 3xn linear Jacobian of the forearm's centre of mass.
    """

    q: np.ndarray
    cuff_position: np.ndarray
    cuff_jacobian: np.ndarray
    ft_jacobian: np.ndarray
    ft_rotation: np.ndarray
    upper_arm_com_jacobian: np.ndarray
    forearm_com_jacobian: np.ndarray

    @classmethod
    def at(cls, model, q) -> "CuffKinematics":
        """Evaluate ``model`` (an :class:`~rehab_robot.model.ArmModel`) at ``q`` [rad]."""
        q = np.asarray(q, dtype=float)
        pm, data = model.pin_model, model.pin_data
        # One forward pass for every frame (the loop runs this at 500 Hz).
        pin.computeJointJacobians(pm, data, q)
        pin.updateFramePlacements(pm, data)
        world = pin.ReferenceFrame.LOCAL_WORLD_ALIGNED
        ids = [model.frame_id(name) for name in (CUFF_FRAME, SHOULDER_FRAME, ELBOW_FRAME, FT_FRAME)]
        cuff = pin.getFrameJacobian(pm, data, ids[0], world)
        shoulder = pin.getFrameJacobian(pm, data, ids[1], world)[:3]
        elbow = pin.getFrameJacobian(pm, data, ids[2], world)[:3]
        ft = pin.getFrameJacobian(pm, data, ids[3], pin.ReferenceFrame.LOCAL)
        # Points of one rigid link move with the linear blend of its points' Jacobians.
        return cls(
            q=q.copy(),
            cuff_position=data.oMf[ids[0]].translation.copy(),
            cuff_jacobian=cuff,
            ft_jacobian=ft,
            ft_rotation=data.oMf[ids[3]].rotation.copy(),
            upper_arm_com_jacobian=(1 - UPPER_ARM_COM_FRACTION) * shoulder + UPPER_ARM_COM_FRACTION * elbow,
            forearm_com_jacobian=(1 - FOREARM_COM_FRACTION) * elbow + FOREARM_COM_FRACTION * cuff[:3],
        )

    def wrench_torque(self, wrench) -> np.ndarray:
        """Joint torques [N·m] of a cuff wrench (force [N], torque [N·m] in ``ft_sensor_link``)."""
        return self.ft_jacobian.T @ np.asarray(wrench, dtype=float)

    def equivalent_force(self, torque) -> np.ndarray:
        """The cuff force [N] in ``base_link`` whose joint torques are closest to ``torque`` [N·m].

        A wrench at the cuff is a force and a moment; this expresses the patient's whole
        push (e.g. an elbow torque, which the sensor reads mostly as a moment) as one cuff
        force, for reports. It is the damped least-squares solution of ``J^T F = torque``
        (damping :data:`EQUIVALENT_FORCE_DAMPING`), bounded where the stretched arm leaves
        a torque (e.g. the upper-arm rotation) without any cuff force.
        """
        J = self.cuff_jacobian[:3]
        gram = J @ J.T + EQUIVALENT_FORCE_DAMPING**2 * np.eye(3)
        return np.linalg.solve(gram, J @ np.asarray(torque, dtype=float))

    def force_in_base(self, wrench) -> np.ndarray:
        """The wrench's force [N] in ``base_link`` axes."""
        return self.ft_rotation @ np.asarray(wrench, dtype=float)[:3]

    def limb_gravity(self, limb_masses) -> tuple[np.ndarray, np.ndarray]:
        """Joint torques [N·m] that hold up the upper arm and the forearm (each separately).

        Args:
            limb_masses: [upper_arm, forearm_and_hand] [kg].
        """
        up = np.array([0.0, 0.0, GRAVITY])
        return (self.upper_arm_com_jacobian.T @ (limb_masses[0] * up),
                self.forearm_com_jacobian.T @ (limb_masses[1] * up))

    def forearm_load_force(self, forearm_mass: float) -> np.ndarray:
        """Static force [N] the forearm's weight puts on the cuff sensor, in ``base_link``.

        The forearm hangs in the cuff, so the sensor carries its whole weight (the moment of
        its offset centre of mass comes with it; :meth:`limb_gravity` has its joint torques).
        """
        return np.array([0.0, 0.0, -GRAVITY * forearm_mass])
