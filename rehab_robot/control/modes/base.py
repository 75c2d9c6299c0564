"""The one small interface of the control modes: state and wrench in, command or effort out."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar, NamedTuple, Optional

import numpy as np

from rehab_robot.control.kinematics import CuffKinematics
from rehab_robot.control.settings import InteractionSettings


@dataclass(frozen=True)
class InteractionState:
    """One measurement, as the interaction loop sees it.

    Attributes:
        t: Time of the measurement [s].
        q: Joint positions [rad].
        v: Joint velocities [rad/s].
        wrench: Force [N] and torque [N·m] the patient applies to the cuff, in
            ``ft_sensor_link`` (6 values), or None when there is no reading.
    """

    t: float
    q: np.ndarray
    v: np.ndarray
    wrench: Optional[np.ndarray]


@dataclass(frozen=True)
class Reference:
    """The reference motion (from ``joint_trajectory``) sampled now, for every joint.

    Attributes:
        position: Reference position [rad].
        velocity: Reference velocity [rad/s].
        acceleration: Reference acceleration [rad/s²].
        start: Its first point [rad] (the start posture).
        end: Its last point [rad].
        elapsed: Time since it started [s].
        duration: Its length [s].
    """

    position: np.ndarray
    velocity: np.ndarray
    acceleration: np.ndarray
    start: np.ndarray
    end: np.ndarray
    elapsed: float
    duration: float

    @property
    def moving(self) -> bool:
        """True between the reference's start and end."""
        return 0.0 <= self.elapsed < self.duration


class Effort(NamedTuple):
    """A mode's contribution to the admittance's virtual dynamics.

    Attributes:
        torque: Joint torque [N·m].
        damping: nxn joint damping [N·m·s/rad], applied implicitly (total torque is
            ``torque - damping @ v``).
        at_cuff: True for the torque of a force at the cuff (it acts on the whole virtual
            cuff body), False for joint-space torque (it acts joint by joint).
    """

    torque: np.ndarray
    damping: np.ndarray
    at_cuff: bool = False


class ControlMode(abc.ABC):
    """One control mode.

    A mode either shapes the admittance (``admittance = True``: :meth:`effort` adds
    joint torque and damping to the cuff's virtual dynamics, the patient moves the arm)
    or sets the drives' setpoint itself (:meth:`setpoint`, the arm is position
    controlled). It keeps no state that outlives :meth:`reset`.

    Args:
        settings: The controller's interaction settings (replaced by :meth:`configure`).
        n: Number of joints.
    """

    #: The ``mode`` parameter value of this mode.
    name: ClassVar[str]
    #: True when the patient moves the arm through the admittance.
    admittance: ClassVar[bool] = True

    def __init__(self, settings: InteractionSettings, n: int) -> None:
        self.settings = settings
        self.n = n

    def configure(self, settings: InteractionSettings) -> None:
        """Take new gains (the mode itself is unchanged, e.g. ``assist.gain`` per repetition)."""
        self.settings = settings

    def reset(self, state: InteractionState, setpoint: np.ndarray, reference: Optional[Reference]) -> None:
        """Start (again) from ``setpoint`` [rad]: on a mode switch and on every re-enable."""

    def effort(self, state: InteractionState, kinematics: CuffKinematics, velocity: np.ndarray,
               reference: Optional[Reference]) -> Effort:
        """Torque and damping this mode adds to the admittance (admittance modes).

        Args:
            state: The measurement.
            kinematics: The arm at ``state.q``.
            velocity: The admittance's setpoint velocity [rad/s] (what the damping acts on).
            reference: The reference now, or None.
        """
        return self.no_effort()

    def setpoint(self, state: InteractionState, reference: Optional[Reference]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Position [rad], velocity [rad/s], acceleration [rad/s²] for the drives (non-admittance modes)."""
        raise NotImplementedError(f"mode {self.name} is an admittance mode")

    def no_effort(self) -> Effort:
        """Zero torque and damping."""
        return Effort(np.zeros(self.n), np.zeros((self.n, self.n)))

    def values(self) -> dict[str, str]:
        """The mode's own diagnostic values (e.g. the assistance torque)."""
        return {}


def bounded(torque, limit: float) -> tuple[np.ndarray, bool]:
    """Return ``torque`` [N·m] with every joint clamped to ±``limit``, and whether any was."""
    torque = np.asarray(torque, dtype=float)
    clamped = np.clip(torque, -limit, limit)
    return clamped, bool(np.any(clamped != torque))
