"""Units of the dynamixel backend: configuration, conversions, control tables (no device)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from rehab_robot import JOINT_NAMES
from rehab_robot.errors import ConfigError, HardwareError
from rehab_robot.hardware import backend_class, backend_options
from rehab_robot.hardware.dynamixel import (
    FAMILIES,
    ControlTable,
    DynamixelArm,
    check_latency_timer,
    decode_hardware_error,
    default_config_path,
    load_config,
    transaction_time,
)
from rehab_robot.hardware.interface import JointCommand

SHIPPED = default_config_path()


def _model_files() -> Path:
    """ROBOTIS's own control tables, shipped in the SDK wheel (dynamixel_easy_sdk)."""
    import dynamixel_easy_sdk

    return Path(dynamixel_easy_sdk.__file__).parent / "control_table"


def _vendor_table(model_file: str) -> dict[str, tuple[int, int]]:
    """Data name -> (address, size) from a ROBOTIS .model file."""
    table, in_table = {}, False
    for line in (_model_files() / model_file).read_text().splitlines():
        if line.startswith("["):
            in_table = line.strip() == "[control table]"
            continue
        parts = line.split("\t")
        if in_table and len(parts) == 3 and parts[0].isdigit():
            table.setdefault(parts[2].strip(), (int(parts[0]), int(parts[1])))
    return table


def _write_config(tmp_path, mutate) -> Path:
    data = yaml.safe_load(SHIPPED.read_text())
    mutate(data)
    path = tmp_path / "arm.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_shipped_config_loads_with_urdf_joint_names():
    """The shipped file is valid and names the URDF joints, in the project's order."""
    config = load_config(SHIPPED)
    assert tuple(j.name for j in config.joints) == JOINT_NAMES
    assert len({j.id for j in config.joints}) == 4
    assert config.baudrate == 4000000


@pytest.mark.parametrize(
    "mutate, field, allowed",
    [
        (lambda d: d["joints"].update(wrist={"id": 9}), "wrist", "allowed: shoulder_flexion"),
        (lambda d: d["joints"]["elbow_flexion"].pop("id"), "joints.elbow_flexion.id", "0 to 252"),
        (lambda d: d["joints"]["elbow_flexion"].update(id=1), "joints.elbow_flexion.id", "already the id of joint shoulder_flexion"),
        (lambda d: d["joints"]["shoulder_rotation"].update(counts_per_revolution=0),
         "joints.shoulder_rotation.counts_per_revolution", "> 0"),
        (lambda d: d["joints"]["shoulder_rotation"].update(counts_per_revolution=-4096),
         "joints.shoulder_rotation.counts_per_revolution", "> 0"),
        (lambda d: d["joints"]["shoulder_flexion"].update(family="mx"), "joints.shoulder_flexion.family",
         "one of x, p"),
        (lambda d: d["joints"]["shoulder_flexion"].update(model="XM540-W270"), "joints.shoulder_flexion.model",
         "PH54-200-S500-R"),
        (lambda d: d["joints"]["elbow_flexion"].update(direction=2), "joints.elbow_flexion.direction", "1 or -1"),
        (lambda d: d["joints"]["elbow_flexion"].update(torque_constant=float("nan")),
         "joints.elbow_flexion.torque_constant", "> 0"),
        (lambda d: d["joints"].pop("elbow_flexion"), "'elbow_flexion' is missing", "every joint"),
        (lambda d: d["joints"]["elbow_flexion"].update(colour="red"), "unknown field 'colour'", "torque_limit"),
        (lambda d: d.update(baudrate=115201), "baudrate", "4000000"),
        (lambda d: d.update(max_missed_cycles=0), "max_missed_cycles", "1 to 100"),
    ],
)
def test_bad_config_names_file_field_and_allowed(tmp_path, mutate, field, allowed):
    """Each mistake gives one error naming the file, the field and what is allowed."""
    path = _write_config(tmp_path, mutate)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message and field in message and allowed in message
    assert "\n" not in message


