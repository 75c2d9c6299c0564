"""``dynamixel``: the arm on ROBOTIS Dynamixel servos, Protocol 2.0 over a serial bus.

Built on the ROBOTIS ``dynamixel-sdk`` (``PortHandler``, ``PacketHandler(2.0)``,
``GroupSyncRead``, ``GroupSyncWrite``; pyserial underneath). Every cycle costs one Sync
Read (present current, velocity, position, voltage, temperature) and one Sync Write
(goal position) per servo family on the bus: the shipped arm is all Dynamixel-P, so one
transaction each way.

Configuration: one YAML file (``config``, default ``config/hardware/dynamixel_arm.yaml``)
describing the bus and each joint's servo; see docs/hardware/dynamixel.md.

Control: each servo runs its own position loop. X-series servos run in current-based
position control (operating mode 5) with Goal Current as the torque limit; Dynamixel-P
servos, which lack that mode, run in position control (mode 3) bounded by their Current
Limit. A feed-forward torque ``tau`` cannot be given to a Dynamixel position loop, so it
is approximated by offsetting the goal position by ``tau / stiffness`` (the loop's
stiffness at the joint, from the configuration), clamped to
:data:`MAX_FEEDFORWARD_OFFSET`. The commanded velocity is not used (the servos' own
loops damp).

Safety and faults (see rehab_robot/hardware/interface.py):

* Start-up pings every servo, checks its model, writes the EEPROM settings that differ
  (operating mode, return delay time, current limit), sets goal = present position and
  turns torque on: the backend starts *disabled*, holding where the arm is.
* ``disable()`` holds: goal position = present position, torque stays on.
* The status packet's alert bit leads to a read of Hardware Error Status, decoded to
  text (overload, overheating, ...): a :class:`HardwareError` naming the joint, raised
  once; later reads return the (valid) readings until ``clear_fault()``.
* A missing or corrupt status packet (timeout, CRC) is counted; ``max_missed_cycles``
  in a row from one servo is a :class:`HardwareError` naming it (no servo at all: the
  whole bus). A serial port that disappears is ``device_lost`` at once. Every wait
  on the wire is bounded by a timeout derived from the baud rate and latency timer.
* ``clear_fault()`` reopens the port if needed, reboots (Protocol 2.0 Reboot) every
  servo that reports a hardware error, and starts up again, holding.
"""

from __future__ import annotations

import math
import os
import select
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from rehab_robot import JOINT_NAMES
from rehab_robot.errors import ConfigError, HardwareError
from rehab_robot.hardware.config_file import is_number, read_config_mapping
from rehab_robot.hardware.interface import HardwareInterface, JointCommand, JointSample

#: Largest goal position offset [rad] the feed-forward approximation may add.
MAX_FEEDFORWARD_OFFSET = 0.1
#: Baud rates the servos and the SDK's port handler both accept [bit/s].
BAUDRATES = (9600, 57600, 115200, 1000000, 2000000, 3000000, 4000000)
#: How long a rebooted servo may take to answer a ping again [s].
REBOOT_TIMEOUT = 3.0
#: Speed [rad/s] below which a joint counts as at rest.
REST_VELOCITY = 0.01

_RPM = 2.0 * math.pi / 60.0  # [rad/s] per rev/min


@dataclass(frozen=True)
class ControlTable:
    """Addresses [byte] and units of one servo family's Protocol 2.0 control table.

    The present block is read in one piece: present current (2 bytes), velocity (4),
    position (4), velocity and position trajectory (4 + 4), input voltage (2),
    temperature (1), at the same offsets in both families.
    """

    name: str
    models: dict  # model number -> model name
    operating_mode: int
    position_mode: int  # the mode this backend uses
    return_delay_time: int
    current_limit: int
    torque_enable: int
    hardware_error_status: int
    goal_current: Optional[int]  # None: Goal Current is not a torque limit in position_mode
    goal_position: int
    present_start: int
    velocity_unit: float  # [rad/s] per count
    current_unit: float  # [A] per count (default; the configuration may override it)
    #: Hardware Error Status bits -> text (e-manual, "Hardware Error Status").
    error_bits: dict

    present_length = 21
    offset_current, offset_velocity, offset_position = 0, 2, 6
    offset_voltage, offset_temperature = 18, 20


_ERROR_BITS_X = {
    0: "input voltage error",
    2: "overheating error",
    3: "motor encoder error",
    4: "electrical shock error",
    5: "overload error",
}
_ERROR_BITS_P = {**_ERROR_BITS_X, 1: "motor hall sensor error"}

