"""Tests of rehab_robot.session.profiles: patient profile and exercise protocol files."""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

import jsonschema
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from rehab_robot import JOINT_NAMES, resources
from rehab_robot.errors import ConfigError
from rehab_robot.session import profiles
from rehab_robot.session.profiles import (
    ExerciseProtocol,
    PatientProfile,
    load_patient,
    load_protocol,
    parse_patient,
    parse_protocol,
)

REPO = Path(__file__).resolve().parent.parent
SHOULDER_PROTOCOL = REPO / "config" / "protocols" / "passive_shoulder_flexion_rom.yaml"

JOINT_LIMITS = {
    "shoulder_flexion": (-0.6, 2.6),
    "shoulder_abduction": (-0.3, 2.2),
    "shoulder_rotation": (-1.2, 1.2),
    "elbow_flexion": (0.0, 2.4),
}
VELOCITY_LIMITS = {joint: 2.0 for joint in JOINT_NAMES}

PATIENT = {
    "patient": {
        "id": "P-0042",
        "side": "right",
        "rom_limits": {"elbow_flexion": [0.2, 2.0], "shoulder_flexion": [0.0, 1.4]},
        "max_velocity": 1.0,
        "max_interaction_force": 40.0,
        "notes": "test",
    }
}
PROTOCOL = {
    "protocol": {
        "name": "passive_elbow_rom",
        "type": "passive_rom",
        "joint": "elbow_flexion",
        "start_angle": 0.5,
        "end_angle": 1.5,
        "repetitions": 3,
        "movement_duration": 2.0,
        "hold_duration": 0.5,
    }
}


def changed(document: dict, field: str, value=None, *, delete: bool = False) -> dict:
    """Return a copy of ``document`` with the dotted ``field`` set to ``value`` (or deleted)."""
    result = copy.deepcopy(document)
    *parents, last = field.split(".")
    node = result
    for key in parents:
        node = node[key]
    if delete:
        del node[last]
    else:
        node[last] = value
    return result


@pytest.fixture
def write(tmp_path):
    """Write a document (dict, dumped as YAML) or raw text to a file; return its path text."""

    def _write(content, name="file.yaml") -> str:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
            path.write_text(text, encoding="utf-8")
        return str(path)

    return _write


@pytest.fixture
def patient() -> PatientProfile:
    return parse_patient(PATIENT, "patient.yaml", JOINT_LIMITS)


