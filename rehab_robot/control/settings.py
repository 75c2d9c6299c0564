"""The interaction settings of the motion controller: one table, checked once.

Every setting is a ROS parameter of ``motion_controller`` (contract A of issue 8, see
docs/control-modes.md): the session sets them before each exercise with one atomic
call, a researcher with ``ros2 param set``. :class:`InteractionSettings` holds one
consistent set; :meth:`InteractionSettings.updated` checks a change and returns the
new set, or raises ``ValueError`` naming the parameter and what is allowed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping

import numpy as np

#: The control modes, in the order the docs list them.
MODES = ("position", "active", "active_assist", "resistive", "isometric", "path_guidance")
#: Reactions to a spasm.
SPASM_REACTIONS = ("compliant_hold", "return_to_start")


def _in_range(low: float, high: float) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, float) and math.isfinite(v) and low <= v <= high


def _positive(v) -> bool:
    return isinstance(v, float) and math.isfinite(v) and v > 0.0


def _non_negative(v) -> bool:
    return isinstance(v, float) and math.isfinite(v) and v >= 0.0


@dataclass(frozen=True)
class _Spec:
    name: str  # ROS parameter name
    attribute: str
    description: str
    allowed: str
    check: Callable[[Any], bool]


_SPECS = (
    _Spec("mode", "mode", "control mode", f"one of {', '.join(MODES)}", lambda v: v in MODES),
    _Spec("admittance.mass", "admittance_mass", "virtual mass at the cuff [kg]", "0.5 to 20 kg", _in_range(0.5, 20.0)),
    _Spec("admittance.damping", "admittance_damping", "virtual damping at the cuff [N·s/m]", "2 to 200 N·s/m",
          _in_range(2.0, 200.0)),
    _Spec("admittance.max_speed", "admittance_max_speed", "largest joint speed of the setpoint in the interaction "
          "modes [rad/s] (the arm's own limit applies too); the session sets the patient's speed cap",
          "0.05 to 10 rad/s", _in_range(0.05, 10.0)),
    _Spec("weight_support", "weight_support", "fraction of the patient's limb weight compensated", "0 to 1",
          _in_range(0.0, 1.0)),
    _Spec("limb_masses", "limb_masses", "patient's upper arm and forearm+hand masses [kg]",
          "2 values [upper_arm, forearm_and_hand], each 0 to 20 kg",
          lambda v: len(v) == 2 and all(_in_range(0.0, 20.0)(x) for x in v)),
    _Spec("soft_wall.lower", "soft_wall_lower", "patient's ROM, lower bound per joint [rad]",
          "one value per joint, inside the URDF limits and below soft_wall.upper", lambda v: True),
    _Spec("soft_wall.upper", "soft_wall_upper", "patient's ROM, upper bound per joint [rad]",
          "one value per joint, inside the URDF limits and above soft_wall.lower", lambda v: True),
    _Spec("soft_wall.stiffness", "soft_wall_stiffness", "soft wall stiffness [N·m/rad]", "0 to 1000 N·m/rad",
          _in_range(0.0, 1000.0)),
    _Spec("soft_wall.damping", "soft_wall_damping", "soft wall damping [N·m·s/rad]", "0 to 100 N·m·s/rad",
          _in_range(0.0, 100.0)),
    _Spec("soft_wall.torque_limit", "soft_wall_torque_limit",
          "wall torque beyond which the controller makes a protective stop [N·m]", "> 0 N·m", _positive),
    _Spec("assist.gain", "assist_gain", "scale of the assistance", "0 to 1", _in_range(0.0, 1.0)),
    _Spec("assist.stiffness", "assist_stiffness", "assistance stiffness toward the reference at gain 1 [N·m/rad]",
          "0 to 500 N·m/rad", _in_range(0.0, 500.0)),
    _Spec("assist.damping", "assist_damping", "assistance damping [N·m·s/rad]", "0 to 50 N·m·s/rad",
          _in_range(0.0, 50.0)),
    _Spec("assist.deadband", "assist_deadband", "lag below which there is no assistance [rad]", "0 to 0.5 rad",
          _in_range(0.0, 0.5)),
    _Spec("assist.max_torque", "assist_max_torque", "bound of the assistance torque [N·m]", "0 to 40 N·m",
          _in_range(0.0, 40.0)),
    _Spec("assist.onset_timeout", "assist_onset_timeout",
          "time after the reference starts at which assistance begins without an onset [s]; 0: the reference's "
          "start is the onset", "0 to 10 s", _in_range(0.0, 10.0)),
    _Spec("resistive.damping", "resistive_damping", "viscous resistance [N·m·s/rad]", "0 to 50 N·m·s/rad",
          _in_range(0.0, 50.0)),
    _Spec("resistive.stiffness", "resistive_stiffness", "elastic resistance toward the start posture [N·m/rad]",
          "0 to 200 N·m/rad", _in_range(0.0, 200.0)),
    _Spec("resistive.max_torque", "resistive_max_torque", "bound of the resistance torque [N·m]", "0 to 40 N·m",
          _in_range(0.0, 40.0)),
    _Spec("path_guidance.waypoints", "path_waypoints",
          "the channel's path: flattened x, y, z of the cuff in base_link [m]",
          "x, y, z of 2 or more points (a multiple of 3 values), each within 1 m of the shoulder, "
          "consecutive points at least 1 cm apart",
          lambda v: True),
    _Spec("path_guidance.width", "path_width", "half-width of the free channel [m]", "0 to 0.2 m",
          _in_range(0.0, 0.2)),
    _Spec("path_guidance.stiffness", "path_stiffness", "stiffness across the path, outside the channel [N/m]",
          "0 to 5000 N/m", _in_range(0.0, 5000.0)),
    _Spec("path_guidance.damping", "path_damping", "damping across the path [N·s/m]", "0 to 200 N·s/m",
          _in_range(0.0, 200.0)),
    _Spec("spasm.force_threshold", "spasm_force_threshold", "cuff force against the motion that is a spasm [N]",
          "5 to 200 N", _in_range(5.0, 200.0)),
    _Spec("spasm.force_rate", "spasm_force_rate", "a cuff force rising faster than this is a spasm [N/s]",
          "50 to 10000 N/s", _in_range(50.0, 10000.0)),
    _Spec("spasm.reaction", "spasm_reaction", "reaction to a spasm", f"one of {', '.join(SPASM_REACTIONS)}",
          lambda v: v in SPASM_REACTIONS),
    _Spec("spasm.return_speed", "spasm_return_speed", "joint speed of return_to_start [rad/s]", "0.05 to 1 rad/s",
          _in_range(0.05, 1.0)),
)
_BY_NAME = {spec.name: spec for spec in _SPECS}


@dataclass(frozen=True)
class InteractionSettings:
    """One checked set of the controller's interaction parameters (units in the field names' docs).

    Build the defaults with :meth:`defaults`; change them only through :meth:`updated`.
    Array fields are tuples, so a settings object can be shared between threads.
    """

    mode: str
    admittance_mass: float
    admittance_damping: float
    admittance_max_speed: float
    weight_support: float
    limb_masses: tuple[float, float]
    soft_wall_lower: tuple[float, ...]
    soft_wall_upper: tuple[float, ...]
    soft_wall_stiffness: float
    soft_wall_damping: float
    soft_wall_torque_limit: float
    assist_gain: float
    assist_stiffness: float
    assist_damping: float
    assist_deadband: float
    assist_max_torque: float
    assist_onset_timeout: float
    resistive_damping: float
    resistive_stiffness: float
    resistive_max_torque: float
    path_waypoints: tuple[float, ...]
    path_width: float
    path_stiffness: float
    path_damping: float
    spasm_force_threshold: float
    spasm_force_rate: float
    spasm_reaction: str
    spasm_return_speed: float
    #: URDF joint limits [rad]: the soft walls must lie inside them (not a parameter).
    joint_lower: tuple[float, ...] = ()
    joint_upper: tuple[float, ...] = ()

    @classmethod
    def defaults(cls, lower, upper) -> "InteractionSettings":
        """Return today's behaviour (``position`` mode) with soft walls at the URDF limits [rad]."""
        lower, upper = tuple(float(x) for x in lower), tuple(float(x) for x in upper)
        return cls(
            mode="position", admittance_mass=2.0, admittance_damping=10.0, admittance_max_speed=10.0,
            weight_support=0.0,
            limb_masses=(0.0, 0.0), soft_wall_lower=lower, soft_wall_upper=upper, soft_wall_stiffness=50.0,
            soft_wall_damping=5.0, soft_wall_torque_limit=15.0, assist_gain=1.0, assist_stiffness=100.0,
            assist_damping=4.0, assist_deadband=0.05, assist_max_torque=10.0, assist_onset_timeout=1.0,
            resistive_damping=2.0,
            resistive_stiffness=0.0, resistive_max_torque=10.0, path_waypoints=(), path_width=0.02,
            path_stiffness=500.0, path_damping=20.0, spasm_force_threshold=30.0, spasm_force_rate=300.0,
            spasm_reaction="compliant_hold", spasm_return_speed=0.2, joint_lower=lower, joint_upper=upper,
        )

    @staticmethod
    def parameter_names() -> tuple[str, ...]:
        """ROS names of every setting, in the order of the contract's table."""
        return tuple(spec.name for spec in _SPECS)

    @staticmethod
    def describe(name: str) -> tuple[str, str]:
        """Return (description, allowed values) of the ROS parameter ``name``."""
        spec = _BY_NAME[name]
        return spec.description, spec.allowed

    def value(self, name: str):
        """Return the value of the ROS parameter ``name`` (lists for arrays)."""
        value = getattr(self, _BY_NAME[name].attribute)
        return list(value) if isinstance(value, tuple) else value

    def updated(self, changes: Mapping[str, Any]) -> "InteractionSettings":
        """Return these settings with ``changes`` (ROS name -> value) applied, all checked.

        Raises:
            ValueError: one line naming the parameter, the value and what is allowed;
                nothing is changed.
        """
        new = {}
        for name, value in changes.items():
            spec = _BY_NAME.get(name)
            if spec is None:
                raise ValueError(f"unknown interaction parameter {name!r}")
            current = getattr(self, spec.attribute)
            value = _coerce(value, current)
            if value is None or not spec.check(value):
                raise ValueError(f"parameter {name!r} = {_show(changes[name])} is not allowed; allowed: {spec.allowed}")
            new[spec.attribute] = value
        result = replace(self, **new)
        result._check_combined()
        return result

    def _check_combined(self) -> None:
        n = len(self.joint_lower)
        lower, upper = np.array(self.soft_wall_lower), np.array(self.soft_wall_upper)
        for name, values in (("soft_wall.lower", lower), ("soft_wall.upper", upper)):
            if values.shape != (n,) or not np.all(np.isfinite(values)):
                raise ValueError(f"parameter {name!r} = {values.tolist()} is not allowed; allowed: {n} finite "
                                 f"values [rad], one per joint")
        outside = (lower < np.array(self.joint_lower) - 1e-9) | (upper > np.array(self.joint_upper) + 1e-9)
        if np.any(outside):
            j = int(np.argmax(outside))
            raise ValueError(f"soft wall of joint {j} [{lower[j]:.3f}, {upper[j]:.3f}] rad is outside the URDF "
                             f"limits [{self.joint_lower[j]:.3f}, {self.joint_upper[j]:.3f}] rad; allowed: "
                             "soft_wall.lower/upper inside the URDF limits")
        if np.any(lower >= upper):
            j = int(np.argmax(lower >= upper))
            raise ValueError(f"soft_wall.lower {lower[j]:.3f} rad is not below soft_wall.upper {upper[j]:.3f} rad "
                             f"for joint {j}; allowed: lower < upper")
        points = self.waypoints
        spec = _BY_NAME["path_guidance.waypoints"]
        if len(self.path_waypoints) % 3 != 0 or not np.all(np.isfinite(self.path_waypoints)) or (
                len(points) and (np.any(np.linalg.norm(points, axis=1) > 1.0)
                                 or np.any(np.linalg.norm(np.diff(points, axis=0), axis=1) < 0.01))):
            raise ValueError(f"parameter 'path_guidance.waypoints' = {list(self.path_waypoints)} is not allowed; "
                             f"allowed: {spec.allowed}")
        if self.mode == "path_guidance" and len(points) < 2:
            raise ValueError("mode 'path_guidance' needs 'path_guidance.waypoints': x, y, z of 2 or more cuff "
                             "points in base_link [m]")

    @property
    def waypoints(self) -> np.ndarray:
        """The channel's path as (k, 3) cuff positions in ``base_link`` [m] (k may be 0)."""
        return np.array(self.path_waypoints, dtype=float).reshape(-1, 3) if len(self.path_waypoints) % 3 == 0 \
            else np.zeros((0, 3))


def _coerce(value, current):
    """Return ``value`` in the type of ``current`` (ints accepted for floats), or None."""
    if isinstance(current, str):
        return value if isinstance(value, str) else None
    if isinstance(current, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return float(value)
    if isinstance(current, tuple):
        try:
            items = list(value)
        except TypeError:
            return None
        if any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in items):
            return None
        return tuple(float(x) for x in items)
    return None


def _show(value) -> str:
    return repr(list(value)) if isinstance(value, (tuple, list, np.ndarray)) else repr(value)


__all__ = ["InteractionSettings", "MODES", "SPASM_REACTIONS"]