#: Control tables by family name (the configuration's ``family``).
FAMILIES = {
    "x": ControlTable(
        name="X-series",
        models={
            1000: "XH430-W350", 1010: "XH430-W210", 1020: "XM430-W350", 1030: "XM430-W210",
            1040: "XH430-V350", 1050: "XH430-V210", 1060: "XL430-W250", 1100: "XH540-W270",
            1110: "XH540-W150", 1120: "XM540-W270", 1130: "XM540-W150", 1140: "XH540-V270",
            1150: "XH540-V150", 1170: "XW540-T260", 1180: "XW540-T140", 1270: "XW430-T333",
        },
        operating_mode=11, position_mode=5, return_delay_time=9, current_limit=38,
        torque_enable=64, hardware_error_status=70, goal_current=102, goal_position=116,
        present_start=126, velocity_unit=0.229 * _RPM, current_unit=2.69e-3,
        error_bits=_ERROR_BITS_X,
    ),
    "p": ControlTable(
        name="Dynamixel-P (PRO+)",
        models={
            2000: "PH42-020-S300-R", 2010: "PH54-100-S500-R", 2020: "PH54-200-S500-R",
            2100: "PM42-010-S260-R", 2110: "PM54-040-S250-R", 2120: "PM54-060-S250-R",
        },
        operating_mode=11, position_mode=3, return_delay_time=9, current_limit=38,
        torque_enable=512, hardware_error_status=518, goal_current=None, goal_position=564,
        present_start=574, velocity_unit=0.01 * _RPM, current_unit=1e-3,
        error_bits=_ERROR_BITS_P,
    ),
}

#: Status packet error numbers (bits 0-6 of the error byte), Protocol 2.0.
STATUS_ERRORS = {
    1: "result fail", 2: "instruction error", 3: "CRC error", 4: "data range error",
    5: "data length error", 6: "data limit error", 7: "access error",
}
ALERT_BIT = 0x80


def decode_hardware_error(bits: int, family: str) -> str:
    """Return the Hardware Error Status ``bits`` of a ``family`` servo as text."""
    table = FAMILIES[family].error_bits
    names = [table.get(b, f"unknown error bit {b}") for b in range(8) if bits & (1 << b)]
    return ", ".join(names) if names else "no error"


def default_config_path() -> Path:
    """Return the shipped arm configuration, ``config/hardware/dynamixel_arm.yaml``."""
    from rehab_robot.resources import share_dir

    return share_dir() / "config" / "hardware" / "dynamixel_arm.yaml"


# -- configuration -------------------------------------------------------------


@dataclass(frozen=True)
class JointConfig:
    """One joint's servo and how its counts map to SI units at the joint.

    Attributes:
        name: URDF joint name.
        id: Servo ID on the bus.
        family: Control table family (key of :data:`FAMILIES`).
        model: Expected model name, or None for any model of the family.
        counts_per_revolution: Position counts per servo turn.
        gear_ratio: Servo turns per joint turn.
        direction: +1 or -1.
        zero_offset: Present Position [counts] at joint angle 0.
        torque_constant: [N·m/A] at the servo horn.
        current_unit: [A] per current count.
        torque_limit: [N·m] at the joint, or None to leave the servo's Current Limit.
        stiffness: Position loop stiffness at the joint [N·m/rad]; 0: no feed-forward.
    """

    name: str
    id: int
    family: str
    model: Optional[str]
    counts_per_revolution: float
    gear_ratio: float
    direction: int
    zero_offset: int
    torque_constant: float
    current_unit: float
    torque_limit: Optional[float]
    stiffness: float

    @property
    def table(self) -> ControlTable:
        """The control table of this joint's servo family."""
        return FAMILIES[self.family]

    def counts_to_position(self, counts: int) -> float:
        """Present Position [counts] -> joint angle [rad]."""
        return self.direction * (counts - self.zero_offset) * 2.0 * math.pi / (
            self.counts_per_revolution * self.gear_ratio)

    def position_to_counts(self, angle: float) -> int:
        """Joint angle [rad] -> Goal Position [counts] (rounded)."""
        return self.zero_offset + round(
            self.direction * angle * self.counts_per_revolution * self.gear_ratio / (2.0 * math.pi))

    def counts_to_velocity(self, counts: int) -> float:
        """Present Velocity [counts] -> joint velocity [rad/s]."""
        return self.direction * counts * self.table.velocity_unit / self.gear_ratio

    def counts_to_torque(self, counts: int) -> float:
        """Present Current [counts] -> joint torque [N·m]."""
        return self.direction * counts * self.current_unit * self.torque_constant * self.gear_ratio

    def torque_to_current_counts(self, torque: float) -> int:
        """Joint torque magnitude [N·m] -> current [counts] (for limits; rounded down)."""
        return int(abs(torque) / (self.gear_ratio * self.torque_constant * self.current_unit))


@dataclass(frozen=True)
class ArmConfig:
    """The bus and the servo of every joint (``joints`` in :data:`JOINT_NAMES` order).

    Attributes:
        path: The configuration file.
        port: Serial device.
        baudrate: [bit/s].
        latency_timer: The USB adapter's latency timer [s].
        response_margin: Extra wait for status packets [s].
        return_delay_time: Written to each servo [s].
        max_missed_cycles: Cycles in a row without a valid status packet before a fault.
        joints: One :class:`JointConfig` per joint.
    """

    path: Path
    port: str
    baudrate: int
    latency_timer: float
    response_margin: float
    return_delay_time: float
    max_missed_cycles: int
    joints: tuple