def refused(call, *args, **kwargs) -> str:
    """Run ``call`` and return the message of the ConfigError it must raise."""
    with pytest.raises(ConfigError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, "one line per error"
    return message


def assert_mentions(message: str, *fragments: str) -> None:
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


# ---------------------------------------------------------------------------
# schemas and shipped files


def test_schemas_are_valid_draft_2020_12():
    """Both schemas are valid Draft 2020-12 JSON Schemas."""
    schemas = [profiles.PATIENT_SCHEMA, profiles.PROTOCOL_SCHEMA]
    schemas += [profiles.protocol_schema(kind) for kind in profiles.EXERCISE_TYPES]
    for schema in schemas:
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_every_schema_object_refuses_unknown_fields():
    """Every object in both schemas sets additionalProperties: false (typos are never ignored)."""

    def objects(schema):
        if isinstance(schema, dict):
            if schema.get("type") == "object":
                yield schema
            for value in schema.values():
                yield from objects(value)
        elif isinstance(schema, list):
            for value in schema:
                yield from objects(value)

    found = list(objects(profiles.PATIENT_SCHEMA)) + list(objects(profiles.PROTOCOL_SCHEMA))
    assert len(found) == 6  # patient: file, patient, rom_limits; protocol: file, protocol, a waypoint
    for kind in profiles.EXERCISE_TYPES:
        found += list(objects(profiles.protocol_schema(kind)))
    assert all(schema.get("additionalProperties") is False for schema in found)


def test_shipped_example_patient_loads():
    """The example patient profile that ships with the package is valid and has the expected values."""
    path = resources.example_patient()
    patient = load_patient(path, JOINT_LIMITS)
    assert patient.patient_id == "P-0001"
    assert patient.side == "right"
    assert dict(patient.rom_limits) == {"shoulder_flexion": (0.0, 1.4), "elbow_flexion": (0.2, 2.0)}
    assert patient.max_velocity == 1.0
    assert patient.max_interaction_force == 40.0
    assert patient.source == str(path)


@pytest.mark.parametrize(
    "path", [resources.example_protocol(), SHOULDER_PROTOCOL], ids=["elbow", "shoulder_flexion"]
)
def test_shipped_example_protocols_load_and_suit_the_demo(path):
    """Each shipped protocol is valid for the example patient and short enough for `make demo`."""
    patient = load_patient(resources.example_patient(), JOINT_LIMITS)
    protocol = load_protocol(path, patient, JOINT_LIMITS, VELOCITY_LIMITS)
    assert protocol.type == "passive_rom"
    assert protocol.repetitions == 3
    assert 1.5 <= protocol.movement_duration <= 2.0
    assert protocol.estimated_duration < 30.0
    assert protocol.peak_velocity <= patient.max_velocity
    lower, upper = patient.rom_limits[protocol.joint]
    assert lower <= min(protocol.start_angle, protocol.end_angle)
    assert max(protocol.start_angle, protocol.end_angle) <= upper


def test_defaults_are_applied():
    """Optional fields take their documented defaults: 1.0 rad/s, 40 N, no notes, no hold."""
    minimal_patient = {"patient": {"id": "P1", "side": "right", "rom_limits": {"elbow_flexion": [0.2, 2.0]}}}
    patient = parse_patient(minimal_patient, "p.yaml", JOINT_LIMITS)
    assert (patient.max_velocity, patient.max_interaction_force, patient.notes) == (1.0, 40.0, "")
    document = changed(PROTOCOL, "protocol.hold_duration", delete=True)
    protocol = parse_protocol(document, "q.yaml", patient, JOINT_LIMITS, VELOCITY_LIMITS)
    assert isinstance(protocol, ExerciseProtocol)
    assert protocol.hold_duration == 0.0


def test_values_are_typed_and_rom_follows_the_arm_joint_order(patient):
    """Integers in the file become floats (angles, durations) and the ROM joints follow JOINT_NAMES order."""
    assert list(patient.rom_limits) == ["shoulder_flexion", "elbow_flexion"]
    document = changed(PROTOCOL, "protocol.start_angle", 1)
    document = changed(document, "protocol.movement_duration", 2)
    protocol = parse_protocol(document, "q.yaml", patient, JOINT_LIMITS, VELOCITY_LIMITS)
    assert isinstance(protocol.start_angle, float) and isinstance(protocol.movement_duration, float)
    assert isinstance(protocol.repetitions, int)


def test_profiles_are_immutable(patient):
    """PatientProfile and ExerciseProtocol cannot be changed after validation, nor their ROM limits."""
    protocol = parse_protocol(PROTOCOL, "q.yaml", patient, JOINT_LIMITS, VELOCITY_LIMITS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        patient.max_velocity = 5.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        protocol.repetitions = 100
    with pytest.raises(TypeError):
        patient.rom_limits["elbow_flexion"] = (0.0, 2.4)


def test_protocol_derived_quantities(patient):
    """distance, peak_velocity (1.875 d / T), estimated_duration (no hold after the last return) are right."""
    protocol = parse_protocol(PROTOCOL, "q.yaml", patient, JOINT_LIMITS, VELOCITY_LIMITS)
    assert protocol.distance == pytest.approx(1.0)
    assert protocol.peak_velocity == pytest.approx(1.875 * 1.0 / 2.0)
    assert protocol.repetition_duration == pytest.approx(5.0)
    assert protocol.estimated_duration == pytest.approx(3 * 5.0 - 0.5)


def test_protocol_speed_cap_is_the_smaller_of_patient_and_arm(patient):
    """ExerciseProtocol.max_velocity is min(patient max_velocity, arm velocity limit of the joint)."""
    protocol = parse_protocol(PROTOCOL, "q.yaml", patient, JOINT_LIMITS, VELOCITY_LIMITS)
    assert protocol.max_velocity == 1.0
    fast_patient = parse_patient(changed(PATIENT, "patient.max_velocity", 3.0), "p.yaml", JOINT_LIMITS)
    protocol = parse_protocol(PROTOCOL, "q.yaml", fast_patient, JOINT_LIMITS, VELOCITY_LIMITS)
    assert protocol.max_velocity == 2.0


# ---------------------------------------------------------------------------
# file-level refusals


def test_missing_file_is_refused(tmp_path):
    """A missing file is refused, naming the file."""
    path = str(tmp_path / "nobody.yaml")
    assert_mentions(refused(load_patient, path, JOINT_LIMITS), f"patient file {path}", "not found")


def test_missing_relative_file_names_the_absolute_path(tmp_path, monkeypatch):
    """For a relative path the message also says where it was looked for."""
    monkeypatch.chdir(tmp_path)
    message = refused(load_patient, "p.yaml", JOINT_LIMITS)
    assert_mentions(message, "patient file p.yaml: not found", str(tmp_path / "p.yaml"))


def test_directory_is_refused(tmp_path):
    """A directory given as the file is refused."""
    assert_mentions(refused(load_patient, str(tmp_path), JOINT_LIMITS), str(tmp_path), "is a directory")


def test_unreadable_file_is_refused(write, monkeypatch):
    """A file that cannot be opened (permission denied) is refused with the OS reason."""
    path = write(PATIENT)

    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    # Patched in the module because root (CI containers) can read a chmod 000 file.
    monkeypatch.setattr(profiles, "open", deny, raising=False)
    assert_mentions(refused(load_patient, path, JOINT_LIMITS), path, "cannot be read", "Permission denied")


def test_non_utf8_file_is_refused(write):
    """Bytes that are not UTF-8 text are refused."""
    path = write(b"patient:\n  id: \xff\xfe\n")
    assert_mentions(refused(load_patient, path, JOINT_LIMITS), path, "not UTF-8")


def test_huge_file_is_refused(write):
    """A file far larger than any profile is refused before parsing."""
    path = write("# " + "x" * (profiles.MAX_FILE_SIZE + 10) + "\n")
    assert_mentions(refused(load_patient, path, JOINT_LIMITS), path, "larger than 64 KiB")


@pytest.mark.parametrize(
    "text, where",
    [
        ("patient:\n  id: P1\n  side: [right\n", "line 4, column 1"),
        ("patient:\n  id: P1\n side: right\n", "line 3, column 2"),
        ("patient:\n\tid: P1\n", "line 2, column 1"),
    ],
    ids=["unclosed_list", "bad_indent", "tab"],
)
def test_malformed_yaml_gives_line_and_column(write, text, where):
    """Malformed YAML is refused with the line and column of the problem."""
    path = write(text)
    assert_mentions(refused(load_patient, path, JOINT_LIMITS), path, "not valid YAML", where)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("patient:\n  id: P1\n  id: P2\n", "duplicate key 'id' (first at line 2)"),
        ("a: &x [1]\npatient: *x\n", "aliases (*name) are not allowed"),
        ("patient: {}\n---\npatient: {}\n", "expected a single document"),
        ("patient: !!python/object/apply:os.system [ls]\n", "could not determine a constructor"),
        ("patient:\x00\n", "#x0000"),
    ],
    ids=["duplicate_key", "alias", "two_documents", "python_tag", "control_char"],
)
def test_unsafe_or_ambiguous_yaml_is_refused(write, text, problem):
    """Duplicate keys, aliases, several documents, Python tags and control characters are refused."""
    path = write(text)
    assert_mentions(refused(load_patient, path, JOINT_LIMITS), path, "not valid YAML", problem)


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing but a comment\n", "null\n", "~\n"])
def test_empty_file_is_refused(write, text):
    """An empty file (or only comments, or null) is refused, saying how a patient file starts."""
    path = write(text)
    assert_mentions(refused(load_patient, path, JOINT_LIMITS), path, "the file is empty", "'patient:'")


