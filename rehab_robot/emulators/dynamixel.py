"""Emulated Dynamixel servos: four Protocol 2.0 servos behind a pseudo-terminal.

Written from the ROBOTIS e-manual (Protocol 2.0; X-series and Dynamixel-P control
tables); it shares no code with the ``dynamixel`` backend. The servos drive the joints
of :class:`rehab_robot.hardware.sim.SimulatedArm`, stepped in real time: a servo with
torque on follows its Goal Position with the simulator's position loop.

Usage::

    rehab-robot emulate dynamixel [--link PATH] [--path-file FILE] [--servo SPEC ...]

The slave side of the pseudo-terminal is printed as ``PTY <path>`` on stdout (and
written to ``--path-file``; ``--link`` makes a symlink to it that follows ``reopen``,
like a udev ``/dev/serial/by-id`` name). ``--servo JOINT:ID:MODEL[:GEAR[:DIR[:ZERO]]]``
changes one joint's servo (MODEL is the model number, e.g. 1120 for an XM540-W270).

Fault injection: one command per line on stdin; each is answered ``ok ...`` (or
``error ...``) on stdout once applied. End of input only ends the commands (the bus is
served until ``quit`` or a signal).

Each packet is answered before the physics is stepped, at real-time priority when the
system allows it: real servos answer whatever the host is doing.

=====================  =====================================================================
``error ID BITS``      set Hardware Error Status bits (e.g. ``0x20`` overload): alert bit in
                       every status packet until a Reboot instruction; torque off when the
                       Shutdown register selects the bits (default: overheating, electrical
                       shock, overload)
``crc ID [N]``         corrupt the CRC of the servo's next N status packets (default 1)
``drop ID [N]``        do not send the servo's next N status packets (default 1)
``clear``              forget pending ``crc`` and ``drop`` injections
``power``              power-cycle every servo: RAM back to defaults (torque off), errors gone
``close``              close the pseudo-terminal (the port disappears; ``--link`` removed)
``reopen``             open a new pseudo-terminal (printed as ``PTY <path>``; link updated)
``state``              print ``state q1 q2 q3 q4 tau1 tau2 tau3 tau4`` (joint angles [rad],
                       motor torques [N·m]) of the physics
``reg ID ADDR SIZE``   print ``reg VALUE``: a servo's register (signed), as a master would read
``quit``               exit
=====================  =====================================================================

Torque limit: Goal Current (current-based position control, mode 5) or Current Limit
clips the goal the simulated drive sees (refreshed every millisecond), so that its
``stiffness * error - damping * velocity`` stays within the limit, as the servo's
current limit does.

Simplifications: a servo with torque off is limp (damped) while another servo has
torque on, but with every servo off the simulator holds the arm like a brake (it has no
all-limp mode); Return Delay Time is stored, not waited; registered writes, bulk and
fast instructions are answered with an Instruction Error.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import select
import sys
import termios
import time
import tty
from dataclasses import dataclass, field

import numpy as np

from rehab_robot.hardware.interface import JointCommand
from rehab_robot.hardware.sim import DEFAULT_DAMPING, DEFAULT_STIFFNESS, MAX_CATCH_UP, SimulatedArm

# -- Protocol 2.0 (e-manual "DYNAMIXEL Protocol 2.0") ---------------------------

HEADER = bytes((0xFF, 0xFF, 0xFD, 0x00))
BROADCAST = 0xFE
INST_PING, INST_READ, INST_WRITE, INST_REBOOT = 0x01, 0x02, 0x03, 0x08
INST_STATUS, INST_SYNC_READ, INST_SYNC_WRITE = 0x55, 0x82, 0x83
ERR_RESULT_FAIL, ERR_INSTRUCTION, ERR_CRC = 0x01, 0x02, 0x03
ERR_DATA_RANGE, ERR_DATA_LENGTH, ERR_DATA_LIMIT, ERR_ACCESS = 0x04, 0x05, 0x06, 0x07
ALERT = 0x80

#: The CRC-16 table of the specification (polynomial 0x8005, no reflection, init 0).
CRC_TABLE = (
    0x0000, 0x8005, 0x800F, 0x000A, 0x801B, 0x001E, 0x0014, 0x8011,
    0x8033, 0x0036, 0x003C, 0x8039, 0x0028, 0x802D, 0x8027, 0x0022,
    0x8063, 0x0066, 0x006C, 0x8069, 0x0078, 0x807D, 0x8077, 0x0072,
    0x0050, 0x8055, 0x805F, 0x005A, 0x804B, 0x004E, 0x0044, 0x8041,
    0x80C3, 0x00C6, 0x00CC, 0x80C9, 0x00D8, 0x80DD, 0x80D7, 0x00D2,
    0x00F0, 0x80F5, 0x80FF, 0x00FA, 0x80EB, 0x00EE, 0x00E4, 0x80E1,
    0x00A0, 0x80A5, 0x80AF, 0x00AA, 0x80BB, 0x00BE, 0x00B4, 0x80B1,
    0x8093, 0x0096, 0x009C, 0x8099, 0x0088, 0x808D, 0x8087, 0x0082,
    0x8183, 0x0186, 0x018C, 0x8189, 0x0198, 0x819D, 0x8197, 0x0192,
    0x01B0, 0x81B5, 0x81BF, 0x01BA, 0x81AB, 0x01AE, 0x01A4, 0x81A1,
    0x01E0, 0x81E5, 0x81EF, 0x01EA, 0x81FB, 0x01FE, 0x01F4, 0x81F1,
    0x81D3, 0x01D6, 0x01DC, 0x81D9, 0x01C8, 0x81CD, 0x81C7, 0x01C2,
    0x0140, 0x8145, 0x814F, 0x014A, 0x815B, 0x015E, 0x0154, 0x8151,
    0x8173, 0x0176, 0x017C, 0x8179, 0x0168, 0x816D, 0x8167, 0x0162,
    0x8123, 0x0126, 0x012C, 0x8129, 0x0138, 0x813D, 0x8137, 0x0132,
    0x0110, 0x8115, 0x811F, 0x011A, 0x810B, 0x010E, 0x0104, 0x8101,
    0x8303, 0x0306, 0x030C, 0x8309, 0x0318, 0x831D, 0x8317, 0x0312,
    0x0330, 0x8335, 0x833F, 0x033A, 0x832B, 0x032E, 0x0324, 0x8321,
    0x0360, 0x8365, 0x836F, 0x036A, 0x837B, 0x037E, 0x0374, 0x8371,
    0x8353, 0x0356, 0x035C, 0x8359, 0x0348, 0x834D, 0x8347, 0x0342,
    0x03C0, 0x83C5, 0x83CF, 0x03CA, 0x83DB, 0x03DE, 0x03D4, 0x83D1,
    0x83F3, 0x03F6, 0x03FC, 0x83F9, 0x03E8, 0x83ED, 0x83E7, 0x03E2,
    0x83A3, 0x03A6, 0x03AC, 0x83A9, 0x03B8, 0x83BD, 0x83B7, 0x03B2,
    0x0390, 0x8395, 0x839F, 0x039A, 0x838B, 0x038E, 0x0384, 0x8381,
    0x0280, 0x8285, 0x828F, 0x028A, 0x829B, 0x029E, 0x0294, 0x8291,
    0x82B3, 0x02B6, 0x02BC, 0x82B9, 0x02A8, 0x82AD, 0x82A7, 0x02A2,
    0x82E3, 0x02E6, 0x02EC, 0x82E9, 0x02F8, 0x82FD, 0x82F7, 0x02F2,
    0x02D0, 0x82D5, 0x82DF, 0x02DA, 0x82CB, 0x02CE, 0x02C4, 0x82C1,
    0x8243, 0x0246, 0x024C, 0x8249, 0x0258, 0x825D, 0x8257, 0x0252,
    0x0270, 0x8275, 0x827F, 0x027A, 0x826B, 0x026E, 0x0264, 0x8261,
    0x0220, 0x8225, 0x822F, 0x022A, 0x823B, 0x023E, 0x0234, 0x8231,
    0x8213, 0x0216, 0x021C, 0x8219, 0x0208, 0x820D, 0x8207, 0x0202,
)


def crc16(data: bytes) -> int:
    """CRC-16 of a packet (header through the last parameter), as the spec computes it."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) ^ CRC_TABLE[((crc >> 8) ^ byte) & 0xFF]) & 0xFFFF
    return crc


