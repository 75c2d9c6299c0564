"""Exceptions raised for user errors: they are printed as one clear line, never a traceback."""


class RehabRobotError(Exception):
    """Base class of every error rehab_robot reports to a user."""


class ConfigError(RehabRobotError):
    """A file, parameter or argument given by the user is missing or invalid.

    The message names the source (file or parameter), the field and what is allowed.
    """


class UnknownBackendError(ConfigError):
    """The requested hardware backend is not registered."""


class HardwareError(RehabRobotError):
    """The hardware backend failed (lost connection, bad bytes from the wire, fault)."""