@pytest.mark.parametrize("text", ["- 1\n- 2\n", "just text\n", "42\n"])
def test_top_level_must_be_a_mapping(write, text):
    """A top level that is a list or a scalar is refused, naming the required top-level key."""
    path = write(text)
    assert_mentions(
        refused(load_patient, path, JOINT_LIMITS), path, "top level must be a mapping", "'patient'"
    )


def test_swapped_files_are_recognised(write, patient):
    """A protocol given as the patient file, or the reverse, is refused with that diagnosis."""
    protocol_path = write(PROTOCOL, "protocol.yaml")
    patient_path = write(PATIENT, "patient.yaml")
    assert_mentions(
        refused(load_patient, protocol_path, JOINT_LIMITS), protocol_path, "this is a protocol file"
    )
    assert_mentions(
        refused(load_protocol, patient_path, patient, JOINT_LIMITS, VELOCITY_LIMITS),
        patient_path,
        "this is a patient file",
    )


# ---------------------------------------------------------------------------
# patient field refusals: (document, field path, what the message must say is allowed)

NAN, INF = float("nan"), float("inf")
PATIENT_REFUSALS = {
    "unknown_top_level": (
        {"patients": PATIENT["patient"]}, "patients", ["did you mean 'patient'?"]),
    "unknown_field": (
        changed(PATIENT, "patient.max_velocty", 1.0), "patient.max_velocty",
        ["unknown field", "did you mean 'max_velocity'?", "allowed fields: id, side, rom_limits"]),
    "missing_id": (
        changed(PATIENT, "patient.id", delete=True), "patient.id",
        ["missing", "required fields: id, side, rom_limits"]),
    "empty_patient": (
        {"patient": None}, "patient", ["is empty", "id, side, rom_limits"]),
    "id_number": (
        changed(PATIENT, "patient.id", 1), "patient.id", ["must be text", "put it in quotes"]),
    "id_with_spaces": (
        changed(PATIENT, "patient.id", "Jane Doe"), "patient.id", ["letters, digits", "never a name"]),
    "id_trailing_newline": (
        changed(PATIENT, "patient.id", "P1\n"), "patient.id", ["letters, digits"]),
    "side_left": (
        changed(PATIENT, "patient.side", "left"), "patient.side", ["right arm", "allowed values: right"]),
    "side_typo": (
        changed(PATIENT, "patient.side", "rigth"), "patient.side", ["did you mean 'right'?"]),
    "rom_unknown_joint": (
        changed(PATIENT, "patient.rom_limits.elbow_flex", [0.2, 2.0]), "patient.rom_limits.elbow_flex",
        ["unknown joint", "did you mean 'elbow_flexion'?", ", ".join(JOINT_NAMES)]),
    "rom_empty": (
        changed(PATIENT, "patient.rom_limits", {}), "patient.rom_limits", ["at least one joint"]),
    "rom_not_a_pair": (
        changed(PATIENT, "patient.rom_limits.elbow_flexion", [0.2, 1.0, 2.0]),
        "patient.rom_limits.elbow_flexion", ["[lower, upper]"]),
    "rom_scalar": (
        changed(PATIENT, "patient.rom_limits.elbow_flexion", 2.0),
        "patient.rom_limits.elbow_flexion", ["[lower, upper]"]),
    "rom_text_number": (
        changed(PATIENT, "patient.rom_limits.elbow_flexion", [0.2, "2.0"]),
        "patient.rom_limits.elbow_flexion[1]", ["must be a number in rad", "without quotes"]),
    "rom_bool": (
        changed(PATIENT, "patient.rom_limits.elbow_flexion", [True, 2.0]),
        "patient.rom_limits.elbow_flexion[0]", ["must be a number in rad", "true/false"]),
    "rom_nan": (
        changed(PATIENT, "patient.rom_limits.elbow_flexion", [0.2, NAN]),
        "patient.rom_limits.elbow_flexion[1]", ["finite number", ".nan"]),
    "rom_inf": (
        changed(PATIENT, "patient.rom_limits.elbow_flexion", [-INF, 2.0]),
        "patient.rom_limits.elbow_flexion[0]", ["-.inf", "from -6.28319 to 6.28319 rad"]),
    "rom_degrees": (
        changed(PATIENT, "patient.rom_limits.elbow_flexion", [10, 120]),
        "patient.rom_limits.elbow_flexion[0]", ["from -6.28319 to 6.28319 rad", "not degrees"]),
    "rom_reversed": (
        changed(PATIENT, "patient.rom_limits.elbow_flexion", [2.0, 0.2]),
        "patient.rom_limits.elbow_flexion", ["lower limit 2.0 rad must be below upper limit 0.2 rad"]),
    "rom_empty_range": (
        changed(PATIENT, "patient.rom_limits.elbow_flexion", [1.0, 1.0]),
        "patient.rom_limits.elbow_flexion", ["must be below upper limit"]),
    "rom_above_arm": (
        changed(PATIENT, "patient.rom_limits.elbow_flexion", [0.2, 2.9]),
        "patient.rom_limits.elbow_flexion[1]",
        ["upper limit 2.9 rad is outside the arm's range [0.0, 2.4] rad"]),
    "rom_below_arm": (
        changed(PATIENT, "patient.rom_limits.shoulder_flexion", [-0.7, 1.0]),
        "patient.rom_limits.shoulder_flexion[0]",
        ["lower limit -0.7 rad is outside the arm's range [-0.6, 2.6] rad"]),
    "max_velocity_zero": (
        changed(PATIENT, "patient.max_velocity", 0), "patient.max_velocity",
        ["greater than 0 rad/s and at most 3.0 rad/s"]),
    "max_velocity_negative": (
        changed(PATIENT, "patient.max_velocity", -1.0), "patient.max_velocity", ["greater than 0 rad/s"]),
    "max_velocity_with_unit": (
        changed(PATIENT, "patient.max_velocity", "1 rad/s"), "patient.max_velocity",
        ["write the number only, the unit is rad/s"]),
    "max_velocity_inf": (
        changed(PATIENT, "patient.max_velocity", INF), "patient.max_velocity", [".inf", "at most 3.0 rad/s"]),
    "force_too_high": (
        changed(PATIENT, "patient.max_interaction_force", 400.0), "patient.max_interaction_force",
        ["at most 100.0 N"]),
    "notes_not_text": (
        changed(PATIENT, "patient.notes", ["a", "b"]), "patient.notes", ["must be text, got a list"]),
}