def stuff(body: bytes) -> bytes:
    """Byte stuffing: FF FF FD in the instruction/parameter field becomes FF FF FD FD."""
    out = bytearray()
    for byte in body:
        out.append(byte)
        if byte == 0xFD and out[-3:-1] == b"\xff\xff" and len(out) >= 3:
            out.append(0xFD)
    return bytes(out)


def unstuff(body: bytes) -> bytes:
    """Undo byte stuffing: FF FF FD FD becomes FF FF FD."""
    out = bytearray()
    i = 0
    while i < len(body):
        out.append(body[i])
        if body[i] == 0xFD and out[-3:-1] == b"\xff\xff" and len(out) >= 3 and i + 1 < len(body) \
                and body[i + 1] == 0xFD:
            i += 1  # skip the stuffed FD
        i += 1
    return bytes(out)


def build_packet(servo_id: int, instruction: int, params: bytes = b"") -> bytes:
    """Return a complete packet: header, id, length, instruction, stuffed params, CRC."""
    body = stuff(bytes((instruction,)) + bytes(params))
    length = len(body) + 2
    packet = HEADER + bytes((servo_id, length & 0xFF, length >> 8)) + body
    crc = crc16(packet)
    return packet + bytes((crc & 0xFF, crc >> 8))


def build_status(servo_id: int, error: int, params: bytes = b"") -> bytes:
    """Return a status packet (instruction 0x55) with ``error`` and ``params``."""
    return build_packet(servo_id, INST_STATUS, bytes((error,)) + bytes(params))


