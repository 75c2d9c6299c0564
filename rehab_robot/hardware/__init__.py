"""Hardware backends of the rehabilitation arm, behind one interface."""

from rehab_robot.hardware.interface import HardwareInterface, JointCommand, JointSample
from rehab_robot.hardware.registry import (
    ENTRY_POINT_GROUP,
    available_backends,
    backend_class,
    backend_options,
    create_backend,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "HardwareInterface",
    "JointCommand",
    "JointSample",
    "available_backends",
    "backend_class",
    "backend_options",
    "create_backend",
]