@pytest.mark.parametrize("document, field, allowed", PATIENT_REFUSALS.values(), ids=PATIENT_REFUSALS.keys())
def test_patient_refusals_name_file_field_and_allowed(write, document, field, allowed):
    """Each invalid patient field gives one ConfigError naming the file, the field and what is allowed."""
    path = write(document, "patient.yaml")
    message = refused(load_patient, path, JOINT_LIMITS)
    assert_mentions(message, f"patient file {path}", f"'{field}'", *allowed)


def test_error_gives_the_line_of_the_field(write):
    """Errors found after parsing still point at the line where the field is written."""
    text = "patient:\n  id: P1\n  side: right\n  rom_limits:\n    elbow_flexion: [0.2, 2.9]\n"
    message = refused(load_patient, write(text), JOINT_LIMITS)
    assert_mentions(message, "'patient.rom_limits.elbow_flexion[1]' (line 5)")


def test_yaml_spellings_are_explained(write):
    """YAML traps are explained: 2e0 is text, yes is a boolean, 0001 is a number, a key 1 is no name."""
    base = "patient:\n  id: {id}\n  side: right\n  rom_limits: {{elbow_flexion: [0.2, {upper}]}}\n"
    message = refused(load_patient, write(base.format(id="P1", upper="2e0")), JOINT_LIMITS)
    assert_mentions(message, "got text '2e0'", "YAML reads it as text", "e.g. 2.0")
    message = refused(load_patient, write(base.format(id="P1", upper="yes")), JOINT_LIMITS)
    assert_mentions(message, "got the true/false value true")
    message = refused(load_patient, write(base.format(id="0001", upper="2.0")), JOINT_LIMITS)
    assert_mentions(message, "'patient.id'", "got the whole number 1; put it in quotes")
    message = refused(load_patient, write("patient:\n  1: x\n"), JOINT_LIMITS)
    assert_mentions(message, "'patient'", "field names must be text")


def test_joint_missing_from_the_arm_model_is_refused():
    """A ROM joint the caller's arm model does not have is refused, listing the model's joints."""
    limits = {joint: JOINT_LIMITS[joint] for joint in ("shoulder_flexion", "shoulder_abduction")}
    message = refused(parse_patient, PATIENT, "p.yaml", limits)
    assert_mentions(
        message, "'patient.rom_limits.elbow_flexion'", "no joint 'elbow_flexion'", "shoulder_abduction"
    )


# ---------------------------------------------------------------------------
# protocol field refusals