@dataclass
class Packet:
    """A received instruction packet (parameters unstuffed)."""

    servo_id: int
    instruction: int
    params: bytes
    crc_ok: bool


class PacketReader:
    """Splits a byte stream into instruction packets (header search, length, CRC).

    Bytes before a header are skipped; a packet left incomplete for ``timeout`` [s] is
    dropped, as a servo does.
    """

    def __init__(self, timeout: float = 0.05) -> None:
        self.buffer = bytearray()
        self.timeout = timeout
        self._last = 0.0

    def feed(self, data: bytes, now: float) -> list[Packet]:
        """Add received bytes; return the complete packets found."""
        if self.buffer and now - self._last > self.timeout:
            self.buffer.clear()
        self._last = now
        self.buffer += data
        packets = []
        while True:
            start = self.buffer.find(HEADER)
            if start < 0:
                del self.buffer[:max(0, len(self.buffer) - 3)]  # a header may be split
                return packets
            del self.buffer[:start]
            if len(self.buffer) < 7:
                return packets
            length = self.buffer[5] | (self.buffer[6] << 8)
            if length < 3:
                del self.buffer[:4]
                continue
            total = 7 + length
            if len(self.buffer) < total:
                return packets
            raw = bytes(self.buffer[:total])
            del self.buffer[:total]
            crc_ok = crc16(raw[:-2]) == (raw[-2] | (raw[-1] << 8))
            body = unstuff(raw[7:-2])
            packets.append(Packet(raw[4], body[0], body[1:], crc_ok))


# -- servos (e-manual control tables) --------------------------------------------


@dataclass(frozen=True)
class Family:
    """Addresses of one control table; EEPROM is below ``torque_enable``."""

    modes: tuple  # allowed Operating Mode values
    torque_enable: int
    hardware_error: int
    goal_current: int
    goal_position: int
    present_current: int
    present_velocity: int
    present_position: int
    input_voltage: int
    temperature: int
    velocity_unit: float  # [rev/min] per count
    current_unit: float  # [A] per count
    writable: tuple  # (address, size) of registers a master may write