_TOP_FIELDS = {
    "port": "a serial device path such as /dev/ttyUSB0",
    "baudrate": f"one of {', '.join(map(str, BAUDRATES))} [bit/s]",
    "latency_timer": "between 0 and 0.05 s",
    "response_margin": "between 0.0002 and 0.1 s",
    "return_delay_time": "between 0 and 0.00051 s (2 us steps)",
    "max_missed_cycles": "an integer from 1 to 100",
    "joints": f"a mapping with one entry per joint: {', '.join(JOINT_NAMES)}",
}
_JOINT_FIELDS = {
    "id": "an integer from 0 to 252, different for every joint",
    "family": f"one of {', '.join(FAMILIES)} (x: X-series, p: Dynamixel-P / PRO+)",
    "model": "a model name of the family",
    "counts_per_revolution": "a number > 0 (position counts per servo turn)",
    "gear_ratio": "a number > 0 (servo turns per joint turn)",
    "direction": "1 or -1",
    "zero_offset": "an integer (Present Position [counts] at joint angle 0)",
    "torque_constant": "a number > 0 [N·m/A]",
    "current_unit": "a number > 0 [A per count]",
    "torque_limit": "a number > 0 [N·m]",
    "stiffness": "a number >= 0 [N·m/rad]",
}
_JOINT_REQUIRED = ("id", "family", "counts_per_revolution", "direction", "zero_offset",
                   "torque_constant")


def load_config(path, port: Optional[str] = None, baudrate: Optional[int] = None,
                response_margin: Optional[float] = None) -> ArmConfig:
    """Read and validate an arm configuration file; ``port``, ``baudrate`` and
    ``response_margin`` [s] override the file's values.

    Raises:
        ConfigError: naming the file, the field and what is allowed.
    """
    path = Path(path)

    def bad(field: str, value, allowed: str) -> ConfigError:
        return ConfigError(f"{path}: {field} = {value!r}: must be {allowed}")

    data = read_config_mapping(path, "dynamixel", _TOP_FIELDS)

    def number(field, low, high, default, allowed, integer=False):
        value = data.get(field, default)
        ok = is_number(value) and low <= value <= high and (not integer or isinstance(value, int))
        if not ok:
            raise bad(field, value, allowed)
        return value

    port = data.get("port") if port is None else port
    if not isinstance(port, str) or not port:
        raise bad("port", port, _TOP_FIELDS["port"])
    baudrate = data.get("baudrate", 1000000) if baudrate is None else baudrate
    if baudrate not in BAUDRATES or isinstance(baudrate, bool):
        raise bad("baudrate", baudrate, _TOP_FIELDS["baudrate"])
    latency = number("latency_timer", 0.0, 0.05, 0.001, _TOP_FIELDS["latency_timer"])
    if response_margin is not None:
        data["response_margin"] = response_margin
    margin = number("response_margin", 0.0002, 0.1, 0.002, _TOP_FIELDS["response_margin"])
    delay = number("return_delay_time", 0.0, 0.00051, 0.0, _TOP_FIELDS["return_delay_time"])
    missed = number("max_missed_cycles", 1, 100, 3, _TOP_FIELDS["max_missed_cycles"], integer=True)

    joints_data = data.get("joints")
    if not isinstance(joints_data, dict):
        raise bad("joints", joints_data, _TOP_FIELDS["joints"])
    for name in joints_data:
        if name not in JOINT_NAMES:
            raise ConfigError(f"{path}: joints: unknown joint {name!r}; allowed: {', '.join(JOINT_NAMES)}")
    joints, seen_ids = [], {}
    for name in JOINT_NAMES:
        if name not in joints_data:
            raise ConfigError(f"{path}: joints: joint {name!r} is missing; every joint needs "
                              f"an entry: {', '.join(JOINT_NAMES)}")
        joints.append(_joint_config(path, name, joints_data[name], seen_ids, bad))
    return ArmConfig(path, port, int(baudrate), float(latency), float(margin), float(delay),
                     int(missed), tuple(joints))


def _joint_config(path: Path, name: str, entry, seen_ids: dict, bad) -> JointConfig:
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

    def field_value(field, check, default=None):
        value = entry.get(field, default)
        if not check(value):
            raise bad(f"{where}.{field}", value, _JOINT_FIELDS[field])
        return value

    def positive(v):
        return is_number(v) and v > 0

    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    servo_id = field_value("id", lambda v: is_int(v) and 0 <= v <= 252)
    if servo_id in seen_ids:
        raise ConfigError(f"{path}: {where}.id = {servo_id}: already the id of joint "
                          f"{seen_ids[servo_id]}; {_JOINT_FIELDS['id']}")
    seen_ids[servo_id] = name
    family = field_value("family", lambda v: v in FAMILIES)
    table = FAMILIES[family]
    model = entry.get("model")
    if model is not None and model not in table.models.values():
        raise bad(f"{where}.model", model,
                  f"a {table.name} model: {', '.join(sorted(table.models.values()))}")
    stiffness = field_value("stiffness", lambda v: is_number(v) and v >= 0, 0.0)
    torque_limit = entry.get("torque_limit")
    if torque_limit is not None and not positive(torque_limit):
        raise bad(f"{where}.torque_limit", torque_limit, _JOINT_FIELDS["torque_limit"])
    return JointConfig(
        name=name, id=servo_id, family=family, model=model,
        counts_per_revolution=float(field_value("counts_per_revolution", positive)),
        gear_ratio=float(field_value("gear_ratio", positive, 1.0)),
        direction=field_value("direction", lambda v: v in (1, -1) and not isinstance(v, bool)),
        zero_offset=field_value("zero_offset", is_int),
        torque_constant=float(field_value("torque_constant", positive)),
        current_unit=float(field_value("current_unit", positive, table.current_unit)),
        torque_limit=None if torque_limit is None else float(torque_limit),
        stiffness=float(stiffness),
    )


