"""Admittance control: a virtual mass and damper at the cuff, mapped into joint space.

The patient's push drives virtual dynamics whose motion becomes the drives' position
and velocity setpoint; the drives' own stiff loop then tracks it (every backend takes
position, velocity and feed-forward torque setpoints). The push is the cuff wrench
mapped through the F/T sensor's Jacobian, ``tau = J_ft^T W`` [N·m]. The virtual
dynamics in joint space are

    M a + D v = tau - D_x v
    C = J^T diag(1, 1, 1, r², r², r²) J                  (per unit mass, [m²])
    M = m ((1 - μ) C + μ diag(max(C_jj, L_MIN²))) + M_0 I,   D = d (same without M_0)

with ``J`` the 6xn Jacobian of ``cuff_link``, ``m`` the virtual mass [kg], ``d`` the
virtual damping [N·s/m], ``r`` :data:`GYRATION_RADIUS`, ``μ`` :data:`DIAGONAL_SHARE`,
``M_0`` :data:`JOINT_INERTIA_FLOOR`. With ``μ = 0`` and no floor this is exactly a
rigid virtual body at the cuff: a force ``F`` (``tau = J^T F``) moves the cuff like
``m a + d v = F``, and a push that moves one joint feels ``m`` and ``d`` for any ``μ``.

Why the diagonal share and the floors: the arm has 4 joints for the cuff's 3
translations; near the stretched arm some joint motions barely move the cuff (the
forearm turning about the cuff, the upper-arm rotation). With a pure cuff body those
directions carry almost no mass or damping: measured with the virtual patient, an elbow
push of 4.5 N·m against 200 N·s/m sent the shoulder to 0.8 rad/s and the elbow to 1.6
rad/s (0.3 rad/s expected); with ``μ = 0.25`` 0.24 and 0.63 rad/s. The price is a
direction-dependent cuff feel for coordinated motions (bench/bench_interaction.py
measures the apparent damping of an elbow reach). ``M_0`` keeps the loop stable: the
patient's own joint damping reaches the admittance through the sensor with the drives'
lag; a joint with a tiny virtual inertia would ring at the loop rate.

Two kinds of torque drive it. Forces at the cuff (the patient's push, the channel of
path guidance) act on the cuff body through ``M``, as above. Joint-space terms (soft
walls, assistance, resistance, the compliant hold) act joint by joint: a torque ``t_j``
accelerates joint j by ``t_j / M_jj`` and no other joint, as a motor at that joint
would. (Through the coupled ``M`` an elbow assistance would swing the shoulder back, as
it does a free two-link chain; measured, 10 N·m at the elbow sent the shoulder to -2 rad/s.)
With ``Λ = diag(M)^-1``, ``t`` and its damping ``D_x`` enter as ``M Λ t`` and ``M Λ D_x``,
integrated implicitly with the virtual damping so that stiff walls and high damping
never make the discrete loop unstable:

    (M (I + dt Λ D_x) + dt D) v[k+1] = M v[k] + dt (tau[k] + M Λ t[k])

Reference: N. Hogan, "Impedance control: an approach to manipulation", ASME J. Dyn.
Syst. Meas. Control 107, 1985; admittance control of an arm exoskeleton as in ARMin
(T. Nef, M. Mihelj, R. Riener, Med. Biol. Eng. Comput. 45, 2007).
"""

from __future__ import annotations

import numpy as np

#: Radius of gyration [m] of the virtual body about the cuff: its rotational inertia is m r².
GYRATION_RADIUS = 0.05
#: Share of the joint-by-joint (diagonal) rendering mixed into the rigid cuff body.
DIAGONAL_SHARE = 0.25
#: Shortest lever [m] at which a joint renders the cuff's mass and damping in the diagonal share.
L_MIN = 0.15
#: Virtual inertia every joint has at least [kg·m²].
JOINT_INERTIA_FLOOR = 0.01


