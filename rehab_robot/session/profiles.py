"""Patient profile and exercise protocol files: schema, validation, dataclasses.

A clinician starts a session with two YAML files (see ``docs/file-formats.md``):

* a **patient profile** (top-level key ``patient``): pseudonymous id, treated side,
  range-of-motion (ROM) limits per joint, speed and force caps;
* an **exercise protocol** (top-level key ``protocol``): a passive range-of-motion
  exercise, i.e. ``repetitions`` minimum-jerk moves of one joint between two angles.

Each file is checked in three stages, and the first problem found is raised as
:class:`~rehab_robot.errors.ConfigError` with one message naming the file, the
field path (``patient.rom_limits.elbow_flexion[1]``), its line and what is allowed:

1. YAML: readable UTF-8 text, well-formed, a single document, no duplicate keys,
   no aliases;
2. structure: a Draft 2020-12 JSON Schema (:data:`PATIENT_SCHEMA`,
   :data:`PROTOCOL_SCHEMA`), ``additionalProperties: false`` everywhere, every
   number finite;
3. meaning: ROM inside the arm's joint limits, protocol inside the patient's ROM,
   peak speed below the patient's and the arm's limits, session length capped.

All angles are in [rad], durations in [s], speeds in [rad/s], forces in [N].
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import difflib
import math
import os
import re
import types
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional, Sequence, Union

import jsonschema
import yaml

from rehab_robot import JOINT_NAMES
from rehab_robot.control.trajectory import MIN_JERK_PEAK_SPEED_RATIO
from rehab_robot.errors import ConfigError

__all__ = [
    "PatientProfile",
    "ExerciseProtocol",
    "PATIENT_SCHEMA",
    "PROTOCOL_SCHEMA",
    "load_patient",
    "load_protocol",
    "parse_patient",
    "parse_protocol",
]

#: Default cap on any joint speed of an exercise [rad/s].
DEFAULT_MAX_VELOCITY = 1.0
#: Highest ``max_velocity`` a profile may ask for [rad/s]: above any passive ROM speed.
MAX_VELOCITY_CEILING = 3.0
#: Default safety limit on the cuff force [N].
DEFAULT_MAX_INTERACTION_FORCE = 40.0
#: Highest ``max_interaction_force`` a profile may ask for [N]; a typo must not
#: switch the force protection off.
MAX_INTERACTION_FORCE_CEILING = 100.0
#: Most repetitions in one protocol.
MAX_REPETITIONS = 200
#: Longest session a protocol may plan [s].
MAX_SESSION_DURATION = 3600.0
#: Shortest one-way move [s]: faster is not a passive exercise and the controller
#: needs several cycles to follow it.
MIN_MOVEMENT_DURATION = 0.5
#: Highest torque a profile may allow an exercise [N·m] (a typo must not switch the bound off).
MAX_JOINT_TORQUE_CEILING = 50.0
#: Default bound on the torques an exercise may ask of or apply to a patient's joint [N·m].
DEFAULT_MAX_JOINT_TORQUE = 10.0
#: Largest file accepted [bytes]; real files are well under 2 KiB.
MAX_FILE_SIZE = 64 * 1024

_TAU = 2.0 * math.pi
_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# Python's "$" also matches before a final newline, hence the fullmatch in _check_code too.
_CODE_PATTERN = f"^{_CODE.pattern}$"
_CODE_HELP = "1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit, no spaces"

# "x-..." keys are annotations for the error messages (unit, help text, values planned
# but not supported yet); validators ignore them.
_ANGLE = {"type": "number", "minimum": -_TAU, "maximum": _TAU, "x-unit": "rad"}
_ROM_PAIR = {
    "type": "array",
    "items": _ANGLE,
    "minItems": 2,
    "maxItems": 2,
    "x-help": "a list [lower, upper] of two angles in rad",
}

#: JSON Schema (Draft 2020-12) of a patient profile file.
PATIENT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "rehab_robot patient profile",
    "type": "object",
    "required": ["patient"],
    "additionalProperties": False,
    "properties": {
        "patient": {
            "type": "object",
            "required": ["id", "side", "rom_limits"],
            "additionalProperties": False,
            "properties": {
                "id": {
                    "type": "string",
                    "pattern": _CODE_PATTERN,
                    "x-help": _CODE_HELP + " (a pseudonymous code, never a name)",
                },
                "side": {
                    "type": "string",
                    "enum": ["right"],
                    "x-not-yet": {"left": "the arm model is a right arm"},
                },
                "rom_limits": {
                    "type": "object",
                    "minProperties": 1,
                    "additionalProperties": False,
                    "properties": {joint: _ROM_PAIR for joint in JOINT_NAMES},
                    "x-item": "joint",
                },
                "max_velocity": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": MAX_VELOCITY_CEILING,
                    "x-unit": "rad/s",
                },
                "max_interaction_force": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": MAX_INTERACTION_FORCE_CEILING,
                    "x-unit": "N",
                },
                "limb_masses": {
                    "type": "array",
                    "items": {"type": "number", "minimum": 0, "maximum": 20, "x-unit": "kg"},
                    "minItems": 2,
                    "maxItems": 2,
                    "x-help": "a list [upper_arm, forearm_and_hand] of two masses in kg",
                },
                "max_joint_torque": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": MAX_JOINT_TORQUE_CEILING,
                    "x-unit": "N·m",
                },
                "notes": {"type": "string", "maxLength": 2000},
            },
        }
    },
}

_DURATION_MAX = {"maximum": MAX_SESSION_DURATION, "x-unit": "s"}

#: The exercise types a protocol may name (docs/exercises.md).
EXERCISE_TYPES = (
    "passive_rom", "active", "active_assist", "assist_as_needed", "resistive", "isometric", "path_guidance",
)
#: Types in which the patient moves and the session waits for targets to be reached.
ACTIVE_TYPES = ("active", "active_assist", "assist_as_needed", "resistive", "path_guidance")
#: Spasm reactions the controller offers (contract A, ``spasm.reaction``).
SPASM_REACTIONS = ("compliant_hold", "return_to_start")
#: Longest time a patient gets for one movement or contraction [s].
MAX_MOVEMENT_TIMEOUT = 120.0
#: Most waypoints of a guided path.
MAX_WAYPOINTS = 10

_POSITIVE_TIME = {"type": "number", "exclusiveMinimum": 0, **_DURATION_MAX}


def _number(low: float, high: float, unit: str = "", exclusive_low: bool = False) -> dict:
    schema: dict[str, Any] = {"type": "number", "maximum": high}
    schema["exclusiveMinimum" if exclusive_low else "minimum"] = low
    if unit:
        schema["x-unit"] = unit
    return schema


#: Schema of every protocol field, whatever its type (units in ``x-unit``).
PROTOCOL_FIELDS: dict[str, dict[str, Any]] = {
    "name": {"type": "string", "pattern": _CODE_PATTERN, "x-help": _CODE_HELP},
    "type": {"type": "string", "enum": list(EXERCISE_TYPES)},
    "joint": {"type": "string", "enum": list(JOINT_NAMES)},
    "start_angle": _ANGLE,
    "end_angle": _ANGLE,
    "repetitions": {"type": "integer", "minimum": 1, "maximum": MAX_REPETITIONS},
    "movement_duration": {"type": "number", "minimum": MIN_MOVEMENT_DURATION, **_DURATION_MAX},
    "hold_duration": {"type": "number", "minimum": 0, **_DURATION_MAX},
    "movement_timeout": _number(1.0, MAX_MOVEMENT_TIMEOUT, "s"),
    "target_tolerance": _number(0.01, 0.3, "rad"),
    "spasm_reaction": {"type": "string", "enum": list(SPASM_REACTIONS)},
    "weight_support": _number(0.0, 1.0),
    "admittance_damping": _number(2.0, 200.0, "N·s/m"),
    "onset_velocity": _number(0.01, 1.0, "rad/s"),
    "onset_timeout": _number(0.0, 10.0, "s"),
    "assist_stiffness": _number(0.0, 200.0, "N·m/rad"),
    "assist_deadband": _number(0.0, 0.5, "rad"),
    "assist_max_torque": _number(0.0, MAX_JOINT_TORQUE_CEILING, "N·m", exclusive_low=True),
    "initial_gain": _number(0.0, 1.0),
    "forgetting_factor": _number(0.0, 1.0, exclusive_low=True),
    "learning_rate": _number(0.0, 100.0, "1/rad"),
    "error_tolerance": _number(0.0, 0.5, "rad"),
    "resistive_damping": _number(0.0, 50.0, "N·m·s/rad"),
    "resistive_stiffness": _number(0.0, 200.0, "N·m/rad"),
    "resistive_max_torque": _number(0.0, MAX_JOINT_TORQUE_CEILING, "N·m", exclusive_low=True),
    "hold_angle": _ANGLE,
    "target_torque": _number(-MAX_JOINT_TORQUE_CEILING, MAX_JOINT_TORQUE_CEILING, "N·m"),
    "torque_tolerance": _number(0.0, 0.5),
    "hold_time": _number(0.5, 60.0, "s"),
    "rest_duration": {"type": "number", "minimum": 0, **_DURATION_MAX},
    "contraction_timeout": _number(1.0, MAX_MOVEMENT_TIMEOUT, "s"),
    "waypoints": {
        "type": "array",
        "minItems": 2,
        "maxItems": MAX_WAYPOINTS,
        "items": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": False,
            "properties": {joint: _ANGLE for joint in JOINT_NAMES},
            "x-item": "joint",
        },
        "x-help": f"a list of 2 to {MAX_WAYPOINTS} arm postures, each a mapping joint: angle in rad",
    },
    "channel_width": _number(0.005, 0.1, "m"),
    "guidance_stiffness": _number(50.0, 2000.0, "N/m"),
}

_COMMON = ("name", "type", "repetitions")
_MOVING = ("joint", "start_angle", "end_angle")
_INTERACTIVE = ("movement_timeout", "target_tolerance", "hold_duration", "spasm_reaction", "weight_support",
                "admittance_damping")
_ASSIST = ("movement_duration", "onset_velocity", "onset_timeout", "assist_stiffness", "assist_deadband", "assist_max_torque")

#: Per type: (required fields, optional fields).
TYPE_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "passive_rom": (_COMMON + _MOVING + ("movement_duration",), ("hold_duration",)),
    "active": (_COMMON + _MOVING, _INTERACTIVE),
    "active_assist": (_COMMON + _MOVING + ("movement_duration",), _INTERACTIVE + _ASSIST[1:]),
    "assist_as_needed": (
        _COMMON + _MOVING + ("movement_duration",),
        _INTERACTIVE + _ASSIST[1:] + ("initial_gain", "forgetting_factor", "learning_rate", "error_tolerance"),
    ),
    "resistive": (
        _COMMON + _MOVING,
        _INTERACTIVE + ("resistive_damping", "resistive_stiffness", "resistive_max_torque"),
    ),
    "isometric": (
        _COMMON + ("joint", "hold_angle", "target_torque", "hold_time"),
        ("torque_tolerance", "rest_duration", "contraction_timeout", "spasm_reaction"),
    ),
    "path_guidance": (
        _COMMON + ("waypoints",),
        _INTERACTIVE + ("channel_width", "guidance_stiffness"),
    ),
}

#: Defaults of the optional fields (docs/exercises.md).
PROTOCOL_DEFAULTS: dict[str, Any] = {
    "hold_duration": 0.0,
    "movement_timeout": 10.0,
    "target_tolerance": 0.05,
    "spasm_reaction": "compliant_hold",
    "weight_support": 0.0,
    "admittance_damping": 10.0,
    "onset_velocity": 0.05,
    "onset_timeout": 1.0,
    "assist_stiffness": 100.0,
    "assist_deadband": 0.05,
    "assist_max_torque": 10.0,
    "initial_gain": 1.0,
    "forgetting_factor": 0.9,
    "learning_rate": 2.0,
    "error_tolerance": 0.0,
    "resistive_damping": 2.0,
    "resistive_stiffness": 0.0,
    "resistive_max_torque": 10.0,
    "torque_tolerance": 0.1,
    "rest_duration": 3.0,
    "contraction_timeout": 15.0,
    "channel_width": 0.02,
    "guidance_stiffness": 500.0,
}


def protocol_schema(exercise_type: Optional[str] = None) -> dict[str, Any]:
    """Return the JSON Schema (Draft 2020-12) of a protocol file of ``exercise_type``.

    ``None``: the schema of a file whose type is not known yet: every field of every
    type is accepted, ``name`` and ``type`` are required.
    """
    if exercise_type is None:
        required, fields = ["name", "type"], list(PROTOCOL_FIELDS)
    else:
        needed, optional = TYPE_FIELDS[exercise_type]
        required, fields = list(needed), list(needed) + list(optional)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "rehab_robot exercise protocol" + (f" ({exercise_type})" if exercise_type else ""),
        "type": "object",
        "required": ["protocol"],
        "additionalProperties": False,
        "properties": {
            "protocol": {
                "type": "object",
                "required": required,
                "additionalProperties": False,
                "properties": {name: PROTOCOL_FIELDS[name] for name in fields},
            }
        },
    }


#: JSON Schema of a protocol file of any type (the per-type ones: :func:`protocol_schema`).
PROTOCOL_SCHEMA: dict[str, Any] = protocol_schema()

JointLimits = Mapping[str, Sequence[float]]
VelocityLimits = Mapping[str, float]
PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class PatientProfile:
    """A validated patient profile.

    Attributes:
        patient_id: Pseudonymous id (file key ``id``); goes into session reports.
        side: Arm being treated; always ``"right"`` for now.
        rom_limits: Joint name -> ``(lower, upper)`` [rad], in arm joint order. Only
            these joints may be exercised; the others must be held still.
        max_velocity: Cap on any joint speed of an exercise [rad/s].
        max_interaction_force: Safety limit on the norm of the cuff force [N].
        notes: Free text from the clinician.
        source: File (or label) the profile was read from.
        limb_masses: Masses [kg] of the patient's upper arm and of forearm with hand, for
            the controller's weight support (0, 0: unknown, no weight support possible).
        max_joint_torque: Largest torque [N·m] an exercise may ask of the patient
            (isometric target) or apply to a joint (assistance, resistance).
    """

    patient_id: str
    side: str
    rom_limits: Mapping[str, tuple[float, float]]
    max_velocity: float = DEFAULT_MAX_VELOCITY
    max_interaction_force: float = DEFAULT_MAX_INTERACTION_FORCE
    notes: str = ""
    source: str = ""
    limb_masses: tuple[float, float] = (0.0, 0.0)
    max_joint_torque: float = DEFAULT_MAX_JOINT_TORQUE


@dataclass(frozen=True)
class ExerciseProtocol:
    """A validated passive range-of-motion exercise.

    One repetition is: move ``start_angle`` -> ``end_angle`` (minimum jerk, in
    ``movement_duration``), hold ``hold_duration``, move back to ``start_angle``,
    hold ``hold_duration`` (except after the last one). Bringing the joint to
    ``start_angle`` before the first repetition is not part of the protocol.

    Attributes:
        name: Protocol name; goes into session reports.
        type: Exercise type; always ``"passive_rom"`` for now.
        joint: The joint that moves; the other joints are held still.
        start_angle: Angle where every repetition starts and ends [rad].
        end_angle: Angle reached at the middle of every repetition [rad].
        repetitions: Number of repetitions (>= 1).
        movement_duration: Duration of one one-way move [s].
        hold_duration: Pause at each end of a move [s].
        max_velocity: Speed cap of this exercise [rad/s]: the smaller of the patient's
            ``max_velocity`` and the arm's velocity limit for ``joint``. Any extra move
            (approach, resume after a pause) must respect it too.
        source: File (or label) the protocol was read from.
    """

    name: str
    type: str
    joint: str
    start_angle: float
    end_angle: float
    repetitions: int
    movement_duration: float
    hold_duration: float = 0.0
    max_velocity: float = DEFAULT_MAX_VELOCITY
    source: str = ""
    movement_timeout: float = 10.0
    target_tolerance: float = 0.05
    spasm_reaction: str = "compliant_hold"
    weight_support: float = 0.0
    admittance_damping: float = 10.0
    onset_velocity: float = 0.05
    onset_timeout: float = 1.0
    assist_stiffness: float = 100.0
    assist_deadband: float = 0.05
    assist_max_torque: float = 10.0
    initial_gain: float = 1.0
    forgetting_factor: float = 0.9
    learning_rate: float = 2.0
    error_tolerance: float = 0.0
    resistive_damping: float = 2.0
    resistive_stiffness: float = 0.0
    resistive_max_torque: float = 10.0
    hold_angle: float = 0.0
    target_torque: float = 0.0
    torque_tolerance: float = 0.1
    hold_time: float = 0.0
    rest_duration: float = 3.0
    contraction_timeout: float = 15.0
    waypoints: tuple = ()
    channel_width: float = 0.02
    guidance_stiffness: float = 500.0

    @property
    def interactive(self) -> bool:
        """True for every type but passive_rom: the patient takes part and the controller changes mode."""
        return self.type != "passive_rom"

    @property
    def distance(self) -> float:
        """Length of one one-way move [rad]."""
        return abs(self.end_angle - self.start_angle)

    @property
    def peak_velocity(self) -> float:
        """Peak joint speed of one minimum-jerk move [rad/s] (0 for types without a reference move)."""
        if self.movement_duration <= 0:
            return 0.0
        return MIN_JERK_PEAK_SPEED_RATIO * self.distance / self.movement_duration

    @property
    def repetition_duration(self) -> float:
        """Duration of one repetition [s]: two moves and two holds; for the interactive types the
        longest it may take (every movement or contraction to its time-out)."""
        if self.type == "isometric":
            return self.contraction_timeout + self.rest_duration
        if self.type == "path_guidance":
            return 2.0 * (len(self.waypoints) - 1) * (self.movement_timeout + self.hold_duration)
        if self.type in ACTIVE_TYPES:
            return 2.0 * (self.movement_timeout + self.hold_duration)
        return 2.0 * (self.movement_duration + self.hold_duration)

    @property
    def estimated_duration(self) -> float:
        """Duration of all repetitions [s]: no hold (rest) after the last one, no approach move;
        the longest it may take for the interactive types."""
        pause = self.rest_duration if self.type == "isometric" else self.hold_duration
        return self.repetitions * self.repetition_duration - pause


class _Invalid(Exception):
    """A problem at a field path; turned into a ConfigError by the caller."""

    def __init__(self, path: tuple, problem: str):
        super().__init__(problem)
        self.path = path
        self.problem = problem


# ---------------------------------------------------------------------------
# public API


def load_patient(path: PathLike, joint_limits: JointLimits) -> PatientProfile:
    """Read and validate a patient profile file.

    Args:
        path: The YAML file.
        joint_limits: Joint name -> ``(lower, upper)`` position limits of the arm
            (URDF) [rad].

    Returns:
        The validated profile, with ``source`` set to ``path``.

    Raises:
        ConfigError: naming the file, the field and what is allowed.
    """
    data, lines = _read_yaml(path, "patient")
    return _parse_patient(data, str(path), joint_limits, lines)


def parse_patient(data: Any, source: str, joint_limits: JointLimits) -> PatientProfile:
    """Validate a patient profile already loaded from YAML (``{"patient": {...}}``).

    Args:
        data: The document: plain dicts, lists, str, int, float, bool, None.
        source: File name or label used in error messages.
        joint_limits: Joint name -> ``(lower, upper)`` position limits of the arm [rad].

    Returns:
        The validated profile.

    Raises:
        ConfigError: naming ``source``, the field and what is allowed.
    """
    return _parse_patient(data, source, joint_limits, {})


def load_protocol(
    path: PathLike,
    patient: PatientProfile,
    joint_limits: JointLimits,
    velocity_limits: VelocityLimits,
) -> ExerciseProtocol:
    """Read and validate an exercise protocol file for one patient.

    Args:
        path: The YAML file.
        patient: The patient the exercise is for; its ROM limits and
            ``max_velocity`` bound the exercise.
        joint_limits: Joint name -> ``(lower, upper)`` position limits of the arm [rad].
        velocity_limits: Joint name -> velocity limit of the arm [rad/s].

    Returns:
        The validated protocol, with ``source`` set to ``path``.

    Raises:
        ConfigError: naming the file, the field and what is allowed.
    """
    data, lines = _read_yaml(path, "protocol")
    return _parse_protocol(data, str(path), patient, joint_limits, velocity_limits, lines)


def parse_protocol(
    data: Any,
    source: str,
    patient: PatientProfile,
    joint_limits: JointLimits,
    velocity_limits: VelocityLimits,
) -> ExerciseProtocol:
    """Validate an exercise protocol already loaded from YAML (``{"protocol": {...}}``).

    Args:
        data: The document: plain dicts, lists, str, int, float, bool, None.
        source: File name or label used in error messages.
        patient: The patient the exercise is for.
        joint_limits: Joint name -> ``(lower, upper)`` position limits of the arm [rad].
        velocity_limits: Joint name -> velocity limit of the arm [rad/s].

    Returns:
        The validated protocol.

    Raises:
        ConfigError: naming ``source``, the field and what is allowed.
    """
    return _parse_protocol(data, source, patient, joint_limits, velocity_limits, {})


# ---------------------------------------------------------------------------
# parsing


def _parse_patient(data: Any, source: str, joint_limits: JointLimits, lines: dict) -> PatientProfile:
    prefix = f"patient file {source}"
    with _reported(prefix, lines):
        _check_document(data, PATIENT_SCHEMA, "patient", "protocol", lines)
        fields = data["patient"]
        _check_code(fields, ("patient", "id"))
        rom = {}
        for joint in JOINT_NAMES:  # arm order, whatever the file order
            if joint in fields["rom_limits"]:
                rom[joint] = _check_rom(joint, fields["rom_limits"][joint], joint_limits)
        return PatientProfile(
            patient_id=fields["id"],
            side=fields["side"],
            rom_limits=types.MappingProxyType(rom),
            max_velocity=float(fields.get("max_velocity", DEFAULT_MAX_VELOCITY)),
            max_interaction_force=float(
                fields.get("max_interaction_force", DEFAULT_MAX_INTERACTION_FORCE)
            ),
            notes=fields.get("notes", ""),
            source=source,
            limb_masses=tuple(float(m) for m in fields.get("limb_masses", (0.0, 0.0))),
            max_joint_torque=float(fields.get("max_joint_torque", DEFAULT_MAX_JOINT_TORQUE)),
        )


def _check_code(fields: dict, path: tuple) -> None:
    if not _CODE.fullmatch(fields[path[-1]]):
        raise _Invalid(path, f"{_show(fields[path[-1]])} is not allowed; use {_CODE_HELP}")


def _check_rom(joint: str, pair: list, joint_limits: JointLimits) -> tuple[float, float]:
    path = ("patient", "rom_limits", joint)
    lower, upper = float(pair[0]), float(pair[1])
    if lower >= upper:
        raise _Invalid(
            path,
            f"lower limit {_num(lower)} rad must be below upper limit {_num(upper)} rad "
            "(write [lower, upper])",
        )
    arm_lower, arm_upper = _arm_limits(joint, joint_limits, path)
    arm = f"the arm's range [{_num(arm_lower)}, {_num(arm_upper)}] rad"
    if lower < arm_lower:
        raise _Invalid(path + (0,), f"lower limit {_num(lower)} rad is outside {arm}")
    if upper > arm_upper:
        raise _Invalid(path + (1,), f"upper limit {_num(upper)} rad is outside {arm}")
    return lower, upper


def _arm_limits(joint: str, joint_limits: JointLimits, path: tuple) -> tuple[float, float]:
    if joint not in joint_limits:
        raise _Invalid(
            path,
            f"the arm model has no joint {joint!r}; its joints are: {', '.join(joint_limits)}",
        )
    lower, upper = (float(limit) for limit in joint_limits[joint])
    if math.isnan(lower) or math.isnan(upper) or lower >= upper:
        raise _Invalid(path, f"the arm model's limits for {joint} are invalid: [{lower}, {upper}] rad")
    return lower, upper


def _parse_protocol(
    data: Any,
    source: str,
    patient: PatientProfile,
    joint_limits: JointLimits,
    velocity_limits: VelocityLimits,
    lines: dict,
) -> ExerciseProtocol:
    prefix = f"protocol file {source}"
    with _reported(prefix, lines):
        # First any type's fields (unknown names, types, ranges), then the type's own.
        _check_document(data, PROTOCOL_SCHEMA, "protocol", "patient", lines)
        fields = data["protocol"]
        kind = fields["type"]
        _check_fields_of_type(fields, kind, lines)
        _check_document(data, protocol_schema(kind), "protocol", "patient", lines)
        _check_code(fields, ("protocol", "name"))
        who = f"patient {patient.patient_id}"
        if patient.source:
            who += f" (patient file {patient.source})"
        values = {name: PROTOCOL_DEFAULTS[name] for name in TYPE_FIELDS[kind][1] if name in PROTOCOL_DEFAULTS}
        values.update(fields)
        if kind == "path_guidance":
            protocol = _path_guidance(values, source, patient, joint_limits, velocity_limits, who)
        else:
            protocol = _joint_exercise(values, source, patient, joint_limits, velocity_limits, who)
        _check_interaction(protocol, patient, who)
        if protocol.estimated_duration > MAX_SESSION_DURATION:
            raise _Invalid(
                ("protocol", "repetitions"),
                f"{protocol.repetitions} repetitions of {_num(protocol.repetition_duration)} s "
                f"({_repetition_text(kind)}) take {_num(protocol.estimated_duration)} s, "
                f"longer than the session limit of {_num(MAX_SESSION_DURATION)} s; "
                "use fewer repetitions or shorter durations",
            )
        return protocol


def _repetition_text(kind: str) -> str:
    if kind == "passive_rom":
        return "2 x (movement + hold)"
    if kind == "isometric":
        return "contraction_timeout + rest_duration"
    if kind == "path_guidance":
        return "2 x (waypoints - 1) x (movement_timeout + hold)"
    return "2 x (movement_timeout + hold)"


def _check_fields_of_type(fields: dict, kind: str, lines: dict) -> None:
    """Refuse a field of another exercise type by name (the schema would only call it unknown)."""
    needed, optional = TYPE_FIELDS[kind]
    mine = set(needed) | set(optional)
    foreign = [key for key in fields if key not in mine]
    if not foreign:
        return
    key = min(foreign, key=lambda k: lines.get(("protocol", k), 0))
    owners = [t for t, (req, opt) in TYPE_FIELDS.items() if key in req or key in opt]
    raise _Invalid(
        ("protocol", key),
        f"field '{key}' belongs to type {' or '.join(owners)}, not {kind}; "
        f"fields of {kind}: {', '.join(needed + optional)}",
    )


def _check_angle(key, angle: float, joint: str, rom: tuple, arm: tuple, who: str) -> None:
    """Raise _Invalid unless ``angle`` [rad] is inside the patient's ROM and the arm's range."""
    path = ("protocol",) + (key if isinstance(key, tuple) else (key,))
    if not rom[0] <= angle <= rom[1]:
        raise _Invalid(
            path,
            f"{_num(angle)} rad is outside the range of motion of {who} for {joint}; "
            f"allowed: [{_num(rom[0])}, {_num(rom[1])}] rad",
        )
    if not arm[0] <= angle <= arm[1]:
        raise _Invalid(
            path,
            f"{_num(angle)} rad is outside the arm's range for {joint}; allowed: [{_num(arm[0])}, {_num(arm[1])}] rad",
        )


def _patient_joint(joint: str, patient: PatientProfile, who: str, path: tuple) -> tuple[float, float]:
    if joint not in patient.rom_limits:
        raise _Invalid(
            path,
            f"{joint} has no ROM limits in the profile of {who}; allowed joints: {', '.join(patient.rom_limits)}",
        )
    return patient.rom_limits[joint]


def _joint_exercise(values: dict, source: str, patient: PatientProfile, joint_limits: JointLimits,
                    velocity_limits: VelocityLimits, who: str) -> ExerciseProtocol:
    """Validate the fields of a one-joint exercise (every type but path_guidance)."""
    kind = values["type"]
    joint = values["joint"]
    rom = _patient_joint(joint, patient, who, ("protocol", "joint"))
    arm = _arm_limits(joint, joint_limits, ("protocol", "joint"))
    angles = ("hold_angle",) if kind == "isometric" else ("start_angle", "end_angle")
    for key in angles:
        _check_angle(key, float(values[key]), joint, rom, arm, who)
    if kind != "isometric" and float(values["start_angle"]) == float(values["end_angle"]):
        raise _Invalid(
            ("protocol", "end_angle"),
            f"end_angle equals start_angle ({_num(float(values['start_angle']))} rad); "
            "the exercise needs two different angles",
        )
    limit, limit_source = _velocity_limit(joint, patient, velocity_limits, who)
    known = {f.name for f in dataclasses.fields(ExerciseProtocol)}
    extra = {key: _plain(value) for key, value in values.items() if key in known and key not in (
        "name", "type", "joint", "start_angle", "end_angle", "repetitions", "movement_duration")}
    hold = float(values.get("hold_angle", 0.0))
    protocol = ExerciseProtocol(
        name=values["name"],
        type=kind,
        joint=joint,
        start_angle=float(values.get("start_angle", hold)),
        end_angle=float(values.get("end_angle", hold)),
        repetitions=int(values["repetitions"]),
        movement_duration=float(values.get("movement_duration", 0.0)),
        max_velocity=limit,
        source=source,
        **extra,
    )
    if "movement_duration" in values and protocol.peak_velocity > limit:
        shortest = math.ceil(MIN_JERK_PEAK_SPEED_RATIO * protocol.distance / limit * 100.0) / 100.0
        raise _Invalid(
            ("protocol", "movement_duration"),
            f"moving {joint} {_num(protocol.distance)} rad in {_num(protocol.movement_duration)} s "
            f"needs a peak speed of {_num(protocol.peak_velocity)} rad/s "
            f"({MIN_JERK_PEAK_SPEED_RATIO} x distance / duration), above {_num(limit)} rad/s, "
            f"{limit_source}; allowed: at least {_num(shortest)} s for this distance",
        )
    if kind in ACTIVE_TYPES:
        _check_timeout(protocol.movement_timeout, protocol.distance, limit, limit_source, joint)
        if "movement_duration" in values and protocol.movement_timeout <= protocol.movement_duration:
            raise _Invalid(
                ("protocol", "movement_timeout"),
                f"{_num(protocol.movement_timeout)} s leaves no time beyond the reference movement of "
                f"{_num(protocol.movement_duration)} s (movement_duration); allowed: more than "
                f"{_num(protocol.movement_duration)} s",
            )
        if "onset_timeout" in values and protocol.onset_timeout + protocol.movement_duration >= protocol.movement_timeout:
            raise _Invalid(
                ("protocol", "onset_timeout"),
                f"{_num(protocol.onset_timeout)} s of waiting for the onset plus the {_num(protocol.movement_duration)} s "
                f"reference leave no time within movement_timeout {_num(protocol.movement_timeout)} s; allowed: "
                f"less than {_num(protocol.movement_timeout - protocol.movement_duration)} s",
            )
    if kind == "isometric":
        if protocol.target_torque == 0.0:
            raise _Invalid(("protocol", "target_torque"),
                           "0 N·m asks for no effort; allowed: a signed torque, positive toward the joint's "
                           "upper limit, e.g. 5.0 or -5.0")
        if protocol.hold_time >= protocol.contraction_timeout:
            raise _Invalid(("protocol", "hold_time"),
                           f"{_num(protocol.hold_time)} s cannot be held within contraction_timeout = "
                           f"{_num(protocol.contraction_timeout)} s; allowed: less than the time-out")
    return protocol


def _plain(value: Any) -> Any:
    """A YAML value as the dataclass keeps it: numbers as float, lists as tuples."""
    if isinstance(value, bool) or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return value


def _check_timeout(timeout: float, distance: float, limit: float, limit_source: str, what: str) -> None:
    """A movement the patient cannot make within ``timeout`` [s] at the speed cap is refused."""
    shortest = MIN_JERK_PEAK_SPEED_RATIO * distance / limit
    if timeout < shortest:
        raise _Invalid(
            ("protocol", "movement_timeout"),
            f"{_num(timeout)} s is too short to move {what} {_num(distance)} rad without exceeding "
            f"{_num(limit)} rad/s, {limit_source}; allowed: at least {_num(math.ceil(shortest * 100) / 100)} s",
        )


def _path_guidance(values: dict, source: str, patient: PatientProfile, joint_limits: JointLimits,
                   velocity_limits: VelocityLimits, who: str) -> ExerciseProtocol:
    """Validate a guided path: every waypoint names the same joints, inside the patient's ROM."""
    waypoints = values["waypoints"]
    joints = list(waypoints[0])
    postures = []
    for index, waypoint in enumerate(waypoints):
        if set(waypoint) != set(joints):
            raise _Invalid(("protocol", "waypoints", index),
                           f"names joints {', '.join(waypoint)}; every waypoint must name the same joints "
                           f"as the first: {', '.join(joints)}")
        posture = {}
        for joint in JOINT_NAMES:
            if joint in waypoint:
                path = ("waypoints", index, joint)
                rom = _patient_joint(joint, patient, who, ("protocol",) + path)
                arm = _arm_limits(joint, joint_limits, ("protocol",) + path)
                _check_angle(path, float(waypoint[joint]), joint, rom, arm, who)
                posture[joint] = float(waypoint[joint])
        postures.append(types.MappingProxyType(posture))
    tolerance = float(values["target_tolerance"])
    limits = [_velocity_limit(joint, patient, velocity_limits, who) for joint in joints]
    limit, limit_source = min(limits, key=lambda item: item[0])
    longest = 0.0
    for index in range(1, len(postures)):
        step = max(abs(postures[index][j] - postures[index - 1][j]) for j in joints)
        if step <= tolerance:
            raise _Invalid(("protocol", "waypoints", index),
                           f"is within target_tolerance ({_num(tolerance)} rad) of the waypoint before it; "
                           "allowed: waypoints that differ by more than the tolerance in some joint")
        longest = max(longest, step)
    _check_timeout(float(values["movement_timeout"]), longest, limit, limit_source, "a joint")
    first = next(joint for joint in JOINT_NAMES if joint in joints)
    known = {f.name for f in dataclasses.fields(ExerciseProtocol)}
    extra = {key: _plain(value) for key, value in values.items()
             if key in known and key not in ("name", "type", "repetitions", "waypoints")}
    return ExerciseProtocol(
        name=values["name"],
        type="path_guidance",
        joint=first,
        start_angle=postures[0][first],
        end_angle=postures[-1][first],
        repetitions=int(values["repetitions"]),
        movement_duration=0.0,
        max_velocity=limit,
        source=source,
        waypoints=tuple(postures),
        **extra,
    )