X_SERIES = Family(
    modes=(0, 1, 3, 4, 5, 16), torque_enable=64, hardware_error=70, goal_current=102,
    goal_position=116, present_current=126, present_velocity=128, present_position=132,
    input_voltage=144, temperature=146, velocity_unit=0.229, current_unit=2.69e-3,
    writable=((7, 1), (8, 1), (9, 1), (10, 1), (11, 1), (12, 1), (13, 1), (20, 4), (24, 4),
              (31, 1), (32, 2), (34, 2), (36, 2), (38, 2), (44, 4), (48, 4), (52, 4), (63, 1),
              (64, 1), (65, 1), (68, 1), (76, 2), (78, 2), (80, 2), (82, 2), (84, 2), (88, 2),
              (90, 2), (98, 1), (100, 2), (102, 2), (104, 4), (108, 4), (112, 4), (116, 4)),
)
P_SERIES = Family(
    modes=(0, 1, 3, 4, 16), torque_enable=512, hardware_error=518, goal_current=550,
    goal_position=564, present_current=574, present_velocity=576, present_position=580,
    input_voltage=592, temperature=594, velocity_unit=0.01, current_unit=1e-3,
    writable=((7, 1), (8, 1), (9, 1), (10, 1), (11, 1), (12, 1), (13, 1), (20, 4), (24, 4),
              (31, 1), (32, 2), (34, 2), (36, 2), (38, 2), (40, 4), (44, 4), (48, 4), (52, 4),
              (63, 1), (512, 1), (513, 1), (514, 1), (515, 1), (516, 1), (524, 2), (526, 2),
              (528, 2), (530, 2), (532, 2), (536, 2), (538, 2), (546, 1), (548, 2), (550, 2),
              (552, 4), (556, 4), (560, 4), (564, 4)),
)


@dataclass(frozen=True)
class Model:
    """A servo model: control table, resolution, drive and supply."""

    name: str
    family: Family
    counts_per_revolution: int
    torque_constant: float  # [N·m/A] at the horn (continuous torque / current)
    current_limit: int  # factory Current Limit [counts]
    voltage: float  # [V] supply


MODELS = {
    1020: Model("XM430-W350", X_SERIES, 4096, 4.1 / 2.3, 1193, 12.0),
    1120: Model("XM540-W270", X_SERIES, 4096, 10.6 / 4.4, 2047, 12.0),
    2010: Model("PH54-100-S500-R", P_SERIES, 1003846, 25.3 / 5.5, 15900, 24.0),
    2020: Model("PH54-200-S500-R", P_SERIES, 1003846, 44.7 / 9.3, 22740, 24.0),
    2120: Model("PM54-060-S250-R", P_SERIES, 502834, 10.1 / 3.0, 7980, 24.0),
}

#: The emulated arm: joint -> (id, model number, gear ratio, direction, zero [counts]).
#: It is the arm of config/hardware/dynamixel_arm.yaml, described independently.
DEFAULT_SERVOS = {
    "shoulder_flexion": (1, 2020, 2.0, 1, 0),
    "shoulder_abduction": (2, 2020, 2.0, 1, 0),
    "shoulder_rotation": (3, 2010, 2.0, -1, 0),
    "elbow_flexion": (4, 2120, 4.0, 1, 0),
}
JOINTS = tuple(DEFAULT_SERVOS)
FIRMWARE_VERSION = 48
REBOOT_TIME = 0.1  # [s] a rebooting servo does not answer
CATCH_UP_SLICE = 0.005  # [s] of physics per loop turn while catching up after a stall
TEMPERATURE = 36  # [°C]