def joint_levers(cuff_jacobian) -> np.ndarray:
    """Lever [m] of the cuff about each joint: the norm of the Jacobian's linear column, at least L_MIN."""
    J = np.asarray(cuff_jacobian, dtype=float)[:3]
    return np.maximum(np.linalg.norm(J, axis=0), L_MIN)


def unit_inertia(cuff_jacobian) -> np.ndarray:
    """The joint-space matrix [m²] that a unit cuff mass (or damping) maps to (see module)."""
    J = np.asarray(cuff_jacobian, dtype=float)
    weights = np.array([1.0, 1.0, 1.0] + [GYRATION_RADIUS**2] * 3)
    C = J.T @ (weights[:, None] * J)
    diagonal = np.diag(np.maximum(np.diag(C), L_MIN**2))
    return (1.0 - DIAGONAL_SHARE) * C + DIAGONAL_SHARE * diagonal


class CuffAdmittance:
    """The virtual mass-damper at the cuff and the joint setpoint it produces.

    Args:
        lower: Lowest joint position [rad] the setpoint may take.
        upper: Highest [rad].
        velocity_limit: Largest joint speed [rad/s] of the setpoint.

    Attributes:
        position: Setpoint position [rad].
        velocity: Setpoint velocity [rad/s].
        acceleration: Setpoint acceleration of the last step [rad/s²].
    """

    def __init__(self, lower, upper, velocity_limit) -> None:
        self.lower = np.asarray(lower, dtype=float)
        self.upper = np.asarray(upper, dtype=float)
        self.velocity_limit = np.asarray(velocity_limit, dtype=float)
        n = len(self.lower)
        self.position = np.zeros(n)
        self.velocity = np.zeros(n)
        self.acceleration = np.zeros(n)

    def reset(self, position) -> None:
        """Start at ``position`` [rad], at rest (bumpless: the drives are already there)."""
        self.position = np.clip(np.asarray(position, dtype=float), self.lower, self.upper)
        self.velocity = np.zeros_like(self.position)
        self.acceleration = np.zeros_like(self.position)

    @staticmethod
    def inertia(cuff_jacobian, mass: float) -> np.ndarray:
        """Joint-space virtual inertia M [kg·m²] of a cuff mass ``mass`` [kg]."""
        M = mass * unit_inertia(cuff_jacobian)
        M[np.diag_indices_from(M)] += JOINT_INERTIA_FLOOR
        return M

    @staticmethod
    def damping(cuff_jacobian, damping: float) -> np.ndarray:
        """Joint-space virtual damping D [N·m·s/rad] of a cuff damping ``damping`` [N·s/m]."""
        return damping * unit_inertia(cuff_jacobian)

    def step(self, cuff_jacobian, mass: float, damping: float, torque, joint_torque, joint_damping,
             dt: float) -> None:
        """Advance the virtual dynamics by ``dt`` [s].

        Args:
            cuff_jacobian: 6xn Jacobian of the cuff at the current position.
            mass: Virtual mass m [kg].
            damping: Virtual damping d [N·s/m].
            torque: Joint torque of forces at the cuff [N·m], e.g. J^T W (acts on the cuff body).
            joint_torque: Joint-space torque [N·m] (walls, assistance ...), acting joint by joint.
            joint_damping: nxn damping [N·m·s/rad] of the joint-space terms, applied implicitly.
            dt: Time step [s].
        """
        M = self.inertia(cuff_jacobian, mass)
        D = self.damping(cuff_jacobian, damping)
        scale = M / np.diag(M)[None, :]  # M Λ
        A = M + dt * (D + scale @ np.asarray(joint_damping, dtype=float))
        b = M @ self.velocity + dt * (np.asarray(torque, dtype=float) + scale @ np.asarray(joint_torque, dtype=float))
        v = np.linalg.solve(A, b)
        v = np.clip(v, -self.velocity_limit, self.velocity_limit)
        q = self.position + dt * v
        clamped = (q < self.lower) | (q > self.upper)
        q = np.clip(q, self.lower, self.upper)
        v = np.where(clamped, 0.0, v)
        self.acceleration = (v - self.velocity) / dt
        self.position, self.velocity = q, v