PROTOCOL_REFUSALS = {
    "unknown_field": (
        changed(PROTOCOL, "protocol.repetitons", 3), "protocol.repetitons",
        ["unknown field", "did you mean 'repetitions'?",
         "allowed fields: name, type, joint, start_angle, end_angle, repetitions"]),
    "missing_joint": (
        changed(PROTOCOL, "protocol.joint", delete=True), "protocol.joint", ["missing", "required fields"]),
    "name_trailing_newline": (
        changed(PROTOCOL, "protocol.name", "elbow\n"), "protocol.name", ["letters, digits"]),
    "unknown_type": (
        changed(PROTOCOL, "protocol.type", "active_asist"), "protocol.type",
        ["did you mean 'active_assist'", "allowed values: passive_rom, active, active_assist"]),
    "unknown_joint": (
        changed(PROTOCOL, "protocol.joint", "wrist"), "protocol.joint",
        ["allowed values: " + ", ".join(JOINT_NAMES)]),
    "joint_without_rom": (
        changed(PROTOCOL, "protocol.joint", "shoulder_rotation"), "protocol.joint",
        ["no ROM limits", "patient P-0042", "allowed joints: shoulder_flexion, elbow_flexion"]),
    "zero_repetitions": (
        changed(PROTOCOL, "protocol.repetitions", 0), "protocol.repetitions",
        ["a whole number from 1 to 200"]),
    "too_many_repetitions": (
        changed(PROTOCOL, "protocol.repetitions", 201), "protocol.repetitions", ["from 1 to 200"]),
    "fractional_repetitions": (
        changed(PROTOCOL, "protocol.repetitions", 2.5), "protocol.repetitions", ["must be a whole number"]),
    "bool_repetitions": (
        changed(PROTOCOL, "protocol.repetitions", True), "protocol.repetitions", ["must be a whole number"]),
    "negative_movement": (
        changed(PROTOCOL, "protocol.movement_duration", -2.0), "protocol.movement_duration",
        ["-2.0 s is out of range", "from 0.5 to 3600.0 s"]),
    "zero_movement": (
        changed(PROTOCOL, "protocol.movement_duration", 0), "protocol.movement_duration",
        ["from 0.5 to 3600.0 s"]),
    "negative_hold": (
        changed(PROTOCOL, "protocol.hold_duration", -0.5), "protocol.hold_duration", ["from 0 to 3600.0 s"]),
    "nan_hold": (
        changed(PROTOCOL, "protocol.hold_duration", NAN), "protocol.hold_duration", ["finite number"]),
    "text_angle": (
        changed(PROTOCOL, "protocol.start_angle", "0.5 rad"), "protocol.start_angle",
        ["must be a number in rad", "the unit is rad"]),
    "start_outside_rom": (
        changed(PROTOCOL, "protocol.start_angle", 0.1), "protocol.start_angle",
        ["0.1 rad is outside the range of motion of patient P-0042", "allowed: [0.2, 2.0] rad"]),
    "end_outside_rom": (
        changed(PROTOCOL, "protocol.end_angle", 2.2), "protocol.end_angle",
        ["2.2 rad is outside the range of motion", "allowed: [0.2, 2.0] rad"]),
    "no_motion": (
        changed(PROTOCOL, "protocol.end_angle", 0.5), "protocol.end_angle", ["two different angles"]),
    "too_fast_for_patient": (
        changed(PROTOCOL, "protocol.movement_duration", 1.0), "protocol.movement_duration",
        ["peak speed of 1.875 rad/s", "above 1.0 rad/s, the max_velocity of patient P-0042",
         "allowed: at least 1.88 s"]),
    "session_too_long": (
        changed(changed(PROTOCOL, "protocol.repetitions", 200), "protocol.hold_duration", 10.0),
        "protocol.repetitions", ["200 repetitions of 24.0 s", "4790.0 s", "session limit of 3600.0 s"]),
}


@pytest.mark.parametrize("document, field, allowed", PROTOCOL_REFUSALS.values(), ids=PROTOCOL_REFUSALS.keys())
def test_protocol_refusals_name_file_field_and_allowed(write, patient, document, field, allowed):
    """Each invalid protocol field gives one ConfigError naming the file, the field and what is allowed."""
    path = write(document, "protocol.yaml")
    message = refused(load_protocol, path, patient, JOINT_LIMITS, VELOCITY_LIMITS)
    assert_mentions(message, f"protocol file {path}", f"'{field}'", *allowed)


def test_speed_above_the_arm_velocity_limit_is_refused(write):
    """When the arm's joint velocity limit is lower than the patient's cap, the arm's limit is named."""
    patient = parse_patient(changed(PATIENT, "patient.max_velocity", 3.0), "p.yaml", JOINT_LIMITS)
    slow_arm = dict(VELOCITY_LIMITS, elbow_flexion=0.5)
    path = write(PROTOCOL)
    message = refused(load_protocol, path, patient, JOINT_LIMITS, slow_arm)
    assert_mentions(
        message, path, "'protocol.movement_duration'",
        "above 0.5 rad/s, the arm's velocity limit for elbow_flexion", "at least 3.75 s",
    )


def test_suggested_duration_is_accepted(patient):
    """The shortest duration suggested by a too-fast refusal is itself accepted."""
    document = changed(PROTOCOL, "protocol.end_angle", 1.9)
    document = changed(document, "protocol.movement_duration", 0.7)
    message = refused(parse_protocol, document, "q.yaml", patient, JOINT_LIMITS, VELOCITY_LIMITS)
    shortest = float(message.rsplit("at least ", 1)[1].split(" s")[0])
    document = changed(document, "protocol.movement_duration", shortest)
    accepted = parse_protocol(document, "q.yaml", patient, JOINT_LIMITS, VELOCITY_LIMITS)
    assert accepted.peak_velocity <= patient.max_velocity


def test_missing_velocity_limit_is_refused(patient):
    """A protocol joint without a velocity limit in the caller's arm model is refused, not ignored."""
    limits = {joint: 2.0 for joint in ("shoulder_flexion",)}
    message = refused(parse_protocol, PROTOCOL, "q.yaml", patient, JOINT_LIMITS, limits)
    assert_mentions(
        message, "protocol file q.yaml", "'protocol.joint'", "no velocity limit for elbow_flexion"
    )


@pytest.mark.parametrize("limit", [0.0, -1.0, float("nan")])
def test_unusable_arm_velocity_limit_is_refused(patient, limit):
    """A zero, negative or NaN velocity limit from the arm model is refused (NaN would pass every check)."""
    limits = dict(VELOCITY_LIMITS, elbow_flexion=limit)
    message = refused(parse_protocol, PROTOCOL, "q.yaml", patient, JOINT_LIMITS, limits)
    assert_mentions(message, "'protocol.joint'", "velocity limit for elbow_flexion", "cannot move")