@dataclass
class Servo:
    """One emulated servo: its control table memory and its place on the arm."""

    servo_id: int
    model_number: int
    joint: int
    gear: float
    direction: int
    zero: int
    memory: bytearray = field(default_factory=lambda: bytearray(1024))
    drop: int = 0
    corrupt: int = 0
    rebooting_until: float = 0.0

    def __post_init__(self) -> None:
        self.model = MODELS[self.model_number]
        self.family = self.model.family
        self.writable_bytes = {a + k for a, n in self.family.writable for k in range(n)}
        self.power_on()

    def power_on(self) -> None:
        """Factory defaults for EEPROM on first power-on; RAM reset on every boot."""
        m = self.memory
        if not any(m[:8]):
            self.put(0, 2, self.model_number)
            self.put(6, 1, FIRMWARE_VERSION)
            self.put(7, 1, self.servo_id)
            self.put(8, 1, 1)  # 57600 bps
            self.put(9, 1, 250)  # 500 us
            self.put(11, 1, 3)  # position control
            self.put(38, 2, self.model.current_limit)
            self.put(63, 1, 0x34)  # shutdown on overheating, electrical shock, overload
        f = self.family
        m[f.torque_enable:] = bytes(len(m) - f.torque_enable)
        self.put(f.torque_enable + 4, 1, 2)  # Status Return Level: answer every instruction
        self.put(f.goal_current, 2, self.get(38, 2))
        self.hold_goal = True  # Goal Position follows Present Position until written

    def get(self, address: int, size: int, signed: bool = False) -> int:
        """Read a register value."""
        return int.from_bytes(self.memory[address:address + size], "little", signed=signed)

    def put(self, address: int, size: int, value: int) -> None:
        """Store a register value (two's complement for negatives)."""
        self.memory[address:address + size] = (value & ((1 << 8 * size) - 1)).to_bytes(size, "little")

    def torque_limit(self) -> float:
        """Largest torque [N·m] at the joint: Goal Current in mode 5, else Current Limit."""
        f = self.family
        limit = self.get(38, 2)
        if self.memory[11] == 5:
            limit = min(limit, abs(self.get(f.goal_current, 2, signed=True)))
        return limit * f.current_unit * self.model.torque_constant * self.gear

    @property
    def torque_on(self) -> bool:
        return self.memory[self.family.torque_enable] == 1

    @property
    def error_byte(self) -> int:
        return ALERT if self.memory[self.family.hardware_error] else 0

    def set_hardware_error(self, bits: int) -> None:
        """A hardware fault: the status gets the alert bit; shutdown turns torque off."""
        self.memory[self.family.hardware_error] |= bits
        if bits & self.get(63, 1):  # the Shutdown register selects which errors cut torque
            self.memory[self.family.torque_enable] = 0
            self.hold_goal = True

    # joint angle [rad] <-> counts at this servo
    def to_counts(self, q: float) -> int:
        return self.zero + round(self.direction * q * self.gear * self.model.counts_per_revolution / (2 * math.pi))

    def to_angle(self, counts: int) -> float:
        return self.direction * (counts - self.zero) * 2 * math.pi / (self.gear * self.model.counts_per_revolution)

    def update_present(self, q: float, v: float, tau: float) -> None:
        """Refresh the present registers from the joint's state [rad, rad/s, N·m]."""
        f = self.family
        counts = self.to_counts(q)
        self.put(f.present_position, 4, counts)
        rpm = self.direction * v * self.gear * 60.0 / (2 * math.pi)
        self.put(f.present_velocity, 4, round(rpm / f.velocity_unit))
        amps = self.direction * tau / (self.gear * self.model.torque_constant)
        self.put(f.present_current, 2, max(-32768, min(32767, round(amps / f.current_unit))))
        self.put(f.input_voltage, 2, round(self.model.voltage * 10))
        self.put(f.temperature, 1, TEMPERATURE)
        if self.hold_goal:
            self.put(f.goal_position, 4, counts)

    def write(self, address: int, data: bytes) -> int:
        """Apply a Write to the control table; return the status error number (0: done)."""
        f = self.family
        end = address + len(data)
        if not data or any(a not in self.writable_bytes for a in range(address, end)):
            return ERR_ACCESS
        if address < f.torque_enable and self.torque_on:
            return ERR_ACCESS  # EEPROM is locked while torque is on
        staged = bytearray(self.memory)
        staged[address:end] = data
        if address <= 11 < end and staged[11] not in f.modes:
            return ERR_DATA_RANGE
        if address <= f.torque_enable < end:
            if staged[f.torque_enable] not in (0, 1):
                return ERR_DATA_RANGE
            if staged[f.torque_enable] == 1 and self.memory[f.hardware_error]:
                return ERR_RESULT_FAIL  # torque stays off until a reboot
        goal_current = int.from_bytes(staged[f.goal_current:f.goal_current + 2], "little", signed=True)
        if address < f.goal_current + 2 and end > f.goal_current and abs(goal_current) > self.get(38, 2):
            return ERR_DATA_LIMIT
        self.memory[:] = staged
        if address < f.goal_position + 4 and end > f.goal_position:
            self.hold_goal = False
        if address <= f.torque_enable < end:
            # Torque off: Goal Position follows the arm, so torque on never jumps;
            # torque on: the goal stays where it was.
            self.hold_goal = staged[f.torque_enable] == 0
        return 0