def transaction_time(config: ArmConfig) -> float:
    """Return the nominal wire time [s] of one cycle: Sync Read + replies + Sync Write.

    10 bits per byte, plus the return delay per reply and twice the latency timer per
    Sync Read (request out, replies in).
    """
    byte_time = 10.0 / config.baudrate
    total = 0.0
    for family in {j.family for j in config.joints}:
        n = sum(1 for j in config.joints if j.family == family)
        read = 14 + n + n * (11 + ControlTable.present_length)
        write = 14 + n * (1 + 4)
        total += (read + write) * byte_time + n * config.return_delay_time + 2 * config.latency_timer
    return total


#: Where Linux shows a USB serial adapter's latency timer [ms] (FTDI driver).
USB_SERIAL_SYSFS = Path("/sys/bus/usb-serial/devices")


def check_latency_timer(port: str, configured: float, sysfs: Path = USB_SERIAL_SYSFS) -> Optional[float]:
    """Compare the adapter's latency timer with the configured one [s].

    Returns the adapter's value [s], or None when the port has none (not a USB serial
    adapter, e.g. a pseudo-terminal).

    Raises:
        HardwareError: if the adapter's timer is longer than configured: every status
            packet would wait for it and the timeouts, set from the configuration,
            would expire first.
    """
    device = os.path.basename(os.path.realpath(port))
    try:
        actual = int((sysfs / device / "latency_timer").read_text()) / 1000.0
    except (OSError, ValueError):
        return None
    if actual > configured + 1e-9:
        raise HardwareError(
            f"serial port {port}: USB latency timer is {actual * 1e3:g} ms but the configuration "
            f"says latency_timer {configured * 1e3:g} ms; set it with "
            f"'echo {max(1, round(configured * 1e3))} | sudo tee {sysfs / device / 'latency_timer'}' "
            "(a udev rule makes it permanent, see docs/hardware/dynamixel.md)")
    return actual


# -- SDK adapters --------------------------------------------------------------


def _sdk():
    """Import the ROBOTIS SDK (kept out of check_options, which needs no device)."""
    import dynamixel_sdk

    return dynamixel_sdk


def _make_port(sdk, name: str, latency_timer: float, margin: float):
    """Return a ``PortHandler`` whose status timeouts follow our latency timer and margin.

    The SDK assumes a 16 ms latency timer (a 34 ms timeout) and busy-polls the port; a
    1 ms FTDI latency timer makes the timeout a few ms, and ``select`` waits for bytes
    instead of spinning, so a missing reply never holds the control loop long.
    """

    class Port(sdk.PortHandler):
        def setPacketTimeout(self, packet_length):  # noqa: N802 - SDK's name
            self.packet_start_time = self.getCurrentTime()
            self.packet_timeout = (self.tx_time_per_byte * packet_length
                                   + 2000.0 * latency_timer + 1000.0 * margin)

        def readPort(self, length):  # noqa: N802 - SDK's name
            remaining = (self.packet_timeout - self.getTimeSinceStart()) / 1000.0
            if remaining > 0 and not self.ser.in_waiting:
                select.select([self.ser.fileno()], [], [], remaining)
            return self.ser.read(length)

    return Port(name)


@dataclass
class _Group:
    """The servos of one family: their Sync Read and Sync Write."""

    table: ControlTable
    indices: list  # joint indices
    reader: object
    writer: object