def _check_interaction(protocol: ExerciseProtocol, patient: PatientProfile, who: str) -> None:
    """Torques and weight support within the patient's profile."""
    bound = patient.max_joint_torque
    checks = {
        "active_assist": ("assist_max_torque",),
        "assist_as_needed": ("assist_max_torque",),
        "resistive": ("resistive_max_torque",),
        "isometric": ("target_torque",),
    }.get(protocol.type, ())
    for key in checks:
        value = getattr(protocol, key)
        if abs(value) > bound:
            raise _Invalid(("protocol", key),
                           f"{_num(value)} N·m is above the max_joint_torque of {who}; allowed: at most "
                           f"{_num(bound)} N·m in magnitude")
    if protocol.type == "resistive" and protocol.resistive_damping == 0 and protocol.resistive_stiffness == 0:
        raise _Invalid(("protocol", "resistive_damping"),
                       "resistive_damping and resistive_stiffness are both 0: no resistance; allowed: "
                       "at least one of them above 0")
    if protocol.weight_support > 0 and not any(patient.limb_masses):
        raise _Invalid(("protocol", "weight_support"),
                       f"{_num(protocol.weight_support)} needs the patient's limb masses, and the profile of "
                       f"{who} has no limb_masses; allowed: 0, or add limb_masses to the profile")