class Emulator:
    """The bus: servos, the pseudo-terminal and the physics."""

    def __init__(self, servos: list[Servo], link: str | None = None, path_file: str | None = None,
                 out=sys.stdout) -> None:
        self.servos = {s.servo_id: s for s in servos}
        self.by_joint = sorted(servos, key=lambda s: s.joint)
        self.arm = SimulatedArm()
        # The simulated drives' gains [N·m/rad], [N·m·s/rad], for the torque limit.
        self.stiffness = np.asarray(DEFAULT_STIFFNESS, dtype=float)
        self.damping = np.asarray(DEFAULT_DAMPING, dtype=float)
        self.zeros = np.zeros(len(servos))
        self.reader = PacketReader()
        self.link, self.path_file, self.out = link, path_file, out
        self.master = self.slave = None
        self.open_pty()

    # -- the port ----------------------------------------------------------------

    def open_pty(self) -> None:
        """Open a pseudo-terminal in raw mode and announce its slave path."""
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo, no line editing: a plain byte pipe
        os.set_blocking(self.master, False)
        path = os.ttyname(self.slave)
        if self.link:
            tmp = self.link + ".tmp"
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(path, tmp)
            os.replace(tmp, self.link)
        if self.path_file:
            with open(self.path_file, "w") as f:
                f.write(path + "\n")
        self.say(f"PTY {path}")

    def close_pty(self) -> None:
        """Close both ends: the backend's next read or write fails, as on an unplugged adapter."""
        for fd in (self.master, self.slave):
            if fd is not None:
                os.close(fd)
        self.master = self.slave = None
        if self.link and os.path.lexists(self.link):
            os.unlink(self.link)
        self.reader.buffer.clear()

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    # -- physics -------------------------------------------------------------------

    def step(self) -> None:
        """Advance the physics toward now and refresh every servo's present registers.

        After a stall the physics catches up in slices of :data:`CATCH_UP_SLICE`, one
        per loop turn, so packets keep being answered meanwhile (from slightly older
        present values) instead of waiting behind a long catch-up.
        """
        behind = time.monotonic() - self.arm.time
        if CATCH_UP_SLICE < behind < MAX_CATCH_UP:
            self.arm.advance_to(self.arm.time + CATCH_UP_SLICE)
            return
        sample = self.arm.read()
        for s in self.by_joint:
            j = s.joint
            s.update_present(sample.position[j], sample.velocity[j], sample.effort[j])
        self.q, self.v, self.tau = sample.position, sample.velocity, sample.effort

    def drive(self) -> None:
        """Send the goals of servos with torque on to the simulated drives.

        Called after every instruction and every physics step (1 kHz): the torque limit
        (Goal Current in current-based position control, else Current Limit) clips the
        position error the simulated drive sees, so the P term never asks for more. A
        servo with torque off gets its own position as goal: limp, only damped.
        """
        torque = [s.torque_on for s in self.by_joint]
        if not any(torque):
            if self.arm.enabled:
                self.arm.disable()  # every servo off: the simulator holds like a brake
            return
        q = self.q
        goal = np.array([s.to_angle(s.get(s.family.goal_position, 4, signed=True)) if s.torque_on
                         else q[s.joint] for s in self.by_joint])
        # The drive applies kp (goal - q) - kd v: keep that within the torque limit.
        limit = np.array([s.torque_limit() for s in self.by_joint])
        damping = self.damping * self.v
        goal = q + np.clip(goal - q, (damping - limit) / self.stiffness, (damping + limit) / self.stiffness)
        if not self.arm.enabled:
            self.arm.enable()
        self.arm.write(JointCommand(goal, self.zeros, self.zeros))

    # -- the protocol -------------------------------------------------------------

    def handle(self, packet: Packet, now: float) -> bytes:
        """Execute one instruction packet; return the status packets to send."""
        if packet.servo_id == BROADCAST:
            targets = [s for s in self.servos.values() if now >= s.rebooting_until]
        elif packet.servo_id in self.servos and now >= self.servos[packet.servo_id].rebooting_until:
            targets = [self.servos[packet.servo_id]]
        else:
            return b""
        if not packet.crc_ok:
            if packet.servo_id == BROADCAST:
                return b""
            return self.status(targets[0], ERR_CRC)
        inst, p = packet.instruction, packet.params
        if inst == INST_PING:
            return b"".join(self.status(s, 0, s.memory[0:2] + s.memory[6:7])
                            for s in sorted(targets, key=lambda s: s.servo_id))
        if inst == INST_SYNC_WRITE and packet.servo_id == BROADCAST:
            return self.sync_write(p)
        if inst == INST_SYNC_READ and packet.servo_id == BROADCAST:
            return self.sync_read(p, now)
        if packet.servo_id == BROADCAST:
            return b""  # other broadcasts are not emulated
        servo = targets[0]
        if inst == INST_READ:
            if len(p) != 4:
                return self.status(servo, ERR_DATA_LENGTH)
            address, length = p[0] | p[1] << 8, p[2] | p[3] << 8
            if address + length > len(servo.memory):
                return self.status(servo, ERR_ACCESS)
            return self.status(servo, 0, servo.memory[address:address + length])
        if inst == INST_WRITE:
            if len(p) < 3:
                return self.status(servo, ERR_DATA_LENGTH)
            error = servo.write(p[0] | p[1] << 8, p[2:])
            self.drive()
            return self.status(servo, error)
        if inst == INST_REBOOT:
            reply = self.status(servo, 0)
            servo.power_on()
            servo.rebooting_until = now + REBOOT_TIME
            self.drive()
            return reply
        return self.status(servo, ERR_INSTRUCTION)

    def sync_write(self, p: bytes) -> bytes:
        if len(p) < 4:
            return b""
        address, length = p[0] | p[1] << 8, p[2] | p[3] << 8
        for k in range(4, len(p) - length, length + 1):
            servo = self.servos.get(p[k])
            if servo is not None and len(p) >= k + 1 + length:
                servo.write(address, p[k + 1:k + 1 + length])
        self.drive()
        return b""

    def sync_read(self, p: bytes, now: float) -> bytes:
        if len(p) < 5:
            return b""
        address, length = p[0] | p[1] << 8, p[2] | p[3] << 8
        replies = []
        for servo_id in p[4:]:
            servo = self.servos.get(servo_id)
            if servo is None or now < servo.rebooting_until:
                continue
            replies.append(self.status(servo, 0, servo.memory[address:address + length]))
        return b"".join(replies)

    def status(self, servo: Servo, error: int, params: bytes = b"") -> bytes:
        """A status packet from ``servo``, with the alert bit and injected faults."""
        packet = build_status(servo.servo_id, error | servo.error_byte, bytes(params))
        if servo.drop:
            servo.drop -= 1
            return b""
        if servo.corrupt:
            servo.corrupt -= 1
            packet = packet[:-2] + bytes(((packet[-2] ^ 0xFF), packet[-1]))
        return packet

    # -- fault injection ----------------------------------------------------------

    def command(self, line: str) -> bool:
        """Apply one stdin command; return False on ``quit``."""
        words = line.split()
        if not words:
            return True
        try:
            name, args = words[0], words[1:]
            if name == "quit":
                return False
            if name in ("error", "crc", "drop"):
                servo = self.servos[int(args[0])]
                if name == "error":
                    servo.set_hardware_error(int(args[1], 0))
                    self.drive()
                elif name == "crc":
                    servo.corrupt = int(args[1]) if len(args) > 1 else 1
                else:
                    servo.drop = int(args[1]) if len(args) > 1 else 1
            elif name == "clear":
                for servo in self.servos.values():
                    servo.drop = servo.corrupt = 0
            elif name == "power":
                for servo in self.servos.values():
                    servo.power_on()
                self.drive()
            elif name == "close":
                self.close_pty()
            elif name == "reopen":
                if self.master is None:
                    self.open_pty()
            elif name == "state":
                self.say("state " + " ".join(f"{x:.6f}" for x in (*self.q, *self.tau)))
                return True
            elif name == "reg":
                servo = self.servos[int(args[0])]
                self.say(f"reg {servo.get(int(args[1], 0), int(args[2]), signed=True)}")
                return True
            else:
                raise ValueError(f"unknown command {name!r}")
        except (IndexError, KeyError, ValueError) as exc:
            self.say(f"error {line.strip()}: {exc}")
            return True
        self.say(f"ok {line.strip()}")
        return True

    def run(self, stdin=sys.stdin) -> None:
        """Serve the bus and stdin until ``quit`` or a signal; EOF on stdin only ends the commands."""
        stdin_fd = stdin.fileno() if stdin is not None else None
        pending = b""
        self.step()
        while True:
            fds = [fd for fd in (self.master, stdin_fd) if fd is not None]
            ready, _, _ = select.select(fds, [], [], 0.001)
            now = time.monotonic()
            if self.master is not None and self.master in ready:
                # Answer first, from the present values of the last step (< 1 ms old),
                # as a servo answers from its last control cycle: the physics can wait.
                try:
                    data = os.read(self.master, 4096)
                except OSError:
                    data = b""
                replies = b"".join(self.handle(p, now) for p in self.reader.feed(data, now))
                if replies and self.master is not None:
                    self.send(replies)
            self.step()
            self.drive()
            if stdin_fd is not None and stdin_fd in ready:
                chunk = os.read(stdin_fd, 4096)
                if not chunk:
                    stdin_fd = None  # no more commands; keep serving the bus
                    continue
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if not self.command(line.decode(errors="replace")):
                        return

    def send(self, data: bytes) -> None:
        """Put status packets on the wire, never blocking.

        Bytes nobody reads are lost on a real bus; here they would fill the terminal's
        queue (the master side blocks when the port is closed or the host stalls), so a
        full queue is flushed and the packet written again, or dropped.
        """
        for _ in range(2):
            try:
                os.write(self.master, data)
                return
            except BlockingIOError:
                termios.tcflush(self.slave, termios.TCIFLUSH)

