"""ArmModel: the rigid-body model of the arm, loaded from its URDF with pinocchio.

One place answers every kinematic and dynamic question about the robot: frame
poses, Jacobians, gravity, inverse and forward dynamics, and the joint limits.
It models the robot only (no patient limb, no joint friction).

An ``ArmModel`` owns one ``pinocchio.Data`` workspace, so a single instance must
not be used from two threads at once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pinocchio as pin

from rehab_robot import resources
from rehab_robot.errors import ConfigError

_REFERENCES = {
    "local_world_aligned": pin.ReferenceFrame.LOCAL_WORLD_ALIGNED,
    "local": pin.ReferenceFrame.LOCAL,
}


class ArmModel:
    """Kinematics, dynamics and limits of the arm.

    Attributes:
        joint_names: Names of the actuated joints, in URDF chain order.
        nq: Number of joints.
        lower: Lower position limits [rad].
        upper: Upper position limits [rad].
        velocity_limit: Velocity limits [rad/s].
        effort_limit: Effort (torque) limits [N·m].
        pin_model: The pinocchio model.
        pin_data: The pinocchio workspace used by the methods below.
        path: The URDF file this model was loaded from.
    """

    def __init__(self, pin_model: pin.Model, path: Path | None = None):
        """Wrap a pinocchio model whose joints are all 1-DoF and limited.

        Raises:
            ConfigError: if a joint has several DoF or lacks finite limits.
        """
        source = str(path) if path is not None else "pinocchio model"
        if pin_model.nq != pin_model.nv or pin_model.nq != pin_model.njoints - 1:
            raise ConfigError(
                f"{source}: every joint must be revolute or prismatic with limits "
                "(continuous and floating joints are not allowed)"
            )
        self.pin_model = pin_model
        self.pin_data = pin_model.createData()
        self.path = path
        self.joint_names: tuple[str, ...] = tuple(pin_model.names[1:])
        self.nq: int = pin_model.nq
        self.lower = np.array(pin_model.lowerPositionLimit, dtype=float)
        self.upper = np.array(pin_model.upperPositionLimit, dtype=float)
        self.velocity_limit = np.array(pin_model.velocityLimit, dtype=float)
        self.effort_limit = np.array(pin_model.effortLimit, dtype=float)
        for i, name in enumerate(self.joint_names):
            if not (np.isfinite(self.lower[i]) and np.isfinite(self.upper[i])
                    and self.lower[i] < self.upper[i]):
                raise ConfigError(
                    f"{source}: joint {name!r} needs finite <limit lower/upper> with lower < upper"
                )
            if not (self.velocity_limit[i] > 0 and self.effort_limit[i] > 0):
                raise ConfigError(
                    f"{source}: joint {name!r} needs <limit velocity effort> greater than 0"
                )
        self._frame_ids = {frame.name: i for i, frame in enumerate(pin_model.frames)}

    @classmethod
    def from_urdf(cls, path: str | Path | None = None) -> "ArmModel":
        """Load the arm from a URDF file.

        Args:
            path: URDF file; ``None`` loads the shipped ``urdf/rehab_arm.urdf``.

        Returns:
            The model; every array attribute is in URDF joint order.

        Raises:
            ConfigError: if the file is missing, unreadable or not a valid URDF.
        """
        path = Path(path) if path is not None else resources.default_urdf()
        if not path.is_file():
            raise ConfigError(f"robot description {path}: file not found")
        try:
            pin_model = pin.buildModelFromUrdf(str(path))
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(f"robot description {path}: not a valid URDF ({exc})") from exc
        return cls(pin_model, path)

    # -- limits --------------------------------------------------------------

    def limits_by_joint(self) -> dict[str, tuple[float, float]]:
        """Position limits per joint.

        Returns:
            Joint name -> (lower, upper) [rad], in joint order.
        """
        return {
            name: (float(lo), float(hi))
            for name, lo, hi in zip(self.joint_names, self.lower, self.upper)
        }

    # -- kinematics ----------------------------------------------------------

    def frame_id(self, frame: str) -> int:
        """Return the pinocchio id of the frame (link or joint) named ``frame``.

        Raises:
            ValueError: if the model has no such frame.
        """
        try:
            return self._frame_ids[frame]
        except KeyError:
            raise ValueError(
                f"unknown frame {frame!r}; available: {', '.join(sorted(self._frame_ids))}"
            ) from None

    def forward_kinematics(self, q, frame: str = "cuff_link") -> np.ndarray:
        """Pose of ``frame`` in ``base_link``.

        Args:
            q: Joint positions [rad].
            frame: Name of a link or joint frame.

        Returns:
            4x4 homogeneous transform, translation in [m].
        """
        fid = self.frame_id(frame)
        pin.framesForwardKinematics(self.pin_model, self.pin_data, self._vec(q, "q"))
        return self.pin_data.oMf[fid].homogeneous.copy()

    def frame_jacobian(
        self, q, frame: str = "cuff_link", reference: str = "local_world_aligned"
    ) -> np.ndarray:
        """Jacobian of ``frame``: maps joint velocities to the frame's twist.

        Args:
            q: Joint positions [rad].
            frame: Name of a link or joint frame.
            reference: ``"local_world_aligned"`` (origin of the frame, axes of
                ``base_link``) or ``"local"`` (axes of the frame itself).

        Returns:
            6xn matrix: linear velocity [m/s] in rows 0-2, angular [rad/s] in
            rows 3-5, per unit joint velocity [rad/s].
        """
        if reference not in _REFERENCES:
            raise ValueError(f"reference must be one of {sorted(_REFERENCES)}, not {reference!r}")
        fid = self.frame_id(frame)
        return pin.computeFrameJacobian(
            self.pin_model, self.pin_data, self._vec(q, "q"), fid, _REFERENCES[reference]
        ).copy()

    # -- dynamics ------------------------------------------------------------

    def gravity_torques(self, q) -> np.ndarray:
        """Torques that hold the arm still against gravity.

        Args:
            q: Joint positions [rad].

        Returns:
            Joint torques [N·m], shape (n,).
        """
        return pin.computeGeneralizedGravity(
            self.pin_model, self.pin_data, self._vec(q, "q")
        ).copy()

    def inverse_dynamics(self, q, v, a) -> np.ndarray:
        """Torques that produce accelerations ``a`` (RNEA, gravity included).

        Args:
            q: Joint positions [rad].
            v: Joint velocities [rad/s].
            a: Joint accelerations [rad/s²].

        Returns:
            Joint torques [N·m], shape (n,).
        """
        return pin.rnea(
            self.pin_model, self.pin_data, self._vec(q, "q"), self._vec(v, "v"), self._vec(a, "a")
        ).copy()

    def mass_matrix(self, q) -> np.ndarray:
        """Joint-space inertia matrix M(q) (CRBA).

        Args:
            q: Joint positions [rad].

        Returns:
            Symmetric positive-definite nxn matrix [kg·m²].
        """
        M = pin.crba(self.pin_model, self.pin_data, self._vec(q, "q"))
        # Some pinocchio versions fill only the upper triangle.
        return np.triu(M) + np.triu(M, 1).T

    def forward_dynamics(self, q, v, tau) -> np.ndarray:
        """Accelerations of the free arm under joint torques ``tau`` (ABA, gravity included).

        Args:
            q: Joint positions [rad].
            v: Joint velocities [rad/s].
            tau: Joint torques [N·m].

        Returns:
            Joint accelerations [rad/s²], shape (n,).
        """
        return pin.aba(
            self.pin_model, self.pin_data, self._vec(q, "q"), self._vec(v, "v"),
            self._vec(tau, "tau"),
        ).copy()

    # -- helpers -------------------------------------------------------------

    def _vec(self, x, name: str) -> np.ndarray:
        arr = np.asarray(x, dtype=float)
        if arr.shape != (self.nq,):
            raise ValueError(f"{name} must have {self.nq} elements, got shape {arr.shape}")
        return arr