def _velocity_limit(
    joint: str, patient: PatientProfile, velocity_limits: VelocityLimits, who: str
) -> tuple[float, str]:
    """Return the speed cap of ``joint`` [rad/s] and where it comes from."""
    if joint not in velocity_limits:
        raise _Invalid(
            ("protocol", "joint"),
            f"the arm model has no velocity limit for {joint}; it has: {', '.join(velocity_limits)}",
        )
    arm_limit = float(velocity_limits[joint])
    if not arm_limit > 0:  # also catches NaN, which would pass every comparison below
        raise _Invalid(
            ("protocol", "joint"),
            f"the arm's velocity limit for {joint} is {arm_limit} rad/s: it cannot move",
        )
    limits = [
        (patient.max_velocity, f"the max_velocity of {who}"),
        (arm_limit, f"the arm's velocity limit for {joint}"),
    ]
    return min(limits, key=lambda item: item[0])


@contextlib.contextmanager
def _reported(prefix: str, lines: dict) -> Iterator[None]:
    """Turn an _Invalid (or a document nested too deeply) into one ConfigError."""
    try:
        yield
    except _Invalid as invalid:
        raise ConfigError(_message(prefix, invalid.path, lines, invalid.problem)) from None
    except RecursionError:
        raise ConfigError(f"{prefix}: nested too deeply to be a valid file") from None


