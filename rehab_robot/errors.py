"""Exceptions raised for user errors: they are printed as one clear line, never a traceback."""

from __future__ import annotations


class RehabRobotError(Exception):
    """Base class of every error rehab_robot reports to a user."""


class ConfigError(RehabRobotError):
    """A file, parameter or argument given by the user is missing or invalid.

    The message names the source (file or parameter), the field and what is allowed.
    """


class UnknownBackendError(ConfigError):
    """The requested hardware backend is not registered."""


class HardwareError(RehabRobotError):
    """The hardware failed: a drive fault, bad bytes from the wire, a lost device.

    A backend raises it from any :class:`~rehab_robot.hardware.HardwareInterface`
    method. The driver then enters its FAULT state: the drives stop and hold (or are
    left disabled when the device is gone), the reason goes to ``/diagnostics`` and the
    session report, and motion is refused until ``safety/reset`` has made the backend
    clear the fault (:meth:`~rehab_robot.hardware.HardwareInterface.clear_fault`).

    Args:
        reason: What went wrong, in the device's terms (e.g. an EMCY code and its text).
        joint: The joint whose drive failed, or ``None`` for the whole device or bus.
        device_lost: True when the device no longer answers (unplugged, port closed,
            bus-off): the driver cannot command a hold and leaves the drives disabled.
    """

    def __init__(self, reason: str, joint: str | None = None, device_lost: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.joint = joint
        self.device_lost = device_lost

    def __str__(self) -> str:
        return f"{self.joint}: {self.reason}" if self.joint else self.reason