def test_unreadable_and_non_mapping_config(tmp_path):
    """A missing file and a file that is not a mapping are refused by name."""
    with pytest.raises(ConfigError, match="nowhere.yaml.*cannot be read"):
        load_config(tmp_path / "nowhere.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_config(path)


def test_check_options_does_not_open_the_port():
    """Options are checked (and a bad one refused) before any device is touched."""
    cls = backend_class("dynamixel")
    assert cls is DynamixelArm
    options = backend_options("{port: /dev/does-not-exist-dxl, baudrate: 1000000}", cls)
    assert options["port"] == "/dev/does-not-exist-dxl"
    with pytest.raises(ConfigError, match="baudrate.*4000000"):
        backend_options("{baudrate: 12345}", cls)
    with pytest.raises(ConfigError, match="allowed options: config, port, baudrate, response_margin"):
        backend_options("{serial: /dev/ttyUSB0}", cls)
    with pytest.raises(ConfigError, match="hardware option 'response_margin' = 5: must be between"):
        backend_options("{response_margin: 5}", cls)
    assert backend_options("{response_margin: 0.02}", cls)["response_margin"] == 0.02


def test_missing_port_is_one_line_at_construction():
    """A port that does not exist is a device-lost HardwareError naming it, at once."""
    with pytest.raises(HardwareError) as info:
        DynamixelArm(port="/dev/does-not-exist-dxl")
    assert "/dev/does-not-exist-dxl does not exist" in str(info.value)
    assert info.value.device_lost and "\n" not in str(info.value)


def test_position_round_trip_and_sign(tmp_path):
    """Angles survive counts and back within one count; direction and zero apply."""
    config = load_config(SHIPPED)
    for joint in config.joints:
        resolution = 2 * math.pi / (joint.counts_per_revolution * joint.gear_ratio)
        for angle in (-1.2, -0.01, 0.0, 0.7, 2.5):
            counts = joint.position_to_counts(angle)
            assert abs(joint.counts_to_position(counts) - angle) <= resolution / 2 + 1e-12
    rotation = config.joints[2]
    assert rotation.direction == -1
    assert rotation.position_to_counts(0.5) < rotation.zero_offset
    path = _write_config(tmp_path, lambda d: d["joints"]["elbow_flexion"].update(zero_offset=2048))
    elbow = load_config(path).joints[3]
    assert elbow.position_to_counts(0.0) == 2048
    # 4:1 gear: a quarter turn of the joint is a full turn of the servo.
    assert elbow.position_to_counts(math.pi / 2) - 2048 == pytest.approx(elbow.counts_per_revolution, abs=1)


def test_velocity_and_torque_units(tmp_path):
    """Velocity and current counts follow the family's units, the gear and the direction."""
    def mutate(d):
        d["joints"]["elbow_flexion"].update(family="x", model="XM540-W270", counts_per_revolution=4096,
                                            gear_ratio=4.0, torque_constant=2.4)
        d["joints"]["elbow_flexion"].pop("torque_limit")
    elbow = load_config(_write_config(tmp_path, mutate)).joints[3]
    # X-series: 0.229 rev/min per count at the horn; the joint turns 4 times slower.
    assert elbow.counts_to_velocity(100) == pytest.approx(100 * 0.229 * 2 * math.pi / 60 / 4)
    # 2.69 mA per count (family default), 2.4 N·m/A at the horn, x4 at the joint.
    assert elbow.counts_to_torque(-1000) == pytest.approx(-1000 * 2.69e-3 * 2.4 * 4)
    assert elbow.torque_to_current_counts(10.0) == int(10.0 / (4 * 2.4 * 2.69e-3))
    flexion = load_config(SHIPPED).joints[0]
    assert flexion.counts_to_velocity(1000) == pytest.approx(1000 * 0.01 * 2 * math.pi / 60 / 2)
    assert flexion.counts_to_torque(1000) == pytest.approx(1.0 * 4.8 * 2)


@pytest.mark.parametrize("family, model_file", [("x", "xm540_w270.model"), ("p", "ph54_200_s500.model")])
def test_control_tables_match_robotis_model_files(family, model_file):
    """Every address the backend uses is the one in ROBOTIS's own table for that family."""
    vendor = _vendor_table(model_file)
    table = FAMILIES[family]
    expected = {
        "Operating Mode": (table.operating_mode, 1), "Return Delay Time": (table.return_delay_time, 1),
        "Current Limit": (table.current_limit, 2), "Torque Enable": (table.torque_enable, 1),
        "Hardware Error Status": (table.hardware_error_status, 1), "Goal Position": (table.goal_position, 4),
        "Present Current": (table.present_start + ControlTable.offset_current, 2),
        "Present Velocity": (table.present_start + ControlTable.offset_velocity, 4),
        "Present Position": (table.present_start + ControlTable.offset_position, 4),
        "Present Input Voltage": (table.present_start + ControlTable.offset_voltage, 2),
        "Present Temperature": (table.present_start + ControlTable.offset_temperature, 1),
    }
    if table.goal_current is not None:
        expected["Goal Current"] = (table.goal_current, 2)
    for name, address in expected.items():
        assert vendor[name] == address, name
    last = vendor["Present Temperature"]
    assert last[0] + last[1] - table.present_start == ControlTable.present_length


def test_model_numbers_match_robotis_list():
    """The backend's model numbers name the same models as ROBOTIS's model list."""
    vendor = {}
    for line in (_model_files() / "dynamixel.model").read_text().splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and parts[0].isdigit():
            vendor[int(parts[0])] = parts[1].removesuffix(".model")
    for table in FAMILIES.values():
        for number, name in table.models.items():
            # Vendor file names drop the "-R" suffix and use underscores.
            assert vendor[number] == name.lower().replace("-", "_").removesuffix("_r"), name


def test_hardware_error_bits_decode_to_text():
    """Hardware Error Status bits read as the e-manual names them."""
    assert decode_hardware_error(0x20, "x") == "overload error"
    assert decode_hardware_error(0x24, "x") == "overheating error, overload error"
    assert decode_hardware_error(0x19, "p") == "input voltage error, motor encoder error, electrical shock error"
    assert decode_hardware_error(0x02, "p") == "motor hall sensor error"
    assert "unknown error bit 1" in decode_hardware_error(0x02, "x")
    assert decode_hardware_error(0, "x") == "no error"


def test_transaction_time_follows_baud_rate(tmp_path):
    """A slower bus takes longer per cycle; a second family adds a second transaction."""
    fast = load_config(SHIPPED)
    slow = load_config(SHIPPED, baudrate=1000000)
    assert transaction_time(slow) > transaction_time(fast) > 2 * fast.latency_timer

    def mutate(d):
        d["joints"]["elbow_flexion"].update(family="x", model="XM540-W270")
    mixed = load_config(_write_config(tmp_path, mutate))
    assert transaction_time(mixed) > transaction_time(fast) + 2 * fast.latency_timer


def test_write_refuses_nan_and_wrong_size_before_touching_the_bus():
    """write() validates like every backend: ValueError, nothing sent."""
    arm = DynamixelArm.__new__(DynamixelArm)  # no port: validation comes first
    arm.joints = load_config(SHIPPED).joints
    arm.joint_names = JOINT_NAMES
    with pytest.raises(ValueError, match="NaN"):
        arm.write(JointCommand(np.array([0, 0, np.nan, 0]), np.zeros(4), np.zeros(4)))
    with pytest.raises(ValueError, match="4 elements"):
        arm.write(JointCommand(np.zeros(3), np.zeros(4), np.zeros(4)))


def test_adapter_latency_timer_is_checked(tmp_path):
    """A 16 ms FTDI latency timer with 1 ms configured is refused with the fix; a pty has none."""
    sysfs = tmp_path / "usb-serial"
    (sysfs / "ttyUSB7").mkdir(parents=True)
    timer = sysfs / "ttyUSB7" / "latency_timer"
    timer.write_text("16\n")
    port = tmp_path / "by-id-link"
    port.symlink_to(tmp_path / "ttyUSB7")  # udev names resolve to the tty
    with pytest.raises(HardwareError) as info:
        check_latency_timer(str(port), 0.001, sysfs)
    assert "latency timer is 16 ms" in str(info.value) and f"echo 1 | sudo tee {timer}" in str(info.value)
    timer.write_text("1\n")
    assert check_latency_timer(str(port), 0.001, sysfs) == 0.001
    assert check_latency_timer("/dev/pts/3", 0.001, sysfs) is None