def parse_servo(spec: str) -> tuple:
    """Parse ``JOINT:ID:MODEL[:GEAR[:DIR[:ZERO]]]`` into (joint, (id, model, gear, dir, zero))."""
    parts = spec.split(":")
    if len(parts) < 3 or parts[0] not in DEFAULT_SERVOS:
        raise argparse.ArgumentTypeError(
            f"{spec!r}: expected JOINT:ID:MODEL[:GEAR[:DIR[:ZERO]]] with JOINT one of {', '.join(JOINTS)}")
    try:
        servo_id, model = int(parts[1]), int(parts[2])
        gear = float(parts[3]) if len(parts) > 3 else 1.0
        direction = int(parts[4]) if len(parts) > 4 else 1
        zero = int(parts[5]) if len(parts) > 5 else 0
    except ValueError:
        raise argparse.ArgumentTypeError(f"{spec!r}: ID, MODEL, DIR and ZERO are integers, GEAR a number") from None
    if model not in MODELS:
        raise argparse.ArgumentTypeError(
            f"{spec!r}: model {model} not emulated; emulated: "
            + ", ".join(f"{k} ({m.name})" for k, m in MODELS.items()))
    if not 0 <= servo_id <= 252 or direction not in (1, -1) or not gear > 0:
        raise argparse.ArgumentTypeError(f"{spec!r}: ID 0-252, DIR 1 or -1, GEAR > 0")
    return parts[0], (servo_id, model, gear, direction, zero)