@pytest.mark.parametrize("limits", [(float("nan"), 2.4), (2.4, 0.0)])
def test_unusable_arm_joint_limits_are_refused(limits):
    """NaN or reversed position limits from the arm model are refused, not silently accepted."""
    message = refused(parse_patient, PATIENT, "p.yaml", dict(JOINT_LIMITS, elbow_flexion=limits))
    assert_mentions(message, "'patient.rom_limits.elbow_flexion'", "limits for elbow_flexion are invalid")


# ---------------------------------------------------------------------------
# properties

KNOWN_KEYS = sorted(
    {"patient", "protocol", "id", "side", "rom_limits", "max_velocity", "notes", "name", "type", "joint",
     "start_angle", "end_angle", "repetitions", "movement_duration", "hold_duration", *JOINT_NAMES}
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["right", "left", "passive_rom", *JOINT_NAMES])
)
JUNK = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(KNOWN_KEYS) | st.text(max_size=8), inner, max_size=5),
    max_leaves=25,
)
FIELD_PATHS = [
    f"patient.{key}" for key in PATIENT["patient"]
] + ["patient.rom_limits.elbow_flexion"] + [f"protocol.{key}" for key in PROTOCOL["protocol"]]


@pytest.fixture(scope="module")
def junk_file(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("junk") / "junk.yaml"


def only_config_errors(call, *args) -> None:
    """Run ``call``: it may succeed or raise ConfigError, nothing else."""
    try:
        call(*args)
    except ConfigError as error:
        assert str(error)


@settings(max_examples=300, deadline=None)
@given(data=JUNK)
def test_junk_documents_raise_only_config_errors(data):
    """Any YAML-able document, at the top level or as the body of either file, gives only ConfigError."""
    patient = parse_patient(PATIENT, "p.yaml", JOINT_LIMITS)
    for document in (data, {"patient": data}, {"protocol": data}):
        only_config_errors(parse_patient, document, "p.yaml", JOINT_LIMITS)
        only_config_errors(parse_protocol, document, "q.yaml", patient, JOINT_LIMITS, VELOCITY_LIMITS)


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(FIELD_PATHS), value=JUNK)
def test_junk_in_one_field_raises_only_config_errors(field, value):
    """A valid file with any YAML-able value in one field gives only ConfigError (or loads if it fits)."""
    patient = parse_patient(PATIENT, "p.yaml", JOINT_LIMITS)
    if field.startswith("patient."):
        only_config_errors(parse_patient, changed(PATIENT, field, value), "p.yaml", JOINT_LIMITS)
    else:
        document = changed(PROTOCOL, field, value)
        only_config_errors(parse_protocol, document, "q.yaml", patient, JOINT_LIMITS, VELOCITY_LIMITS)


@settings(max_examples=200, deadline=None)
@given(data=JUNK)
def test_junk_files_raise_only_config_errors(junk_file, data):
    """Any YAML-able document written to a file and loaded gives only ConfigError."""
    patient = parse_patient(PATIENT, "p.yaml", JOINT_LIMITS)
    junk_file.write_text(yaml.safe_dump({"patient": data}), encoding="utf-8")
    only_config_errors(load_patient, str(junk_file), JOINT_LIMITS)
    junk_file.write_text(yaml.safe_dump({"protocol": data}), encoding="utf-8")
    only_config_errors(load_protocol, str(junk_file), patient, JOINT_LIMITS, VELOCITY_LIMITS)


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(lambda t: t.encode("utf-8")))
def test_arbitrary_bytes_raise_only_config_errors(junk_file, raw):
    """Any bytes in a file (broken YAML, control characters, bad UTF-8) give only ConfigError."""
    junk_file.write_bytes(raw)
    only_config_errors(load_patient, str(junk_file), JOINT_LIMITS)


@settings(max_examples=300, deadline=None)
@given(
    start=st.floats(-1.0, 3.0),
    end=st.floats(-1.0, 3.0),
    repetitions=st.integers(1, 250),
    movement=st.floats(0.0, 5000.0),
    hold=st.floats(0.0, 100.0),
    max_velocity=st.floats(0.1, 3.0),
)
def test_accepted_protocols_respect_every_limit(start, end, repetitions, movement, hold, max_velocity):
    """Whatever its numbers, an accepted protocol stays inside the ROM, the speed and the time caps."""
    patient = parse_patient(changed(PATIENT, "patient.max_velocity", max_velocity), "p.yaml", JOINT_LIMITS)
    document = copy.deepcopy(PROTOCOL)
    document["protocol"].update(
        start_angle=start, end_angle=end, repetitions=repetitions,
        movement_duration=movement, hold_duration=hold,
    )
    try:
        protocol = parse_protocol(document, "q.yaml", patient, JOINT_LIMITS, VELOCITY_LIMITS)
    except ConfigError:
        return
    lower, upper = patient.rom_limits["elbow_flexion"]
    assert lower <= protocol.start_angle <= upper and lower <= protocol.end_angle <= upper
    assert protocol.start_angle != protocol.end_angle
    assert protocol.max_velocity == min(max_velocity, VELOCITY_LIMITS["elbow_flexion"])
    assert protocol.peak_velocity <= protocol.max_velocity
    assert 1 <= protocol.repetitions <= profiles.MAX_REPETITIONS
    assert protocol.estimated_duration <= profiles.MAX_SESSION_DURATION
    assert math.isfinite(protocol.estimated_duration)


# ---------------------------------------------------------------------------
# exercise types other than passive_rom (docs/exercises.md)