class DynamixelArm(HardwareInterface):
    """The arm on Dynamixel Protocol 2.0 servos (see the module docstring).

    Args:
        config: Arm configuration YAML [path]; "" or None: the shipped one.
        port: Serial device, overriding the configuration's ``port``.
        baudrate: [bit/s], overriding the configuration's ``baudrate``.
        response_margin: Extra wait for status packets [s], overriding the
            configuration's (e.g. 0.02 against the emulator on a busy machine).

    Raises:
        ConfigError: if the configuration is invalid (naming file, field, allowed values).
        HardwareError: if the port does not exist or a servo is missing, of the wrong
            model or reports a hardware error at start-up.
    """

    def __init__(self, config: Optional[str] = None, port: Optional[str] = None,
                 baudrate: Optional[int] = None, response_margin: Optional[float] = None):
        self.config = self._load(config, port, baudrate, response_margin)
        self.joint_names = tuple(j.name for j in self.config.joints)
        self.joints = self.config.joints
        n = len(self.joints)
        #: read() + write() budget [s]: a Sync Read that times out (transfer, twice the
        #: latency timer, the margin) plus the Sync Write and Python's own time.
        self.cycle_budget = 2.0 * transaction_time(self.config) + self.config.response_margin + 0.002
        self._lock = threading.RLock()
        self._enabled = False
        self._port = None
        self._packet = None
        self._groups: list[_Group] = []
        self._counts = np.zeros(n, dtype=np.int64)  # last Present Position [counts]
        self._position = np.zeros(n)
        self._velocity = np.zeros(n)
        self._effort = np.zeros(n)
        self._temperature = np.zeros(n)
        self._voltage = np.zeros(n)
        self._missed = np.zeros(n, dtype=int)  # cycles in a row without a valid reply
        self._last_miss = [""] * n
        self._goal_counts: Optional[np.ndarray] = None
        self._feedforward_counts = np.zeros(n, dtype=np.int64)  # last goal offset from effort
        self._counters = {"cycles": 0, "timeouts": 0, "corrupt_packets": 0, "status_errors": 0,
                          "hardware_errors": 0, "reconnects": 0, "reboots": 0}
        self._servo_errors: dict[int, str] = {}  # joint index -> hardware error reported
        self._closed = False
        self._open()
        try:
            self._start_up()
        except BaseException:
            self._close_port()
            raise

    @staticmethod
    def _load(config, port, baudrate, response_margin=None) -> ArmConfig:
        if config is not None and not isinstance(config, (str, os.PathLike)):
            raise ConfigError(f"hardware option 'config' = {config!r}: must be a YAML file path")
        if port is not None and (not isinstance(port, str) or not port):
            raise ConfigError(f"hardware option 'port' = {port!r}: must be a serial device path")
        if baudrate is not None and (isinstance(baudrate, bool) or baudrate not in BAUDRATES):
            raise ConfigError(f"hardware option 'baudrate' = {baudrate!r}: must be one of "
                              f"{', '.join(map(str, BAUDRATES))} [bit/s]")
        try:
            return load_config(config or default_config_path(), port, baudrate, response_margin)
        except ConfigError as exc:
            if response_margin is not None and "response_margin" in str(exc):
                raise ConfigError(f"hardware option 'response_margin' = {response_margin!r}: must be "
                                  f"{_TOP_FIELDS['response_margin']}") from None
            raise

    @classmethod
    def check_options(cls, config: Optional[str] = None, port: Optional[str] = None,
                      baudrate: Optional[int] = None, response_margin: Optional[float] = None) -> None:
        """Validate the options and the configuration file without opening the port."""
        cls._load(config, port, baudrate, response_margin)

    # -- HardwareInterface -------------------------------------------------------

    def read(self) -> JointSample:
        """Sync-read every servo and return the measurement in SI units.

        A servo whose status packet is missing or corrupt keeps its last values for
        this cycle (counted in ``diagnostics()``).

        Raises:
            HardwareError: on a servo hardware error, ``max_missed_cycles`` missed
                replies in a row, or a lost port (``device_lost``).
        """
        with self._lock:
            self._require_open()
            for group in self._groups:
                self._read_group(group)
            self._counters["cycles"] += 1
            self._check_missed()
            return JointSample(
                stamp=time.monotonic(), position=self._position.copy(),
                velocity=self._velocity.copy(), effort=self._effort.copy(),
                wrench=np.zeros(6),
                at_rest=bool(np.all(np.abs(self._velocity) < REST_VELOCITY)),
            )

    def write(self, command: JointCommand) -> None:
        """Sync-write the goal positions: position + effort / stiffness, per joint.

        Ignored while disabled. The commanded velocity is not used.

        Raises:
            ValueError: if a field has the wrong length or holds NaN/inf.
            HardwareError: if the port is lost (``device_lost``).
        """
        fields = command.checked_fields(self.joint_names)
        n = len(self.joints)
        with self._lock:
            if not self._enabled:
                return
            self._require_open()
            goal = np.empty(n, dtype=np.int64)
            for i, joint in enumerate(self.joints):
                offset = fields[2][i] / joint.stiffness if joint.stiffness > 0 else 0.0
                offset = min(max(offset, -MAX_FEEDFORWARD_OFFSET), MAX_FEEDFORWARD_OFFSET)
                goal[i] = joint.position_to_counts(fields[0][i] + offset)
                self._feedforward_counts[i] = goal[i] - joint.position_to_counts(fields[0][i])
            self._write_goals(goal)

    def enable(self) -> None:
        """Let ``write()`` move the arm; until then the servos keep holding.

        Raises:
            HardwareError: if the backend is closed or a servo refuses torque.
        """
        with self._lock:
            if self._closed:
                raise HardwareError("dynamixel arm is closed; create a new one")
            self._require_open()
            self._enabled = True

    def disable(self) -> None:
        """Hold: goal = last present position (+ the last feed-forward offset); torque stays on.

        Keeping the feed-forward offset keeps the gravity compensation the controller
        last sent, so the servo holds where the arm is instead of sagging by load /
        stiffness. Idempotent.

        Raises:
            HardwareError: if the port is lost (``device_lost``).
        """
        with self._lock:
            was_enabled, self._enabled = self._enabled, False
            if self._port is None:
                return
            if was_enabled or self._goal_counts is None:
                self._write_goals(self._counts + self._feedforward_counts)

    @property
    def enabled(self) -> bool:
        """True while ``write()`` setpoints take effect."""
        return self._enabled

    def clear_fault(self) -> None:
        """Reopen the port if lost, reboot servos in hardware error, start up again (holding).

        Raises:
            HardwareError: if a servo still does not answer or still reports an error.
        """
        with self._lock:
            self._enabled = False
            # Always reopen: a device that came back (adapter replugged, emulator
            # restarted) is a new file behind the same name.
            self._close_port()
            self._open()
            self._counters["reconnects"] += 1
            for joint in self.joints:
                status = self._hardware_error_status(joint)
                if status:
                    self._reboot(joint, status)
            self._missed[:] = 0
            self._servo_errors.clear()
            self._start_up()

    def diagnostics(self) -> dict[str, str]:
        """Counters, and per joint the temperature [°C] and input voltage [V]."""
        values = {k: str(v) for k, v in self._counters.items()}
        values["port"] = self.config.port if self._port is not None else f"{self.config.port} (closed)"
        values["cycle_budget_ms"] = f"{self.cycle_budget * 1e3:.2f}"
        for i, joint in enumerate(self.joints):
            values[f"{joint.name}.temperature_C"] = f"{self._temperature[i]:.0f}"
            values[f"{joint.name}.voltage_V"] = f"{self._voltage[i]:.1f}"
            values[f"{joint.name}.missed_in_a_row"] = str(int(self._missed[i]))
            values[f"{joint.name}.hardware_error"] = self._servo_errors.get(i, "none")
        return values

    def close(self) -> None:
        """Hold (if the port still works) and close the port. Idempotent; never raises."""
        with self._lock:
            if self._port is not None:
                try:
                    self.disable()
                except HardwareError:
                    pass
            self._enabled = False
            self._closed = True
            self._close_port()

    # -- start-up ----------------------------------------------------------------

    def _open(self) -> None:
        """Open the serial port and build the Sync Read/Write groups."""
        sdk = _sdk()
        name = self.config.port
        if not os.path.exists(name):
            raise HardwareError(f"serial port {name} does not exist (adapter unplugged? "
                                "see docs/hardware/dynamixel.md)", device_lost=True)
        check_latency_timer(name, self.config.latency_timer)
        port = _make_port(sdk, name, self.config.latency_timer, self.config.response_margin)
        try:
            if not port.setBaudRate(self.config.baudrate):
                raise HardwareError(f"serial port {name}: baud rate {self.config.baudrate} refused")
        except (OSError, ValueError, *_serial_error()) as exc:
            raise HardwareError(f"serial port {name} cannot be opened: {exc}", device_lost=True) from None
        self._port = port
        self._packet = sdk.PacketHandler(2.0)
        self._groups = []
        for family, table in FAMILIES.items():
            indices = [i for i, j in enumerate(self.joints) if j.family == family]
            if not indices:
                continue
            reader = sdk.GroupSyncRead(port, self._packet, table.present_start, table.present_length)
            writer = sdk.GroupSyncWrite(port, self._packet, table.goal_position, 4)
            for i in indices:
                reader.addParam(self.joints[i].id)
                writer.addParam(self.joints[i].id, [0, 0, 0, 0])
            self._groups.append(_Group(table, indices, reader, writer))

    def _start_up(self) -> None:
        """Check every servo, configure it, and hold where it is with torque on."""
        for joint in self.joints:
            table = joint.table
            model, result, error = self._retry(joint, lambda: self._packet.ping(self._port, joint.id), 1)
            self._check_result(joint, result, error, "ping")
            if model not in table.models:
                raise HardwareError(
                    f"servo id {joint.id} is model number {model}, not a {table.name} servo "
                    f"(family '{joint.family}' in {self.config.path}); expected one of "
                    f"{', '.join(f'{k} ({v})' for k, v in sorted(table.models.items()))}", joint.name)
            if joint.model is not None and table.models[model] != joint.model:
                raise HardwareError(f"servo id {joint.id} is a {table.models[model]}, but "
                                    f"{self.config.path} expects a {joint.model}", joint.name)
            status = self._hardware_error_status(joint)
            if status:
                self._counters["hardware_errors"] += 1
                raise HardwareError(self._hardware_error_text(joint, status), joint.name)
            self._configure(joint)
        for _ in range(self.config.max_missed_cycles):
            for group in self._groups:
                self._read_group(group)
            if not self._missed.any():
                break
        bad = np.flatnonzero(self._missed)
        if bad.size:
            joint = self.joints[bad[0]]
            raise HardwareError(f"servo id {joint.id}: no valid status packet at start-up "
                                f"({self._last_miss[bad[0]]})", joint.name)
        self._goal_counts = None
        self._feedforward_counts[:] = 0
        self._write_goals(self._counts.copy())
        for joint in self.joints:
            self._write(joint, joint.table.torque_enable, 1, 1)

    def _configure(self, joint: JointConfig) -> None:
        """Write the EEPROM settings that differ; refuse if that needs a holding servo limp.

        EEPROM can only be written with torque off. A servo that is off (just powered,
        or rebooted after a fault) is configured; one that holds the arm (torque on, e.g.
        left holding by a previous run) is not switched off behind the operator's back:
        the arm could drop.

        Raises:
            HardwareError: naming the settings, if they differ while torque is on.
        """
        table = joint.table
        wanted = [("Operating Mode", table.operating_mode, 1, table.position_mode),
                  ("Return Delay Time", table.return_delay_time, 1,
                   round(self.config.return_delay_time / 2e-6))]
        if joint.torque_limit is not None:
            wanted.append(("Current Limit", table.current_limit, 2,
                           joint.torque_to_current_counts(joint.torque_limit)))
        changes = []
        for name, address, size, value in wanted:
            present = self._read(joint, address, size)
            if present != value:
                changes.append((name, address, size, value, present))
        if changes:
            if self._read(joint, table.torque_enable, 1):
                listed = ", ".join(f"{n} is {p}, needs {v}" for n, _, _, v, p in changes)
                raise HardwareError(
                    f"servo id {joint.id}: {listed}; EEPROM is written only with torque off and "
                    "this servo is holding: support the arm, then power-cycle the servos (or turn "
                    "torque off in Dynamixel Wizard) and start again", joint.name)
            for _, address, size, value, _ in changes:
                self._write(joint, address, size, value)
        if table.goal_current is not None:
            limit = self._read(joint, table.current_limit, 2)
            self._write(joint, table.goal_current, 2, limit)

    # -- wire --------------------------------------------------------------------

    def _call(self, joint: Optional[JointConfig], action):
        """Run one SDK transaction; a vanished port becomes ``device_lost``."""
        try:
            return action()
        except (OSError, *_serial_error()) as exc:
            self._close_port()
            raise HardwareError(f"serial port {self.config.port} lost: {exc}",
                                joint.name if joint else None, device_lost=True) from None

    def _retry(self, joint: JointConfig, action, result_index: int) -> tuple:
        """Run a single-servo transaction, again after a lost or corrupt reply.

        Up to ``max_missed_cycles`` attempts, as in the cycle: one glitch on the bus does
        not fail a start-up or a fault reset. Only for idempotent instructions.
        """
        sdk = _sdk()
        for _ in range(self.config.max_missed_cycles - 1):
            reply = self._call(joint, action)
            result = reply[result_index]
            if result == sdk.COMM_RX_TIMEOUT:
                self._counters["timeouts"] += 1
            elif result == sdk.COMM_RX_CORRUPT:
                self._counters["corrupt_packets"] += 1
            else:
                return reply
        return self._call(joint, action)

    def _check_result(self, joint: JointConfig, result: int, error: int, what: str) -> None:
        sdk = _sdk()
        if result != sdk.COMM_SUCCESS:
            raise HardwareError(f"servo id {joint.id}: {what}: {self._comm_text(result)}", joint.name)
        if error & ALERT_BIT:
            status = self._hardware_error_status(joint)
            self._counters["hardware_errors"] += 1
            raise HardwareError(self._hardware_error_text(joint, status), joint.name)
        if error:
            raise HardwareError(f"servo id {joint.id}: {what}: status error "
                                f"{STATUS_ERRORS.get(error & 0x7F, f'number {error & 0x7F}')}", joint.name)

    @staticmethod
    def _comm_text(result: int) -> str:
        sdk = _sdk()
        return {
            sdk.COMM_RX_TIMEOUT: "no status packet (timeout)",
            sdk.COMM_RX_CORRUPT: "corrupt status packet (CRC error or truncated)",
            sdk.COMM_TX_FAIL: "instruction packet not sent",
            sdk.COMM_PORT_BUSY: "port busy",
        }.get(result, f"communication result {result}")

    def _read(self, joint: JointConfig, address: int, size: int) -> int:
        method = {1: self._packet.read1ByteTxRx, 2: self._packet.read2ByteTxRx,
                  4: self._packet.read4ByteTxRx}[size]
        value, result, error = self._retry(joint, lambda: method(self._port, joint.id, address), 1)
        self._check_result(joint, result, error, f"read of address {address}")
        return value

    def _write(self, joint: JointConfig, address: int, size: int, value: int) -> None:
        method = {1: self._packet.write1ByteTxRx, 2: self._packet.write2ByteTxRx,
                  4: self._packet.write4ByteTxRx}[size]
        result, error = self._retry(joint, lambda: method(self._port, joint.id, address, value), 0)
        self._check_result(joint, result, error, f"write of {value} to address {address}")

    def _hardware_error_status(self, joint: JointConfig) -> int:
        """Read Hardware Error Status (no alert check: that is what we are reading)."""
        value, result, _ = self._retry(joint, lambda: self._packet.read1ByteTxRx(
            self._port, joint.id, joint.table.hardware_error_status), 1)
        if result != _sdk().COMM_SUCCESS:
            raise HardwareError(f"servo id {joint.id}: read of Hardware Error Status: "
                                f"{self._comm_text(result)}", joint.name)
        return value

    def _hardware_error_text(self, joint: JointConfig, status: int) -> str:
        return (f"servo id {joint.id} hardware error 0x{status:02X}: "
                f"{decode_hardware_error(status, joint.family)}; torque is off until the "
                "servo is rebooted (safety/reset reboots it)")

    def _reboot(self, joint: JointConfig, status: int) -> None:
        """Reboot one servo (Protocol 2.0 Reboot) and wait until it answers again."""
        self._call(joint, lambda: self._packet.reboot(self._port, joint.id))  # may reboot before answering
        self._counters["reboots"] += 1
        deadline = time.monotonic() + REBOOT_TIMEOUT
        while True:
            time.sleep(0.05)
            _, result, _ = self._call(joint, lambda: self._packet.ping(self._port, joint.id))
            if result == _sdk().COMM_SUCCESS:
                break
            if time.monotonic() > deadline:
                raise HardwareError(f"servo id {joint.id} did not answer within {REBOOT_TIMEOUT:g} s "
                                    f"of a reboot (was: {decode_hardware_error(status, joint.family)})",
                                    joint.name)
        remaining = self._hardware_error_status(joint)
        if remaining:
            raise HardwareError("still after a reboot: " + self._hardware_error_text(joint, remaining),
                                joint.name)

    def _read_group(self, group: _Group) -> None:
        """One Sync Read of a family's present block; updates the SI values it got."""
        sdk = _sdk()
        port, packet, table = self._port, self._packet, group.table
        by_id = {self.joints[i].id: i for i in group.indices}
        pending = set(by_id)
        errors: dict[int, int] = {}

        def transaction():
            result = group.reader.txPacket()
            if result != sdk.COMM_SUCCESS:
                raise HardwareError(f"Sync Read not sent: {self._comm_text(result)}", device_lost=True)
            # The SDK's GroupSyncRead drops each reply's error byte (the alert bit) and
            # gives up at the first missing reply; collect every reply by id instead.
            while pending:
                rx, result = packet.rxPacket(port, False)
                servo = rx[4] if len(rx) > 8 else None
                if result == sdk.COMM_SUCCESS and servo in pending:
                    pending.discard(servo)
                    length = rx[5] | (rx[6] << 8)
                    if length - 4 != table.present_length:
                        self._miss(by_id[servo], "corrupt status packet (wrong length)", "corrupt_packets")
                        continue
                    errors[servo] = rx[8]
                    self._decode(by_id[servo], rx[9:9 + table.present_length])
                elif result == sdk.COMM_RX_CORRUPT and servo in pending and len(rx) >= 11:
                    pending.discard(servo)
                    self._miss(by_id[servo], "corrupt status packet (CRC error)", "corrupt_packets")
                elif result != sdk.COMM_SUCCESS:
                    break

        try:
            self._call(None, transaction)
        finally:
            port.is_using = False
        for servo in pending:
            self._miss(by_id[servo], "no status packet (timeout)", "timeouts")
        for servo, error in errors.items():
            i = by_id[servo]
            joint = self.joints[i]
            if error & ALERT_BIT:
                if i in self._servo_errors:
                    continue  # reported once; the readings stay valid, so the driver sees the arm
                status = self._hardware_error_status(joint)
                self._counters["hardware_errors"] += 1
                self._enabled = False
                self._servo_errors[i] = decode_hardware_error(status, joint.family)
                raise HardwareError(self._hardware_error_text(joint, status), joint.name)
            if error:
                self._miss(by_id[servo], f"status error {STATUS_ERRORS.get(error, error)}", "status_errors")

    def _decode(self, i: int, data) -> None:
        joint, t = self.joints[i], ControlTable
        current = int.from_bytes(bytes(data[t.offset_current:t.offset_current + 2]), "little", signed=True)
        velocity = int.from_bytes(bytes(data[t.offset_velocity:t.offset_velocity + 4]), "little", signed=True)
        position = int.from_bytes(bytes(data[t.offset_position:t.offset_position + 4]), "little", signed=True)
        voltage = int.from_bytes(bytes(data[t.offset_voltage:t.offset_voltage + 2]), "little")
        self._counts[i] = position
        self._position[i] = joint.counts_to_position(position)
        self._velocity[i] = joint.counts_to_velocity(velocity)
        self._effort[i] = joint.counts_to_torque(current)
        self._voltage[i] = voltage * 0.1
        self._temperature[i] = data[t.offset_temperature]
        self._missed[i] = 0

    def _miss(self, i: int, what: str, counter: str) -> None:
        self._missed[i] += 1
        self._last_miss[i] = what
        self._counters[counter] += 1

    def _check_missed(self) -> None:
        limit = self.config.max_missed_cycles
        if np.all(self._missed >= limit):
            # Not device_lost: the port is there, so the driver keeps reading and the
            # arm shows up again as soon as the bus answers.
            raise HardwareError(f"no servo answered for {limit} cycles in a row "
                                f"(last: {self._last_miss[0]}); servo power or bus cable?")
        for i in np.flatnonzero(self._missed >= limit):
            joint = self.joints[i]
            raise HardwareError(f"servo id {joint.id}: no valid status packet for {int(self._missed[i])} "
                                f"cycles in a row (last: {self._last_miss[i]})", joint.name)

    def _write_goals(self, goal: np.ndarray) -> None:
        """One Sync Write of Goal Position per family (no reply: broadcast)."""
        sdk = _sdk()
        for group in self._groups:
            for i in group.indices:
                value = int(goal[i]) & 0xFFFFFFFF
                group.writer.changeParam(self.joints[i].id, list(value.to_bytes(4, "little")))

            def transaction(group=group):
                return group.writer.txPacket()

            port = self._port
            try:
                result = self._call(None, transaction)
            finally:
                port.is_using = False
            if result != sdk.COMM_SUCCESS:
                self._close_port()
                raise HardwareError(f"Sync Write to {self.config.port} failed: {self._comm_text(result)}",
                                    device_lost=True)
        self._goal_counts = goal

    def _require_open(self) -> None:
        if self._port is None:
            raise HardwareError(f"serial port {self.config.port} is closed after a fault; "
                                "safety/reset reopens it", device_lost=True)

    def _close_port(self) -> None:
        port, self._port = self._port, None
        if port is not None and port.ser is not None:
            try:
                port.closePort()
            except (OSError, *_serial_error()):
                pass


def _serial_error() -> tuple:
    """Exceptions a vanished serial device raises: pyserial's, and termios's on a flush."""
    import termios

    import serial

    return (serial.SerialException, termios.error)