def _message(prefix: str, path: tuple, lines: dict, problem: str) -> str:
    if not path:
        return f"{prefix}: {problem}"
    line = lines.get(path)
    where = f" (line {line})" if line else ""
    return f"{prefix}: field '{_path_text(path)}'{where}: {problem}"


# ---------------------------------------------------------------------------
# structure: keys, schema, finite numbers


def _check_document(data: Any, schema: dict, kind: str, other: str, lines: dict) -> None:
    """Raise _Invalid for the most useful structural problem of ``data``, if any.

    Args:
        data: The document.
        schema: Its JSON Schema.
        kind: ``"patient"`` or ``"protocol"``: the expected top-level key.
        other: The other kind, recognised to explain swapped files.
        lines: Field path -> line number, to report the first problem in the file.
    """
    if data is None:
        raise _Invalid(
            (), f"the file is empty; a {kind} file starts with '{kind}:' (see docs/file-formats.md)"
        )
    if isinstance(data, dict) and kind not in data and other in data:
        raise _Invalid(
            (), f"this is a {other} file (top-level key '{other}'); a {kind} file starts with '{kind}:'"
        )
    _check_keys(data, ())
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(data))
    if errors:
        # One message only: first names of unknown fields and wrong types (they often
        # explain the rest), then the shallowest problem, then the first in the file.
        error = min(
            errors,
            key=lambda e: (
                _PRIORITY.get(e.validator, len(_PRIORITY)),
                len(e.absolute_path),
                lines.get(tuple(e.absolute_path), 0),
                str(list(e.absolute_path)),
            ),
        )
        raise _Invalid(*_explain(error, kind))
    _check_finite(data, ())


