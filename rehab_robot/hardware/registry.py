"""Find hardware backends by name.

Built-in backends are listed in :data:`BUILTIN_BACKENDS`; other packages add theirs
through the entry-point group ``rehab_robot.hardware``::

    [project.entry-points."rehab_robot.hardware"]
    mydrive = "my_package.my_module:MyDrive"

A backend module is imported only when it is chosen.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from rehab_robot.errors import ConfigError, UnknownBackendError
from rehab_robot.hardware.interface import HardwareInterface

ENTRY_POINT_GROUP = "rehab_robot.hardware"

#: name -> "module:Class" of the backends that ship with rehab_robot.
BUILTIN_BACKENDS = {
    "sim": "rehab_robot.hardware.sim:SimulatedArm",
}


def available_backends() -> dict[str, str]:
    """Return every known backend name mapped to its ``module:Class`` target."""
    backends = dict(BUILTIN_BACKENDS)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        backends.setdefault(entry.name, entry.value)
    return backends


def backend_class(name: str) -> type[HardwareInterface]:
    """Import and return the backend class registered as ``name``.

    Raises:
        UnknownBackendError: if no backend of that name is registered.
        ConfigError: if the registered target cannot be imported or is not a backend.
    """
    backends = available_backends()
    if name not in backends:
        raise UnknownBackendError(
            f"unknown hardware backend {name!r}; available: {', '.join(sorted(backends))}"
        )
    target = backends[name]
    module_name, _, class_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"hardware backend {name!r} ({target}) cannot be loaded: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, HardwareInterface)):
        raise ConfigError(f"hardware backend {name!r} ({target}) is not a HardwareInterface")
    return cls


def create_backend(name: str, **options) -> HardwareInterface:
    """Construct the backend registered as ``name`` with keyword ``options``.

    Raises:
        UnknownBackendError: if no backend of that name is registered.
        ConfigError: if the options are refused by the backend.
    """
    cls = backend_class(name)
    try:
        return cls(**options)
    except TypeError as exc:
        raise ConfigError(f"hardware backend {name!r}: bad hardware_options: {exc}") from exc