TYPED_PATIENT = {"patient": dict(PATIENT["patient"], max_joint_torque=10.0, limb_masses=[2.0, 1.6])}
INTERACTIVE = {
    "active": {"name": "a", "type": "active", "joint": "elbow_flexion", "start_angle": 0.6, "end_angle": 1.2,
               "repetitions": 2, "movement_timeout": 6.0, "target_tolerance": 0.08, "hold_duration": 0.3,
               "spasm_reaction": "return_to_start", "weight_support": 0.5, "admittance_damping": 20.0},
    "active_assist": {"name": "a", "type": "active_assist", "joint": "elbow_flexion", "start_angle": 0.6,
                      "end_angle": 1.2, "repetitions": 2, "movement_duration": 1.5, "movement_timeout": 6.0,
                      "onset_velocity": 0.05, "assist_stiffness": 40.0, "assist_deadband": 0.05,
                      "assist_max_torque": 8.0},
    "assist_as_needed": {"name": "a", "type": "assist_as_needed", "joint": "elbow_flexion", "start_angle": 0.6,
                         "end_angle": 1.2, "repetitions": 3, "movement_duration": 1.5, "initial_gain": 0.8,
                         "forgetting_factor": 0.9, "learning_rate": 2.0},
    "resistive": {"name": "a", "type": "resistive", "joint": "elbow_flexion", "start_angle": 0.6, "end_angle": 1.2,
                  "repetitions": 2, "resistive_damping": 1.0, "resistive_stiffness": 5.0, "resistive_max_torque": 5.0},
    "isometric": {"name": "a", "type": "isometric", "joint": "elbow_flexion", "hold_angle": 1.0,
                  "target_torque": -3.0, "hold_time": 1.0, "repetitions": 2, "rest_duration": 1.5,
                  "contraction_timeout": 6.0, "torque_tolerance": 0.2},
    "path_guidance": {"name": "a", "type": "path_guidance", "repetitions": 2, "channel_width": 0.03,
                      "guidance_stiffness": 800.0, "waypoints": [
                          {"shoulder_flexion": 0.3, "elbow_flexion": 1.3},
                          {"shoulder_flexion": 0.7, "elbow_flexion": 0.8}]},
}


def typed(kind: str, **changes) -> dict:
    fields = dict(INTERACTIVE[kind])
    for key, value in changes.items():
        if value is None:
            fields.pop(key, None)
        else:
            fields[key] = value
    return {"protocol": fields}


def parse_typed(document):
    patient = parse_patient(TYPED_PATIENT, "p.yaml", JOINT_LIMITS)
    return parse_protocol(document, "q.yaml", patient, JOINT_LIMITS, VELOCITY_LIMITS)


@pytest.mark.parametrize("kind", sorted(INTERACTIVE))
def test_every_type_loads_with_its_fields_and_defaults(kind):
    protocol = parse_typed(typed(kind))
    assert protocol.type == kind and protocol.interactive
    assert protocol.spasm_reaction in ("compliant_hold", "return_to_start")
    if kind == "path_guidance":
        assert protocol.waypoints[1] == {"shoulder_flexion": 0.7, "elbow_flexion": 0.8}
        assert protocol.joint == "shoulder_flexion" and protocol.channel_width == 0.03
    if kind == "assist_as_needed":
        assert (protocol.initial_gain, protocol.forgetting_factor, protocol.movement_timeout) == (0.8, 0.9, 10.0)
        assert protocol.error_tolerance == 0.0, "no tolerance by default: the law of Emken et al. as before"
        assert parse_typed(typed(kind, error_tolerance=0.06)).error_tolerance == 0.06
    if kind == "isometric":
        assert (protocol.hold_angle, protocol.target_torque, protocol.hold_time) == (1.0, -3.0, 1.0)


def test_shipped_examples_of_every_type_load():
    """config/protocols ships one example per type, each valid for the example patient."""
    patient = load_patient(resources.example_patient(), JOINT_LIMITS)
    kinds = set()
    for path in sorted((REPO / "config" / "protocols").glob("*.yaml")):
        protocol = load_protocol(path, patient, JOINT_LIMITS, VELOCITY_LIMITS)
        kinds.add(protocol.type)
        assert protocol.estimated_duration < 60.0, path
    assert kinds == set(profiles.EXERCISE_TYPES)


@pytest.mark.parametrize("kind, field, value, fragments", [
    ("active", "channel_width", 0.02, ["field 'channel_width' belongs to type path_guidance, not active"]),
    ("active", "movement_duration", 1.5, ["'movement_duration' belongs to type passive_rom or active_assist"]),
    ("isometric", "start_angle", 0.5, ["belongs to type passive_rom or active", "not isometric"]),
    ("path_guidance", "joint", "elbow_flexion", ["'joint' belongs to type", "not path_guidance"]),
    ("resistive", "assist_deadband", 0.1, ["belongs to type active_assist or assist_as_needed, not resistive"]),
    ("passive_rom", "spasm_reaction", "compliant_hold", ["not passive_rom"]),
    ("active_assist", "error_tolerance", 0.05, ["field 'error_tolerance' belongs to type assist_as_needed, not active_assist"]),
])
def test_a_field_of_another_type_is_refused_by_name(kind, field, value, fragments):
    document = typed("active", type=kind) if kind == "passive_rom" else typed(kind)
    if kind == "passive_rom":
        document = changed(PROTOCOL, "protocol." + field, value)
    else:
        document["protocol"][field] = value
    message = refused(parse_typed, document)
    assert_mentions(message, "protocol.%s" % field, *fragments)