_PRIORITY = {"additionalProperties": 0, "type": 1, "required": 2}


def _check_keys(value: Any, path: tuple) -> None:
    """Refuse non-text field names (YAML turns ``yes:`` or ``1:`` into bool and int keys)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise _Invalid(path, f"field names must be text, got {_got(key)}; put it in quotes")
            _check_keys(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_keys(item, path + (index,))


def _check_finite(value: Any, path: tuple) -> None:
    """Refuse NaN and infinities, which JSON Schema number checks let through."""
    if isinstance(value, float) and not math.isfinite(value):
        raise _Invalid(path, f"must be a finite number, got {_show(value)}")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_finite(item, path + (index,))


def _explain(error: jsonschema.ValidationError, kind: str) -> tuple[tuple, str]:
    """Return ``(path, problem)``: a friendly text for one jsonschema error."""
    path = tuple(error.absolute_path)
    schema, value, rule = error.schema, error.instance, error.validator
    if rule == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        extra = next(key for key in value if key not in allowed)
        noun = schema.get("x-item", "field")
        unknown = f"{_show(extra)}{_suggest(extra, allowed)}"
        if not path:
            return (extra,), (
                f"unknown top-level field {unknown}; a {kind} file has the single top-level key '{kind}'"
            )
        return path + (extra,), f"unknown {noun} {unknown}; allowed {noun}s: {', '.join(allowed)}"
    if rule == "required":
        missing = next(key for key in error.validator_value if key not in value)
        if not path:
            return (), f"no '{kind}' key at the top level; a {kind} file starts with '{kind}:'"
        return path + (missing,), f"missing; required fields: {', '.join(error.validator_value)}"
    if rule == "type":
        return path, _type_problem(schema, value, path, kind)
    if rule == "enum":
        allowed = ", ".join(str(v) for v in error.validator_value)
        later = schema.get("x-not-yet", {})
        if isinstance(value, str) and value in later:
            return path, f"{_show(value)} is not supported yet: {later[value]}; allowed values: {allowed}"
        hint = _suggest(value, error.validator_value) if isinstance(value, str) else ""
        return path, f"{_show(value)} is not allowed{hint}; allowed values: {allowed}"
    if rule in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        unit = f" {schema['x-unit']}" if "x-unit" in schema else ""
        problem = f"{_show(value)}{unit} is out of range; allowed: {_range_text(schema)}"
        if schema.get("x-unit") == "rad" and abs(value) > _TAU:
            problem += " (angles are in rad, not degrees)"
        return path, problem
    if rule in ("minItems", "maxItems"):
        return path, f"has {len(value)} item(s); allowed: {schema.get('x-help', 'see docs/file-formats.md')}"
    if rule == "minProperties":
        return path, (
            f"is empty; list at least one {schema.get('x-item', 'field')}: "
            f"{', '.join(schema.get('properties', {}))}"
        )
    if rule == "pattern":
        return path, f"{_show(value)} is not allowed; use {schema.get('x-help', error.validator_value)}"
    if rule == "maxLength":
        return path, f"is {len(value)} characters long; allowed: at most {error.validator_value}"
    return path, error.message  # not reached with the schemas above


_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "text",
    "number": "a number",
    "integer": "a whole number",
    "boolean": "true or false",
    "null": "null",
}


def _type_problem(schema: dict, value: Any, path: tuple, kind: str) -> str:
    expected = schema["type"]
    unit = schema.get("x-unit")
    want = _TYPE_WORDS.get(expected, expected) + (f" in {unit}" if unit else "")
    if not path:
        return f"the top level must be a mapping with the single key '{kind}', got {_type_name(value)}"
    if expected == "object" and value is None:
        return f"is empty; expected {want} of fields: {', '.join(schema.get('properties', {}))}"
    if expected == "array" and "x-help" in schema:
        want = schema["x-help"]
    problem = f"must be {want}, got {_got(value)}"
    if expected in ("number", "integer") and isinstance(value, str):
        try:
            number = float(value.replace("_", ""))
        except ValueError:
            number = None
        if number is not None and math.isfinite(number):
            problem += f"; YAML reads it as text: write a decimal number without quotes, e.g. {number!r}"
        elif unit:
            problem += f"; write the number only, the unit is {unit}"
    elif expected == "string" and isinstance(value, (int, float)):
        problem += "; put it in quotes"
    return problem


def _range_text(schema: dict) -> str:
    unit = f" {schema['x-unit']}" if "x-unit" in schema else ""
    parts = []
    if "minimum" in schema:
        parts.append(f"at least {_num(schema['minimum'])}{unit}")
    if "exclusiveMinimum" in schema:
        parts.append(f"greater than {_num(schema['exclusiveMinimum'])}{unit}")
    if "maximum" in schema:
        parts.append(f"at most {_num(schema['maximum'])}{unit}")
    if "exclusiveMaximum" in schema:
        parts.append(f"less than {_num(schema['exclusiveMaximum'])}{unit}")
    noun = "a whole number" if schema.get("type") == "integer" else "a number"
    if "minimum" in schema and "maximum" in schema:
        return f"{noun} from {_num(schema['minimum'])} to {_num(schema['maximum'])}{unit}"
    return f"{noun} {' and '.join(parts)}"


def _suggest(word: str, choices: Sequence[str]) -> str:
    """Return `` (did you mean 'x'?)`` for the closest choice, or nothing."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