def main(argv: list[str] | None = None) -> int:
    """Run the emulated servos until ``quit`` or Ctrl-C; returns the exit status."""
    parser = argparse.ArgumentParser(prog="rehab-robot emulate dynamixel",
                                     description="Four Dynamixel Protocol 2.0 servos behind a pseudo-terminal.")
    parser.add_argument("--link", help="make a symlink at this path to the pseudo-terminal")
    parser.add_argument("--path-file", help="write the pseudo-terminal path to this file")
    parser.add_argument("--servo", action="append", default=[], type=parse_servo,
                        metavar="JOINT:ID:MODEL[:GEAR[:DIR[:ZERO]]]", help="change one joint's servo")
    args = parser.parse_args(argv)
    servos = dict(DEFAULT_SERVOS)
    servos.update(dict(args.servo))
    ids = [s[0] for s in servos.values()]
    if len(set(ids)) != len(ids):
        parser.error(f"servo ids must differ, got {ids}")
    try:
        # Real servos answer whatever the host does. The emulator sleeps in select() between
        # packets and physics steps (~15 % of a core), so a real-time priority costs the
        # rest of the machine little; at a normal one it queues behind the driver,
        # controller and supervisor nodes (nice -10) and answers late on a busy machine.
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    except (OSError, AttributeError) as exc:
        print(f"emulate dynamixel: no real-time priority ({exc}); replies may be late on a busy machine",
              file=sys.stderr)
    emulator = Emulator([Servo(sid, model, JOINTS.index(joint), gear, direction, zero)
                         for joint, (sid, model, gear, direction, zero) in servos.items()],
                        link=args.link, path_file=args.path_file)
    # The physics allocates small arrays every step; a full garbage collection over
    # everything pinocchio and numpy loaded would stall the bus for tens of ms. Freezing
    # what exists now keeps the collector to the young objects.
    gc.collect()
    gc.freeze()
    try:
        emulator.run()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.close_pty()
    return 0


if __name__ == "__main__":
    sys.exit(main())
