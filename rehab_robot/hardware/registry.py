"""Find hardware backends by name.

Built-in backends are listed in :data:`BUILTIN_BACKENDS`; other packages add theirs
through the entry-point group ``rehab_robot.hardware``::

    [project.entry-points."rehab_robot.hardware"]
    mydrive = "my_package.my_module:MyDrive"

A backend module is imported only when it is chosen.
"""

from __future__ import annotations

import importlib
import inspect
from importlib.metadata import entry_points

import yaml

from rehab_robot.errors import ConfigError, UnknownBackendError
from rehab_robot.hardware.interface import HardwareInterface

ENTRY_POINT_GROUP = "rehab_robot.hardware"

#: name -> "module:Class" of the backends that ship with rehab_robot.
BUILTIN_BACKENDS = {
    "sim": "rehab_robot.hardware.sim:SimulatedArm",
    "sim_faults": "rehab_robot.hardware.fault_injection:FaultInjectingArm",
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


def backend_options(text: str, cls: type, robot_description: str = "", loop_rate: float | None = None) -> dict:
    """Parse the ``hardware_options`` YAML mapping for backend class ``cls`` and check it.

    ``robot_description`` (the URDF path) and ``loop_rate`` (the driver's rate [Hz]) are
    added when the backend takes them and the options do not set them. The options are bound to the backend's signature (a misspelt
    option is refused) and checked by its ``check_options`` class method, which opens
    no device, so a bad value is refused before any process starts.

    Raises:
        ConfigError: if the text is not a YAML mapping, names options the backend lacks,
            or has a value the backend refuses.
    """
    try:
        options = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"hardware_options: not valid YAML: {exc}") from None
    if options is None:
        options = {}
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise ConfigError(f"hardware_options: {text!r} is not a mapping; a YAML mapping is required, such as '{{}}'")
    signature = inspect.signature(cls)
    for name, value in (("robot_description", robot_description), ("loop_rate", loop_rate)):
        if value and name not in options and name in signature.parameters:
            options[name] = value
    try:
        signature.bind(**options)
    except TypeError as exc:
        allowed = ", ".join(n for n in signature.parameters if n not in ("self", "args", "kwargs"))
        raise ConfigError(f"hardware_options for {cls.__name__}: {exc}; allowed options: {allowed}") from None
    cls.check_options(**options)
    return options


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
