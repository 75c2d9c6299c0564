"""The one interface every hardware backend implements.

A backend is a motor drive (real or simulated) for the arm's joints. Each joint's
drive runs its own inner loop: given a setpoint (position, velocity, feed-forward
torque) it applies

    tau = effort + stiffness * (position - q) + damping * (velocity - v)

clamped to the joint's effort limit. The driver node calls the backend from its
control loop: ``read()`` every cycle, then ``write()`` when motion is permitted or
``disable()`` when it is not.

Safety contract:
  * A backend starts *disabled*: it holds its position and ignores ``write()``.
  * ``disable()`` makes the drive quick-stop to rest and then hold its position
    against gravity. It must be safe to call at any time, any number of times.
  * ``enable()`` lets ``write()`` setpoints take effect. Until the first
    ``write()`` after ``enable()`` the drive keeps holding.
  * ``close()`` disables and releases the device; it is idempotent.

Fault contract:
  * Any method may raise :class:`~rehab_robot.errors.HardwareError` naming the joint
    (if one) and the reason; ``device_lost=True`` when the device no longer answers.
    The driver then holds (calls ``disable()``, unless the device is lost), reports
    the reason, and calls nothing but ``read()``, ``disable()``, ``diagnostics()`` and
    ``close()`` until the operator's ``safety/reset`` makes it call ``clear_fault()``.
  * ``read()`` and ``write()`` together must return within ``cycle_budget`` [s]. A
    cycle over budget is counted; ``BUDGET_FAULT_CYCLES`` in a row are a fault while the
    drives follow commands, ``BUDGET_FAULT_CYCLES_HOLDING`` while they hold.
  * ``close()`` is always called, also after a fault.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np

#: Cycles in a row over ``cycle_budget`` that the driver treats as a fault while the drives
#: follow commands: late setpoints move the arm late.
BUDGET_FAULT_CYCLES = 3
#: The same while the drives hold, where nothing depends on the cycle's timing but the reading:
#: a short burst (the other processes of the graph starting on a busy 2-core PC made three
#: 5.7 ms cycles of a 4 ms CANopen loop, and latched a stop before the session began) is
#: counted and logged; one that lasts is still a fault (25 cycles: 50 ms at 500 Hz).
BUDGET_FAULT_CYCLES_HOLDING = 25


@dataclass(frozen=True)
class JointSample:
    """One measurement of the arm.

    Attributes:
        stamp: Time of the measurement in [s] on the backend's clock.
        position: Joint positions in [rad].
        velocity: Joint velocities in [rad/s].
        effort: Joint torques applied by the motors in [N·m].
        wrench: Force [N] (first 3) and torque [N·m] (last 3) that the patient
            applies to the cuff, expressed in the ``ft_sensor_link`` frame.
        at_rest: True when every joint velocity is below the backend's rest threshold.
    """

    stamp: float
    position: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray
    wrench: np.ndarray = field(default_factory=lambda: np.zeros(6))
    at_rest: bool = False


@dataclass(frozen=True)
class JointCommand:
    """A drive setpoint for every joint, in joint order.

    Attributes:
        position: Target joint positions in [rad].
        velocity: Target joint velocities in [rad/s].
        effort: Feed-forward joint torques in [N·m] (e.g. gravity compensation).
    """

    position: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray

    def checked_fields(self, joint_names) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return position [rad], velocity [rad/s] and effort [N·m] as float arrays.

        Raises:
            ValueError: naming the field, if one does not have one value per joint of
                ``joint_names`` or holds NaN/inf.
        """
        n = len(joint_names)
        fields = []
        for name in ("position", "velocity", "effort"):
            value = np.asarray(getattr(self, name), dtype=float)
            if value.shape != (n,):
                raise ValueError(f"command.{name} must have {n} elements "
                                 f"({', '.join(joint_names)}), got shape {value.shape}")
            if not np.isfinite(value).all():
                raise ValueError(f"command.{name} holds NaN or inf: {value.tolist()}")
            fields.append(value)
        return fields[0], fields[1], fields[2]

    def is_finite(self) -> bool:
        """Return True when no field holds NaN or inf."""
        return bool(
            np.all(np.isfinite(self.position))
            and np.all(np.isfinite(self.velocity))
            and np.all(np.isfinite(self.effort))
        )


class HardwareInterface(abc.ABC):
    """Abstract motor drive of the rehabilitation arm.

    Subclasses are registered under the entry-point group ``rehab_robot.hardware``
    and constructed with keyword arguments taken from the driver node's
    ``hardware_options`` parameter (a YAML mapping).
    """

    #: Joint names in the order of every array this backend reads and writes.
    joint_names: tuple[str, ...]

    #: Longest time [s] ``read()`` plus ``write()`` may take in one driver cycle.
    #: ``None``: half the driver's loop period. Set it from the device's transaction
    #: time (e.g. a serial round trip at the configured baud rate) plus a margin.
    cycle_budget: float | None = None

    @classmethod
    def check_options(cls, **options) -> None:
        """Validate ``hardware_options`` without opening any device.

        Called by ``rehab-robot`` before any node starts, so a wrong option is one line
        and exit status 2 before anything moves. The options have already been bound
        to the constructor's signature (unknown names are refused). Override it to check
        values: files that must exist, ranges, joint names.

        Raises:
            ConfigError: naming the option and what is allowed.
        """

    @abc.abstractmethod
    def read(self) -> JointSample:
        """Return the latest measurement of every joint and the F/T sensor."""

    @abc.abstractmethod
    def write(self, command: JointCommand) -> None:
        """Send a setpoint to the drives. Ignored while disabled.

        Raises:
            ValueError: if the command has the wrong size or holds NaN/inf.
        """

    @abc.abstractmethod
    def enable(self) -> None:
        """Let subsequent ``write()`` setpoints move the arm."""

    @abc.abstractmethod
    def disable(self) -> None:
        """Quick-stop every joint to rest, then hold position against gravity."""

    @property
    @abc.abstractmethod
    def enabled(self) -> bool:
        """True while ``write()`` setpoints take effect."""

    def clear_fault(self) -> None:
        """Clear a fault reported earlier, reconnecting where the device was lost.

        Called only on the operator's ``safety/reset``, never automatically. The drives
        must come back *disabled* (holding). Default: nothing to clear.

        Raises:
            HardwareError: if the fault is still present (the driver stays in FAULT).
        """

    def diagnostics(self) -> dict[str, str]:
        """Return the backend's own diagnostic values, e.g. temperatures [°C], bus state,
        error counters. Shown on ``/diagnostics`` under the driver. Must not block."""
        return {}

    def close(self) -> None:
        """Disable the drives and release the device. Safe to call twice."""
        self.disable()

    def __enter__(self) -> "HardwareInterface":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