@pytest.mark.parametrize("kind, changes, where, fragments", [
    ("active", {"movement_timeout": 0.5}, "movement_timeout", ["out of range", "from 1.0 to 120.0 s"]),
    ("active", {"movement_timeout": 1.0}, "movement_timeout", ["too short to move", "at least 1.13 s"]),
    ("active", {"end_angle": 2.2}, "end_angle", ["outside the range of motion", "[0.2, 2.0]"]),
    ("active", {"spasm_reaction": "freeze"}, "spasm_reaction", ["allowed values: compliant_hold, return_to_start"]),
    ("active", {"target_tolerance": float("nan")}, "target_tolerance", ["finite number"]),
    ("active", {"weight_support": 1.5}, "weight_support", ["from 0.0 to 1.0"]),
    ("active_assist", {"movement_duration": None}, "movement_duration", ["missing"]),
    ("active_assist", {"movement_duration": 0.6}, "movement_duration", ["peak speed", "at least 1.13 s"]),
    ("active_assist", {"movement_timeout": 1.5}, "movement_timeout", ["no time beyond the reference movement"]),
    ("active_assist", {"assist_max_torque": 12.0}, "assist_max_torque", ["above the max_joint_torque", "10.0 N·m"]),
    ("active_assist", {"onset_timeout": 5.0}, "onset_timeout", ["leave no time within movement_timeout",
                                                                "less than 4.5 s"]),
    ("active_assist", {"onset_timeout": -1.0}, "onset_timeout", ["from 0.0 to 10.0 s"]),
    ("assist_as_needed", {"forgetting_factor": 0.0}, "forgetting_factor", ["greater than 0"]),
    ("assist_as_needed", {"initial_gain": float("inf")}, "initial_gain", ["out of range"]),
    ("assist_as_needed", {"error_tolerance": float("nan")}, "error_tolerance", ["finite number"]),
    ("assist_as_needed", {"error_tolerance": float("inf")}, "error_tolerance", ["out of range"]),
    ("assist_as_needed", {"error_tolerance": -0.01}, "error_tolerance", ["from 0.0 to 0.5 rad"]),
    ("assist_as_needed", {"error_tolerance": 0.6}, "error_tolerance", ["from 0.0 to 0.5 rad"]),
    ("assist_as_needed", {"error_tolerance": "small"}, "error_tolerance", ["number"]),
    ("resistive", {"resistive_damping": 0.0, "resistive_stiffness": 0.0}, "resistive_damping", ["no resistance"]),
    ("resistive", {"resistive_max_torque": 20.0}, "resistive_max_torque", ["above the max_joint_torque"]),
    ("isometric", {"target_torque": 0.0}, "target_torque", ["asks for no effort"]),
    ("isometric", {"target_torque": -11.0}, "target_torque", ["above the max_joint_torque"]),
    ("isometric", {"hold_time": 7.0}, "hold_time", ["cannot be held within contraction_timeout"]),
    ("isometric", {"hold_angle": 2.5}, "hold_angle", ["outside the range of motion"]),
    ("isometric", {"joint": "shoulder_rotation"}, "joint", ["no ROM limits", "allowed joints"]),
    ("path_guidance", {"waypoints": [{"elbow_flexion": 1.0}]}, "waypoints", ["has 1 item(s)", "2 to 10 arm postures"]),
    ("path_guidance", {"channel_width": 0.5}, "channel_width", ["from 0.005 to 0.1 m"]),
    ("path_guidance", {"waypoints": [{"elbow_flexion": 1.0}, {"elbow_flexion": 1.02}]}, "waypoints[1]",
     ["within target_tolerance"]),
    ("path_guidance", {"waypoints": [{"elbow_flexion": 1.0}, {"shoulder_flexion": 0.5}]}, "waypoints[1]",
     ["must name the same joints"]),
    ("path_guidance", {"waypoints": [{"elbow_flexion": 1.0}, {"elbow_flexion": 2.3}]}, "waypoints[1].elbow_flexion",
     ["outside the range of motion"]),
    ("path_guidance", {"waypoints": [{"elbow_flexion": 1.0}, {"elbow_fexion": 1.5}]}, "waypoints[1].elbow_fexion",
     ["unknown joint", "did you mean 'elbow_flexion'"]),
    ("path_guidance", {"waypoints": [{"shoulder_rotation": 0.0}, {"shoulder_rotation": 0.5}]},
     "waypoints[0].shoulder_rotation", ["no ROM limits"]),
])
def test_bad_fields_of_each_type_are_refused_by_name(kind, changes, where, fragments):
    message = refused(parse_typed, typed(kind, **changes))
    assert_mentions(message, f"field 'protocol.{where}'", *fragments)


def test_weight_support_needs_limb_masses():
    patient = parse_patient(PATIENT, "p.yaml", JOINT_LIMITS)  # no limb_masses
    message = refused(parse_protocol, typed("active"), "q.yaml", patient, JOINT_LIMITS, VELOCITY_LIMITS)
    assert_mentions(message, "protocol.weight_support", "no limb_masses")


@pytest.mark.parametrize("field, value, fragments", [
    ("limb_masses", [2.0], ["has 1 item(s)", "[upper_arm, forearm_and_hand]"]),
    ("limb_masses", [2.0, 25.0], ["out of range", "kg"]),
    ("max_joint_torque", 80.0, ["out of range", "N·m"]),
    ("max_joint_torque", float("nan"), ["finite number"]),
])
def test_patient_interaction_fields_are_checked(field, value, fragments):
    message = refused(parse_patient, changed(TYPED_PATIENT, "patient." + field, value), "p.yaml", JOINT_LIMITS)
    assert_mentions(message, "patient." + field, *fragments)
