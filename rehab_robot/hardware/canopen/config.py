"""The CANopen arm configuration file: bus, PDO layout and each joint's drive, validated.

Plain module (no CAN library): loading, checking, and the SI <-> drive unit conversions.
Every refusal is one line naming the file, the field and what is allowed.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional


from rehab_robot import JOINT_NAMES
from rehab_robot.errors import ConfigError
from rehab_robot.hardware.config_file import is_number, read_config_mapping

#: Bitrates every CAN controller and python-can interface offers [bit/s].
BITRATES = (10000, 20000, 50000, 100000, 125000, 250000, 500000, 800000, 1000000)
#: Quick stop option codes (0x605A) that stop and then stay in Quick stop active, holding.
HOLDING_QUICK_STOP_CODES = (5, 6, 7, 8)


@dataclass(frozen=True)
class Mapped:
    """One object in a PDO: index, sub-index, size [bit], and what it carries."""

    index: int
    subindex: int
    bits: int
    role: str  # controlword, target_position, velocity_offset, torque_offset, statusword, ...


CONTROLWORD = Mapped(0x6040, 0, 16, "controlword")
TARGET_POSITION = Mapped(0x607A, 0, 32, "target_position")
VELOCITY_OFFSET = Mapped(0x60B1, 0, 32, "velocity_offset")
TORQUE_OFFSET = Mapped(0x60B2, 0, 16, "torque_offset")
STATUSWORD = Mapped(0x6041, 0, 16, "statusword")
POSITION_ACTUAL = Mapped(0x6064, 0, 32, "position")
VELOCITY_ACTUAL = Mapped(0x606C, 0, 32, "velocity")
TORQUE_ACTUAL = Mapped(0x6077, 0, 16, "torque")


@dataclass(frozen=True)
class PdoLayout:
    """Which objects each RPDO and TPDO of a drive carries (at most 64 bits each).

    Attributes:
        name: Layout name (the configuration's ``pdo_layout``).
        rpdos: Objects of RPDO1, RPDO2, ... (host -> drive).
        tpdos: Objects of TPDO1, TPDO2, ... (drive -> host).
        description: One line for the docs and diagnostics.
    """

    name: str
    rpdos: tuple
    tpdos: tuple
    description: str

    def roles(self) -> set:
        """The roles carried by this layout."""
        return {m.role for pdo in (*self.rpdos, *self.tpdos) for m in pdo}


#: The PDO layouts the backend can configure. ``full`` carries both feed-forwards and
#: the measured velocity (2 RPDOs + 2 TPDOs per drive, 6 bytes each); ``compact`` one
#: 8-byte RPDO and one 8-byte TPDO per drive: no velocity offset (the drive's CSP loop
#: takes the velocity from the target positions) and the velocity is the difference of
#: positions between SYNCs.
LAYOUTS = {
    "full": PdoLayout(
        "full",
        rpdos=((CONTROLWORD, TARGET_POSITION), (VELOCITY_OFFSET, TORQUE_OFFSET)),
        tpdos=((STATUSWORD, POSITION_ACTUAL), (VELOCITY_ACTUAL, TORQUE_ACTUAL)),
        description="RPDO1 controlword+target position, RPDO2 velocity offset+torque offset, "
                    "TPDO1 statusword+position, TPDO2 velocity+torque (4 x 6-byte frames per drive)",
    ),
    "compact": PdoLayout(
        "compact",
        rpdos=((CONTROLWORD, TARGET_POSITION, TORQUE_OFFSET),),
        tpdos=((STATUSWORD, POSITION_ACTUAL, TORQUE_ACTUAL),),
        description="RPDO1 controlword+target position+torque offset, TPDO1 statusword+position+torque "
                    "(2 x 8-byte frames per drive; velocity from position differences)",
    ),
}


@dataclass(frozen=True)
class JointConfig:
    """One joint's drive and how its units map to SI units at the joint.

    Attributes:
        name: URDF joint name.
        node_id: CANopen node id (1-127).
        eds: The drive's EDS file.
        counts_per_revolution: Position increments per motor turn (0x6064/0x607A units).
        gear_ratio: Motor turns per joint turn.
        direction: +1 or -1: sign of joint angle per increment.
        zero_offset: Position actual value [increments] at joint angle 0 (absolute encoder).
        rated_torque: Motor rated torque [N·m] (0x6076), or None to read it from the drive.
        torque_constant: [N·m/A] at the motor, with the drive's rated current (0x6075)
            giving the rated torque; None when ``rated_torque`` or 0x6076 is used.
    """

    name: str
    node_id: int
    eds: Path
    counts_per_revolution: float
    gear_ratio: float
    direction: int
    zero_offset: int
    rated_torque: Optional[float]
    torque_constant: Optional[float]

    @property
    def counts_per_radian(self) -> float:
        """Increments per radian at the joint."""
        return self.counts_per_revolution * self.gear_ratio / (2.0 * math.pi)

    def counts_to_position(self, counts: int) -> float:
        """Position actual value [increments] -> joint angle [rad]."""
        return self.direction * (counts - self.zero_offset) / self.counts_per_radian

    def position_to_counts(self, angle: float) -> int:
        """Joint angle [rad] -> target position [increments] (rounded, clamped to int32)."""
        return _int32(self.zero_offset + round(self.direction * angle * self.counts_per_radian))

    def counts_to_velocity(self, counts_per_s: float) -> float:
        """Velocity actual value [increments/s] -> joint velocity [rad/s]."""
        return self.direction * counts_per_s / self.counts_per_radian

    def velocity_to_counts(self, velocity: float) -> int:
        """Joint velocity [rad/s] -> velocity offset [increments/s] (rounded, clamped to int32)."""
        return _int32(round(self.direction * velocity * self.counts_per_radian))

    def permille_to_torque(self, permille: int, rated: float) -> float:
        """Torque actual value [‰ of rated motor torque ``rated`` N·m] -> joint torque [N·m]."""
        return self.direction * permille * 1e-3 * rated * self.gear_ratio

    def torque_to_permille(self, torque: float, rated: float) -> int:
        """Joint torque [N·m] -> torque offset [‰ of rated motor torque ``rated`` N·m] (int16)."""
        value = round(self.direction * torque / (self.gear_ratio * rated * 1e-3))
        return max(-32768, min(32767, value))


def _int32(value: int) -> int:
    return max(-2**31, min(2**31 - 1, int(value)))


@dataclass(frozen=True)
class ArmConfig:
    """The bus, the cyclic settings and every joint's drive (``joints`` in JOINT_NAMES order).

    Attributes:
        path: The configuration file.
        interface: python-can interface name (socketcan, slcan, pcan, kvaser, ...).
        channel: The interface's channel (can0, /dev/ttyACM0, PCAN_USBBUS1, 0, ...).
        bitrate: [bit/s].
        bus_options: Extra python-can arguments for the interface.
        layout: The PDO layout.
        heartbeat_time: Drive heartbeat producer time [s] (0x1017).
        heartbeat_timeout: Time [s] without a heartbeat before a drive counts as lost.
        quick_stop_option_code: 0x605A; one that holds in Quick stop active.
        max_missed_cycles: SYNC cycles in a row without a drive's TPDOs before a fault.
        max_bus_load: Largest computed bus load allowed, as a fraction of the bitrate.
        sdo_timeout: [s] per SDO answer.
        startup_timeout: [s] for boot-up and each state change at start-up.
        joints: One :class:`JointConfig` per joint.
    """

    path: Path
    interface: str
    channel: str
    bitrate: int
    bus_options: dict
    layout: PdoLayout
    heartbeat_time: float
    heartbeat_timeout: float
    quick_stop_option_code: int
    max_missed_cycles: int
    max_bus_load: float
    sdo_timeout: float
    startup_timeout: float
    joints: tuple


_TOP_FIELDS = {
    "interface": "a python-can interface name such as socketcan, slcan, pcan, kvaser",
    "channel": "the interface's channel: can0 (socketcan), /dev/ttyACM0 (slcan), PCAN_USBBUS1 (pcan), ...",
    "bitrate": f"one of {', '.join(map(str, BITRATES))} [bit/s]",
    "bus_options": "a mapping of extra python-can arguments",
    "pdo_layout": f"one of {', '.join(LAYOUTS)}",
    "heartbeat_time": "between 0.01 and 1 s",
    "heartbeat_timeout": "between 1.5 x heartbeat_time and 5 s",
    "quick_stop_option_code": f"one of {', '.join(map(str, HOLDING_QUICK_STOP_CODES))} (stop, then hold in Quick stop active)",
    "max_missed_cycles": "an integer from 1 to 100",
    "max_bus_load": "between 0.05 and 0.6 (60 % of the bitrate at most)",
    "sdo_timeout": "between 0.01 and 2 s",
    "startup_timeout": "between 0.1 and 30 s",
    "eds": "the path of an EDS file (relative to the configuration file)",
    "joints": f"a mapping with one entry per joint: {', '.join(JOINT_NAMES)}",
}
_JOINT_FIELDS = {
    "node_id": "an integer from 1 to 127, different for every joint",
    "eds": "the path of the drive's EDS file (relative to the configuration file)",
    "counts_per_revolution": "a number > 0 (position increments per motor turn)",
    "gear_ratio": "a number > 0 (motor turns per joint turn)",
    "direction": "1 or -1",
    "zero_offset": "an integer (position actual value [increments] at joint angle 0)",
    "rated_torque": "a number > 0 [N·m] (motor rated torque, 0x6076)",
    "torque_constant": "a number > 0 [N·m/A] (with the drive's rated current 0x6075)",
}
_JOINT_REQUIRED = ("node_id", "counts_per_revolution", "gear_ratio", "direction", "zero_offset")


def default_config_path() -> Path:
    """Return the shipped arm configuration, ``config/hardware/canopen_arm.yaml``."""
    from rehab_robot.resources import share_dir

    return share_dir() / "config" / "hardware" / "canopen_arm.yaml"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def load_config(path, interface: Optional[str] = None, channel: Optional[str] = None,
                bitrate: Optional[int] = None) -> ArmConfig:
    """Read and validate an arm configuration file; ``interface``, ``channel`` and
    ``bitrate`` [bit/s] override the file's values.

    Raises:
        ConfigError: naming the file, the field and what is allowed.
    """
    path = Path(path)

    def bad(field: str, value, allowed: str) -> ConfigError:
        return ConfigError(f"{path}: {field} = {value!r}: must be {allowed}")

    data = read_config_mapping(path, "canopen", _TOP_FIELDS)
    for name, value in (("interface", interface), ("channel", channel), ("bitrate", bitrate)):
        if value is not None:
            data[name] = value

    def number(field, low, high, default, integer=False):
        value = data.get(field, default)
        if not (is_number(value) and low <= value <= high and (not integer or _is_int(value))):
            raise bad(field, value, _TOP_FIELDS[field])
        return value

    interface = data.get("interface")
    if not isinstance(interface, str) or not interface:
        raise bad("interface", interface, _TOP_FIELDS["interface"])
    channel = data.get("channel")
    if _is_int(channel):
        channel = str(channel)
    if not isinstance(channel, str) or not channel:
        raise bad("channel", channel, _TOP_FIELDS["channel"])
    bitrate = data.get("bitrate", 1000000)
    if bitrate not in BITRATES or not _is_int(bitrate):
        raise bad("bitrate", bitrate, _TOP_FIELDS["bitrate"])
    bus_options = data.get("bus_options") or {}
    if not isinstance(bus_options, dict) or not all(isinstance(k, str) for k in bus_options):
        raise bad("bus_options", bus_options, _TOP_FIELDS["bus_options"])
    layout = data.get("pdo_layout", "compact")
    if layout not in LAYOUTS:
        raise bad("pdo_layout", layout, _TOP_FIELDS["pdo_layout"])
    heartbeat = float(number("heartbeat_time", 0.01, 1.0, 0.05))
    data.setdefault("heartbeat_timeout", 3.0 * heartbeat)
    timeout = float(number("heartbeat_timeout", 1.5 * heartbeat, 5.0, None))
    code = data.get("quick_stop_option_code", 6)
    if code not in HOLDING_QUICK_STOP_CODES or not _is_int(code):
        raise bad("quick_stop_option_code", code, _TOP_FIELDS["quick_stop_option_code"])
    missed = number("max_missed_cycles", 1, 100, 3, integer=True)
    max_load = float(number("max_bus_load", 0.05, 0.6, 0.6))
    sdo_timeout = float(number("sdo_timeout", 0.01, 2.0, 0.3))
    startup_timeout = float(number("startup_timeout", 0.1, 30.0, 3.0))
    default_eds = data.get("eds")

    joints_data = data.get("joints")
    if not isinstance(joints_data, dict):
        raise bad("joints", joints_data, _TOP_FIELDS["joints"])
    for name in joints_data:
        if name not in JOINT_NAMES:
            raise ConfigError(f"{path}: joints: unknown joint {name!r}; allowed: {', '.join(JOINT_NAMES)}")
    joints, seen = [], {}
    for name in JOINT_NAMES:
        if name not in joints_data:
            raise ConfigError(f"{path}: joints: joint {name!r} is missing; every joint needs "
                              f"an entry: {', '.join(JOINT_NAMES)}")
        joints.append(_joint_config(path, name, joints_data[name], seen, default_eds, bad))
    return ArmConfig(path, interface, channel, int(bitrate), dict(bus_options), LAYOUTS[layout],
                     heartbeat, timeout, int(code), int(missed), max_load, sdo_timeout,
                     startup_timeout, tuple(joints))


def _joint_config(path: Path, name: str, entry, seen: dict, default_eds, bad) -> JointConfig:
    """Validate one ``joints.<name>`` entry."""
    where = f"joints.{name}"
    if not isinstance(entry, dict):
        raise bad(where, entry, f"a mapping with fields {', '.join(_JOINT_FIELDS)}")
    unknown = sorted(set(entry) - set(_JOINT_FIELDS), key=str)
    if unknown:
        raise ConfigError(f"{path}: {where}: unknown field {unknown[0]!r}; allowed: {', '.join(_JOINT_FIELDS)}")
    for field in _JOINT_REQUIRED:
        if field not in entry:
            raise ConfigError(f"{path}: {where}.{field} is missing; it must be {_JOINT_FIELDS[field]}")

    def value(field, check):
        v = entry.get(field)
        if not check(v):
            raise bad(f"{where}.{field}", v, _JOINT_FIELDS[field])
        return v

    def positive(v):
        return is_number(v) and v > 0

    node_id = value("node_id", lambda v: _is_int(v) and 1 <= v <= 127)
    if node_id in seen:
        raise ConfigError(f"{path}: {where}.node_id = {node_id}: already the node id of joint "
                          f"{seen[node_id]}; {_JOINT_FIELDS['node_id']}")
    seen[node_id] = name
    eds = entry.get("eds", default_eds)
    if not isinstance(eds, str) or not eds:
        raise bad(f"{where}.eds", eds, _JOINT_FIELDS["eds"] + " (or a top-level eds for every joint)")
    eds_path = (path.parent / os.path.expanduser(eds)).resolve()
    if not eds_path.is_file():
        raise ConfigError(f"{path}: {where}.eds = {eds!r}: no such file ({eds_path}); "
                          f"must be {_JOINT_FIELDS['eds']}")
    rated = entry.get("rated_torque")
    kt = entry.get("torque_constant")
    if rated is not None and kt is not None:
        raise ConfigError(f"{path}: {where}: rated_torque and torque_constant are both given; "
                          "give one of them (or neither: the drive's 0x6076 is read)")
    if rated is not None:
        value("rated_torque", positive)
    if kt is not None:
        value("torque_constant", positive)
    return JointConfig(
        name=name, node_id=node_id, eds=eds_path,
        counts_per_revolution=float(value("counts_per_revolution", positive)),
        gear_ratio=float(value("gear_ratio", positive)),
        direction=value("direction", lambda v: v in (1, -1) and not isinstance(v, bool)),
        zero_offset=value("zero_offset", _is_int),
        rated_torque=None if rated is None else float(rated),
        torque_constant=None if kt is None else float(kt),
    )


def check_channel(config: ArmConfig) -> None:
    """Refuse a CAN channel that does not exist, where that can be seen without opening it.

    socketcan: the network interface must exist (``/sys/class/net/<channel>``); slcan: the
    serial device must exist (a ``port@baud`` suffix is allowed); other interfaces are
    checked when the bus is opened.

    Raises:
        ConfigError: naming the file, the channel and what exists.
    """
    if config.interface == "socketcan":
        net = Path("/sys/class/net")
        if not (net / config.channel).exists():
            cans = sorted(p.name for p in net.glob("*can*")) if net.is_dir() else []
            raise ConfigError(
                f"{config.path}: channel = {config.channel!r}: no such socketcan interface; existing: "
                f"{', '.join(cans) or 'none'} (bring one up with: ip link set can0 up type can bitrate "
                f"{config.bitrate})")
    elif config.interface == "slcan":
        device = config.channel.split("@")[0]
        if "://" not in device and not os.path.exists(device):
            raise ConfigError(f"{config.path}: channel = {config.channel!r}: no such serial device; "
                              "must be the USB-CAN adapter's device, e.g. /dev/ttyACM0 or /dev/serial/by-id/...")