# ---------------------------------------------------------------------------
# YAML


class _Loader(yaml.SafeLoader):
    """Safe loader that refuses duplicate keys and aliases (and so alias bombs)."""

    def compose_node(self, parent, index):  # noqa: D102 - PyYAML hook
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed", mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):  # noqa: D102 - PyYAML hook
        seen: dict[str, int] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                line = key_node.start_mark.line + 1
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None,
                        f"duplicate key '{key_node.value}' (first at line {seen[key_node.value]})",
                        key_node.start_mark,
                    )
                seen[key_node.value] = line
        return super().construct_mapping(node, deep)


def _read_yaml(path: PathLike, kind: str) -> tuple[Any, dict]:
    """Return the document in ``path`` and a map field path -> line number."""
    prefix = f"{kind} file {path}"
    where = "" if os.path.isabs(path) else f" (looked for {os.path.abspath(path)})"
    try:
        with open(path, "rb") as stream:
            raw = stream.read(MAX_FILE_SIZE + 1)
    except FileNotFoundError:
        raise ConfigError(f"{prefix}: not found{where}") from None
    except IsADirectoryError:
        raise ConfigError(f"{prefix}: is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError(f"{prefix}: cannot be read: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_SIZE:
        raise ConfigError(f"{prefix}: larger than {MAX_FILE_SIZE // 1024} KiB; not a {kind} file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{prefix}: not UTF-8 text (bad byte at offset {exc.start})") from None
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "syntax error"
        if exc.context and problem.startswith("but "):  # "expected a single document ..., but found"
            problem = f"{exc.context}, {problem}"
        raise ConfigError(f"{prefix}: not valid YAML{at}: {problem}") from None
    except yaml.reader.ReaderError as exc:
        raise ConfigError(
            f"{prefix}: not valid YAML: character #x{exc.character:04x} at offset {exc.position} "
            "is not allowed"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{prefix}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{prefix}: nested too deeply to be a {kind} file") from None
    lines: dict[tuple, int] = {}
    if node is not None:
        _collect_lines(node, (), lines)
    return data, lines


def _collect_lines(node: yaml.Node, path: tuple, lines: dict) -> None:
    """Map each field path to the line where it is written (its key, or list item)."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                child = path + (key_node.value,)
                lines.setdefault(child, key_node.start_mark.line + 1)
                _collect_lines(value_node, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines.setdefault(path + (index,), item.start_mark.line + 1)
            _collect_lines(item, path + (index,), lines)


# ---------------------------------------------------------------------------
# text


def _path_text(path: tuple) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def _num(value: float) -> str:
    """Short decimal text of a number, keeping ``.0`` on whole floats (2.0, not 2)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value) if abs(value) < 10**15 else f"{float(value):.6g}"
    text = f"{float(value):.6g}"
    return text + ".0" if re.fullmatch(r"-?\d+", text) else text


def _show(value: Any) -> str:
    """The value as the user wrote it in YAML, shortened."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        return _num(value)
    if isinstance(value, int):
        return _num(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:37] + "...")
    return _type_name(value)


def _got(value: Any) -> str:
    """What the user wrote, for "got ...": ``text 'abc'``, ``the whole number 3``, ``a list``."""
    if isinstance(value, bool):
        return f"the true/false value {_show(value)}"
    if isinstance(value, int):
        return f"the whole number {_show(value)}"
    if isinstance(value, float):
        return f"the number {_show(value)}"
    if isinstance(value, str):
        return f"text {_show(value)}"
    return _type_name(value)


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (bool, int, float, str)):
        return _got(value)
    if isinstance(value, (datetime.date, datetime.datetime)):
        return "a date"  # YAML reads 2024-01-01 as a date
    if isinstance(value, bytes):
        return "binary data"
    return f"a {type(value).__name__}"
