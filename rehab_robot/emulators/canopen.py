"""Emulated CANopen bus: four CiA 402 drives behind an SLCAN (Lawicel) USB-CAN adapter.

Written from CiA 301 (NMT, SDO, PDO, SYNC, EMCY, heartbeat), CiA 402 (drive state
machine, cyclic synchronous position mode) and the Lawicel CAN232/CANUSB ASCII
protocol. It shares no code with the ``canopen`` backend and does not use the
``canopen`` or ``python-can`` libraries: every frame is built and parsed here, so a
mistake in how the backend uses those libraries cannot hide behind the same mistake.

The adapter is a pseudo-terminal: the host opens its slave side as it would open
``/dev/ttyACM0`` of a USB-CAN adapter (python-can ``interface: slcan``). The drives
move the joints of :class:`rehab_robot.hardware.sim.SimulatedArm`, stepped in real time.

Usage::

    rehab-robot emulate canopen [--link PATH] [--path-file FILE] [--drive SPEC ...]

The slave path is printed as ``PTY <path>`` on stdout (and written to ``--path-file``;
``--link`` makes a symlink to it that follows ``reopen``). ``--drive
JOINT:NODE[:COUNTS[:GEAR[:DIR[:ZERO[:RATED_MNM]]]]]`` changes one joint's drive.

Fault injection: one command per line on stdin, answered ``ok ...`` (or ``error ...``)
once applied. End of input only ends the commands (the bus is served until ``quit``).

=======================  ==================================================================
``fault NODE [CODE]``    the drive faults: Fault reaction -> Fault, EMCY CODE (default
                         0x2310 continuous over-current) with error register, 0x603F set;
                         the joint is held by its brake; cleared by controlword bit 7
``emcy NODE CODE``       send an EMCY with CODE only (no state change)
``heartbeat NODE on|off`` stop or restart the drive's heartbeat (everything else works)
``silent NODE on|off``   the drive sends nothing at all (power or cable lost)
``truncate NODE on|off`` the drive's TPDOs are one byte short of their mapping
``busoff on|off``        the adapter's controller goes bus-off: no frame either way, a
                         transmit request is answered BELL, ``F`` reports bus error
``close``                close the pseudo-terminal (adapter unplugged; ``--link`` removed)
``reopen``               open a new pseudo-terminal (printed as ``PTY <path>``)
``set NODE INDEX SUB VALUE``  write an object (e.g. ``set 1 0x1000 0 0x20191``)
``od NODE INDEX SUB``    print ``od VALUE`` (signed where the object is)
``state``                print ``state q1..q4 tau1..tau4`` (joint angles [rad], torques [N·m])
``drives``               print ``drives S1 S2 S3 S4``: each drive's CiA 402 state name
``stats``                print ``stats FRAMES_IN FRAMES_OUT BITS`` counted on the bus
``quit``                 exit
=======================  ==================================================================

Simplifications: only CSP (mode 8) moves a joint; a joint whose drive is not in
Operation enabled is held (its brake / position hold), and with no drive enabled the
simulator holds the whole arm; SDO block transfer and event-driven TPDOs are not
emulated (answered with an SDO abort / not sent); the bit timing is not emulated: frames
cross the pty as fast as it goes, and the bus bits are counted for ``stats``.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import select
import struct
import sys
import termios
import time
import tty
from dataclasses import dataclass

import numpy as np

from rehab_robot.hardware.interface import JointCommand
from rehab_robot.hardware.sim import MAX_CATCH_UP, SimulatedArm

# -- CiA 301 -------------------------------------------------------------------

NMT, SYNC_ID, EMCY_BASE, HEARTBEAT_BASE = 0x000, 0x080, 0x080, 0x700
SDO_RX_BASE, SDO_TX_BASE = 0x600, 0x580
RPDO_BASE = (0x200, 0x300, 0x400, 0x500)
TPDO_BASE = (0x180, 0x280, 0x380, 0x480)
NMT_INITIALISING, NMT_STOPPED, NMT_OPERATIONAL, NMT_PRE_OPERATIONAL = 0x00, 0x04, 0x05, 0x7F
COB_INVALID = 0x80000000

ABORT_TOGGLE = 0x05030000
ABORT_COMMAND = 0x05040001
ABORT_WRITE_ONLY = 0x06010001
ABORT_READ_ONLY = 0x06010002
ABORT_NO_OBJECT = 0x06020000
ABORT_NOT_MAPPABLE = 0x06040041
ABORT_PDO_LENGTH = 0x06040042
ABORT_LENGTH = 0x06070010
ABORT_NO_SUBINDEX = 0x06090011
ABORT_RANGE = 0x06090030
ABORT_STATE = 0x08000022
ABORT_GENERAL = 0x08000000

# -- CiA 402 -------------------------------------------------------------------

NOT_READY, SWITCH_ON_DISABLED, READY, SWITCHED_ON = "not_ready", "switch_on_disabled", "ready_to_switch_on", "switched_on"
OPERATION_ENABLED, QUICK_STOP, FAULT_REACTION, FAULT = "operation_enabled", "quick_stop_active", "fault_reaction_active", "fault"
#: Statusword bits 0-6 of each state (bit 5 "quick stop" is 1 when quick stop is NOT active).
STATUS_BITS = {
    NOT_READY: 0x00, SWITCH_ON_DISABLED: 0x40, READY: 0x21, SWITCHED_ON: 0x23,
    OPERATION_ENABLED: 0x27, QUICK_STOP: 0x07, FAULT_REACTION: 0x0F, FAULT: 0x08,
}
VOLTAGE_ENABLED, REMOTE, TARGET_REACHED, FOLLOWING_TARGET = 0x10, 0x200, 0x400, 0x1000
MODE_CSP = 8
SUPPORTED_MODES = (MODE_CSP,)
DEVICE_TYPE_402 = 0x00020192  # CiA 402 servo drive (0x0192), "servo" type bits
RATED_CURRENT_MA = 2000  # 0x6075 motor rated current [mA]

# Data type codes (CiA 301 table 44) -> (struct format, size [byte]).
U8, U16, U32, I8, I16, I32, VSTRING = 0x05, 0x06, 0x07, 0x02, 0x03, 0x04, 0x09
TYPES = {U8: ("<B", 1), U16: ("<H", 2), U32: ("<I", 4), I8: ("<b", 1), I16: ("<h", 2), I32: ("<i", 4)}


@dataclass
class Entry:
    """One object dictionary entry."""

    dtype: int
    access: str  # "ro", "rw", "wo", "const"
    value: object
    pdo: bool = False  # may be mapped into a PDO

    @property
    def size(self) -> int:
        return len(self.value) if self.dtype == VSTRING else TYPES[self.dtype][1]

    def encode(self) -> bytes:
        if self.dtype == VSTRING:
            return bytes(self.value)
        return struct.pack(TYPES[self.dtype][0], self.value)

    def decode(self, data: bytes):
        if self.dtype == VSTRING:
            return bytes(data)
        fmt, size = TYPES[self.dtype]
        if len(data) != size:
            raise ValueError(size)
        return struct.unpack(fmt, data)[0]


def can_frame_bits(dlc: int, data: bytes = b"", can_id: int = 0) -> int:
    """Bits of a base-format data frame on the wire, with its actual stuff bits.

    Stuffing applies from SOF through the CRC (34 + 8·dlc + 15 bits); CRC delimiter,
    ACK, EOF and the 3-bit intermission (13 bits) are not stuffed.
    """
    bits = [0]  # SOF
    bits += [(can_id >> i) & 1 for i in range(10, -1, -1)]
    bits += [0, 0, 0]  # RTR, IDE, r0
    bits += [(dlc >> i) & 1 for i in range(3, -1, -1)]
    for byte in data[:dlc]:
        bits += [(byte >> i) & 1 for i in range(7, -1, -1)]
    crc = 0
    for b in bits:
        crc = ((crc << 1) ^ (0x4599 if ((crc >> 14) & 1) ^ b else 0)) & 0x7FFF
    bits += [(crc >> i) & 1 for i in range(14, -1, -1)]
    stuffed, run, last = 0, 0, None
    for b in bits:
        run = run + 1 if b == last else 1
        last = b
        if run == 5:
            stuffed += 1
            last, run = 1 - b, 1  # the stuff bit is the complement and starts a new run
    return len(bits) + stuffed + 13


# -- one drive -------------------------------------------------------------------


@dataclass
class DriveSpec:
    """The mechanics of one joint's drive: encoder, gear, sign, zero, rated torque."""

    node: int
    counts_per_revolution: int = 524288  # 19-bit absolute encoder on the motor
    gear: float = 100.0
    direction: int = 1
    zero: int = 0
    rated_torque_mnm: int = 1000  # 0x6076 [mN·m] at the motor


class Drive:
    """A CiA 402 servo drive: object dictionary, NMT, SDO server, PDOs, state machine."""

    def __init__(self, spec: DriveSpec, joint: int, send) -> None:
        self.spec = spec
        self.node = spec.node
        self.joint = joint
        self._send = send  # send(can_id, data)
        self.heartbeat_on = True
        self.silent = False
        self.truncate = False  # TPDOs one byte short (a corrupt frame the master must refuse)
        self.power_on()

    # -- object dictionary ---------------------------------------------------------

    def power_on(self) -> None:
        """Application and communication reset: factory values, boot-up message."""
        n, s = self.node, self.spec
        od: dict[tuple[int, int], Entry] = {
            (0x1000, 0): Entry(U32, "ro", DEVICE_TYPE_402),
            (0x1001, 0): Entry(U8, "ro", 0, pdo=True),
            (0x1005, 0): Entry(U32, "rw", SYNC_ID),
            (0x1006, 0): Entry(U32, "rw", 0),  # communication cycle period [us], 0: not set
            (0x1008, 0): Entry(VSTRING, "const", b"rehab emulated CiA 402 servo drive"),
            (0x1014, 0): Entry(U32, "rw", EMCY_BASE + n),
            (0x1017, 0): Entry(U16, "rw", 0),
            (0x1018, 0): Entry(U8, "const", 4),
            (0x1018, 1): Entry(U32, "ro", 0x00000DEF),
            (0x1018, 2): Entry(U32, "ro", 0x00402402),
            (0x1018, 3): Entry(U32, "ro", 0x00010000),
            (0x1018, 4): Entry(U32, "ro", 1000 + n),
            (0x2000, 0): Entry(VSTRING, "rw", b"joint drive"),  # user label (segmented SDO)
            (0x603F, 0): Entry(U16, "ro", 0, pdo=True),
            (0x6040, 0): Entry(U16, "rw", 0, pdo=True),
            (0x6041, 0): Entry(U16, "ro", 0, pdo=True),
            (0x605A, 0): Entry(I16, "rw", 2),
            (0x6060, 0): Entry(I8, "rw", 0, pdo=True),
            (0x6061, 0): Entry(I8, "ro", 0, pdo=True),
            (0x6064, 0): Entry(I32, "ro", 0, pdo=True),
            (0x606C, 0): Entry(I32, "ro", 0, pdo=True),
            (0x6075, 0): Entry(U32, "rw", RATED_CURRENT_MA),
            (0x6076, 0): Entry(U32, "rw", s.rated_torque_mnm),
            (0x6077, 0): Entry(I16, "ro", 0, pdo=True),
            (0x607A, 0): Entry(I32, "rw", 0, pdo=True),
            (0x60B1, 0): Entry(I32, "rw", 0, pdo=True),
            (0x60B2, 0): Entry(I16, "rw", 0, pdo=True),
            (0x6502, 0): Entry(U32, "ro", 1 << (MODE_CSP - 1)),
        }
        # PDOs: a deliberately odd factory mapping (RPDO1 controlword, TPDO1 statusword,
        # the others off), so a master that relies on defaults does not work.
        for k in range(4):
            for base, comm, mapping, cob in ((0x1400, 0x1400 + k, 0x1600 + k, RPDO_BASE[k]),
                                             (0x1800, 0x1800 + k, 0x1A00 + k, TPDO_BASE[k])):
                valid = 0 if k == 0 else COB_INVALID
                od[(comm, 0)] = Entry(U8, "const", 5 if base == 0x1800 else 2)
                od[(comm, 1)] = Entry(U32, "rw", valid | (cob + n))
                od[(comm, 2)] = Entry(U8, "rw", 255)
                if base == 0x1800:
                    od[(comm, 3)] = Entry(U16, "rw", 0)
                    od[(comm, 5)] = Entry(U16, "rw", 0)
                first = (0x6040 if base == 0x1400 else 0x6041) << 16 | 16
                od[(mapping, 0)] = Entry(U8, "rw", 1 if k == 0 else 0)
                for sub in range(1, 9):
                    od[(mapping, sub)] = Entry(U32, "rw", first if (k == 0 and sub == 1) else 0)
        self.od = od
        self.nmt = NMT_PRE_OPERATIONAL
        self.state = SWITCH_ON_DISABLED
        self.last_controlword = 0
        self.sdo_segment: dict | None = None
        self.pending_rpdo: dict[int, bytes] = {}
        self.target_velocity = 0.0  # [increments/s] derived from the targets (see on_sync)
        self.last_target, self.last_sync = 0, None
        self.sync_count = 0
        self.next_heartbeat = 0.0
        self.fault_code = 0
        self.stop_time = 0.0
        self.send(HEARTBEAT_BASE + self.node, bytes((NMT_INITIALISING,)))  # boot-up

    def send(self, can_id: int, data: bytes) -> None:
        if not self.silent:
            self._send(can_id, data)

    def get(self, index: int, sub: int = 0):
        return self.od[(index, sub)].value

    def put(self, index: int, sub: int, value) -> None:
        self.od[(index, sub)].value = value

    # -- NMT and heartbeat ----------------------------------------------------------

    def on_nmt(self, data: bytes) -> None:
        if len(data) != 2 or data[1] not in (0, self.node):
            return
        command = data[0]
        if command == 0x01:
            self.nmt = NMT_OPERATIONAL
        elif command == 0x02:
            self.nmt = NMT_STOPPED
        elif command == 0x80:
            self.nmt = NMT_PRE_OPERATIONAL
        elif command == 0x81:  # reset application: everything to power-on values
            self.power_on()
        elif command == 0x82:  # reset communication: only 0x1000-0x1FFF and NMT
            kept = {key: entry for key, entry in self.od.items() if not 0x1000 <= key[0] <= 0x1FFF}
            kept[(0x1000, 0)] = self.od[(0x1000, 0)]  # the device type is the device's, not a setting
            state, control, code = self.state, self.last_controlword, self.fault_code
            self.power_on()
            self.od.update(kept)
            self.state, self.last_controlword, self.fault_code = state, control, code

    def tick(self, now: float) -> None:
        """Heartbeat producer (0x1017 [ms], 0 = off); the end of a fault reaction."""
        if self.state == FAULT_REACTION and now >= self.stop_time:
            self.state = FAULT
        period = self.get(0x1017) / 1000.0
        if period <= 0 or not self.heartbeat_on:
            self.next_heartbeat = now
            return
        if now >= self.next_heartbeat:
            self.send(HEARTBEAT_BASE + self.node, bytes((self.nmt,)))
            # Keep the period's phase; after a stall, start a new one instead of a burst.
            self.next_heartbeat += period
            if self.next_heartbeat <= now:
                self.next_heartbeat = now + period

    # -- SDO server -------------------------------------------------------------------

    def on_sdo(self, data: bytes) -> None:
        if len(data) != 8 or self.nmt == NMT_STOPPED:
            return
        ccs = data[0] >> 5
        index, sub = data[1] | data[2] << 8, data[3]
        reply = SDO_TX_BASE + self.node
        if ccs == 4:  # abort from the client
            self.sdo_segment = None
            return
        if ccs in (0, 3):
            self._sdo_segment(data)
            return
        entry = self.od.get((index, sub))
        if entry is None:
            known = any(i == index for i, _ in self.od)
            return self._abort(index, sub, ABORT_NO_SUBINDEX if known else ABORT_NO_OBJECT)
        if ccs == 2:  # initiate upload
            if entry.access == "wo":
                return self._abort(index, sub, ABORT_WRITE_ONLY)
            payload = entry.encode()
            if len(payload) <= 4:
                cmd = 0x43 | ((4 - len(payload)) << 2)
                self.send(reply, bytes((cmd,)) + data[1:4] + payload.ljust(4, b"\0"))
            else:
                self.sdo_segment = {"upload": True, "data": payload, "toggle": 0, "index": index, "sub": sub}
                self.send(reply, bytes((0x41,)) + data[1:4] + struct.pack("<I", len(payload)))
            return
        if ccs == 1:  # initiate download
            if entry.access in ("ro", "const"):
                return self._abort(index, sub, ABORT_READ_ONLY)
            expedited, sized = data[0] & 0x02, data[0] & 0x01
            if expedited:
                n = 4 - ((data[0] >> 2) & 3) if sized else entry.size
                code = self.write(index, sub, bytes(data[4:4 + n]))
                if code:
                    return self._abort(index, sub, code)
                self.send(reply, bytes((0x60,)) + data[1:4] + b"\0\0\0\0")
            else:
                size = struct.unpack("<I", data[4:8])[0] if sized else None
                self.sdo_segment = {"upload": False, "data": bytearray(), "toggle": 0, "index": index,
                                    "sub": sub, "size": size}
                self.send(reply, bytes((0x60,)) + data[1:4] + b"\0\0\0\0")
            return
        self._abort(index, sub, ABORT_COMMAND)

    def _sdo_segment(self, data: bytes) -> None:
        seg, ccs = self.sdo_segment, data[0] >> 5
        reply = SDO_TX_BASE + self.node
        if seg is None or seg["upload"] != (ccs == 3):
            return self._abort(0, 0, ABORT_COMMAND)
        toggle = (data[0] >> 4) & 1
        if toggle != seg["toggle"]:
            self.sdo_segment = None
            return self._abort(seg["index"], seg["sub"], ABORT_TOGGLE)
        seg["toggle"] ^= 1
        if seg["upload"]:
            chunk, seg["data"] = seg["data"][:7], seg["data"][7:]
            last = not seg["data"]
            cmd = (toggle << 4) | ((7 - len(chunk)) << 1) | int(last)
            self.send(reply, bytes((cmd,)) + chunk.ljust(7, b"\0"))
            if last:
                self.sdo_segment = None
            return
        n = 7 - ((data[0] >> 1) & 7)
        seg["data"] += data[1:1 + n]
        if data[0] & 0x01:
            self.sdo_segment = None
            code = self.write(seg["index"], seg["sub"], bytes(seg["data"]))
            if code:
                return self._abort(seg["index"], seg["sub"], code)
        self.send(reply, bytes((0x20 | (toggle << 4),)) + b"\0" * 7)

    def _abort(self, index: int, sub: int, code: int) -> None:
        self.sdo_segment = None
        self.send(SDO_TX_BASE + self.node, bytes((0x80, index & 0xFF, index >> 8, sub)) + struct.pack("<I", code))

    def write(self, index: int, sub: int, data: bytes) -> int:
        """Write an object as an SDO download does; return the abort code (0: done)."""
        entry = self.od[(index, sub)]
        try:
            value = entry.decode(data)
        except ValueError:
            return ABORT_LENGTH
        if 0x1400 <= index <= 0x1403 or 0x1800 <= index <= 0x1803:
            code = self._check_comm(index, sub, value)
        elif 0x1600 <= index <= 0x1603 or 0x1A00 <= index <= 0x1A03:
            code = self._check_mapping(index, sub, value)
        elif index == 0x6060 and value not in SUPPORTED_MODES and value != 0:
            code = ABORT_RANGE
        elif index == 0x605A and not -1 <= value <= 8:
            code = ABORT_RANGE
        else:
            code = 0
        if code:
            return code
        entry.value = value
        if index == 0x6060:
            self.put(0x6061, 0, value)
        if index == 0x6040:
            self.on_controlword(value)
        return 0

    def _check_comm(self, index: int, sub: int, value: int) -> int:
        if sub == 1:
            old = self.get(index, 1)
            # The COB-ID changes only while the PDO is invalid (CiA 301 7.5.2.35).
            if not (old & COB_INVALID) and not (value & COB_INVALID) and (old & 0x7FF) != (value & 0x7FF):
                return ABORT_RANGE
            if value & 0x20000000:
                return ABORT_RANGE  # 29-bit identifiers are not supported
        if sub == 2 and not (0 <= value <= 240 or value in (254, 255)):
            return ABORT_RANGE
        return 0

    def _check_mapping(self, index: int, sub: int, value: int) -> int:
        comm = index - 0x200
        if not self.get(comm, 1) & COB_INVALID:
            return ABORT_STATE  # mapping changes only while the PDO is invalid
        if sub == 0:
            if value > 8:
                return ABORT_RANGE
            bits = 0
            for k in range(1, value + 1):
                entry_value = self.get(index, k)
                target = (entry_value >> 16, (entry_value >> 8) & 0xFF)
                mapped = self.od.get(target)
                if mapped is None or not mapped.pdo:
                    return ABORT_NOT_MAPPABLE
                if (entry_value & 0xFF) != 8 * mapped.size:
                    return ABORT_NOT_MAPPABLE
                bits += entry_value & 0xFF
            return ABORT_PDO_LENGTH if bits > 64 else 0
        if self.get(index, 0) != 0:
            return ABORT_STATE  # sub-index 0 must be 0 while entries are written
        return 0

    # -- PDOs and SYNC ---------------------------------------------------------------

    def mapped(self, mapping_index: int) -> list[tuple[int, int, int]]:
        """(index, sub, size [byte]) of each object mapped by a mapping record."""
        out = []
        for k in range(1, self.get(mapping_index, 0) + 1):
            v = self.get(mapping_index, k)
            out.append((v >> 16, (v >> 8) & 0xFF, (v & 0xFF) // 8))
        return out

    def on_rpdo(self, k: int, data: bytes) -> None:
        if self.nmt != NMT_OPERATIONAL:
            return
        if self.get(0x1400 + k, 2) <= 240:
            self.pending_rpdo[k] = data  # synchronous: takes effect at the next SYNC
        else:
            self.apply_rpdo(k, data)

    def apply_rpdo(self, k: int, data: bytes) -> None:
        objects = self.mapped(0x1600 + k)
        if sum(size for _, _, size in objects) > len(data):
            self.send(EMCY_BASE + self.node, struct.pack("<HB", 0x8210, self.get(0x1001)) + b"\0" * 5)
            return  # PDO not processed: length error
        offset = 0
        for index, sub, size in objects:
            entry = self.od[(index, sub)]
            value = entry.decode(data[offset:offset + size])
            offset += size
            if index == 0x6040:
                self.on_controlword(value)
            entry.value = value

    def on_sync(self, now: float | None = None) -> list[tuple[int, bytes]]:
        """Apply synchronous RPDOs, then the TPDOs due at this SYNC.

        In CSP a drive that is given no velocity offset (0x60B1 not mapped) takes its
        velocity feed-forward from the target positions: their difference over the
        communication cycle period 0x1006 (or the measured SYNC interval) [increments/s].
        """
        if self.nmt != NMT_OPERATIONAL:
            return []
        for k, data in sorted(self.pending_rpdo.items()):
            self.apply_rpdo(k, data)
        self.pending_rpdo.clear()
        target = self.get(0x607A)
        if now is not None and self.operation_enabled and self.last_sync is not None and not any(
                index == 0x60B1 for k in range(4) for index, _, _ in self.mapped(0x1600 + k)):
            # The SYNC period the master declared (0x1006), as a drive's interpolator uses
            # it; without one, the interval measured between the two SYNCs.
            period = self.get(0x1006) * 1e-6 or max(now - self.last_sync, 1e-4)
            self.target_velocity = (target - self.last_target) / period
        else:
            self.target_velocity = 0.0
        self.last_target, self.last_sync = target, (now if self.operation_enabled else None)
        self.put(0x6041, 0, self.statusword(following=self.operation_enabled))
        self.sync_count += 1
        out = []
        for k in range(4):
            cob = self.get(0x1800 + k, 1)
            trans = self.get(0x1800 + k, 2)
            if cob & COB_INVALID or not 1 <= trans <= 240 or self.sync_count % trans:
                continue
            payload = b"".join(self.od[(i, s)].encode() for i, s, _ in self.mapped(0x1A00 + k))
            if self.truncate:
                payload = payload[:-1]
            out.append((cob & 0x7FF, payload))
        return out

    # -- CiA 402 state machine ----------------------------------------------------------

    def on_controlword(self, word: int) -> None:
        rising_reset = word & 0x80 and not self.last_controlword & 0x80
        self.last_controlword = word
        s = self.state
        if s == FAULT:
            if rising_reset:
                self.state = SWITCH_ON_DISABLED  # transition 15
                self.fault_code = 0
                self.put(0x603F, 0, 0)
                self.put(0x1001, 0, 0)
                self.send(EMCY_BASE + self.node, b"\0" * 8)  # error reset
            return
        if s == FAULT_REACTION:
            return
        shutdown = word & 0x87 == 0x06
        switch_on = word & 0x8F == 0x07
        enable = word & 0x8F == 0x0F
        disable_voltage = word & 0x82 == 0x00
        quick_stop = word & 0x86 == 0x02
        if s == SWITCH_ON_DISABLED and shutdown:
            self.state = READY
        elif s == READY:
            if switch_on or enable:
                self.state = SWITCHED_ON
            elif disable_voltage or quick_stop:
                self.state = SWITCH_ON_DISABLED
        elif s == SWITCHED_ON:
            if enable:
                self.state = OPERATION_ENABLED
            elif shutdown:
                self.state = READY
            elif disable_voltage or quick_stop:
                self.state = SWITCH_ON_DISABLED
        elif s == OPERATION_ENABLED:
            if switch_on:
                self.state = SWITCHED_ON
            elif shutdown:
                self.state = READY
            elif disable_voltage:
                self.state = SWITCH_ON_DISABLED
            elif quick_stop:
                self.state = QUICK_STOP if self.get(0x605A) in (5, 6, 7, 8) else SWITCH_ON_DISABLED
        elif s == QUICK_STOP:
            if disable_voltage:
                self.state = SWITCH_ON_DISABLED
            elif enable:
                self.state = OPERATION_ENABLED  # transition 16

    def fault(self, code: int, now: float) -> None:
        """A drive fault: fault reaction, then Fault; EMCY with ``code``."""
        if self.state in (FAULT, FAULT_REACTION):
            return
        self.state = FAULT_REACTION
        self.stop_time = now + 0.005
        self.fault_code = code
        self.put(0x603F, 0, code)
        register = 0x01 | (0x02 if code >> 12 == 2 else 0x04 if code >> 12 == 3 else
                           0x08 if code >> 12 == 4 else 0x80)
        self.put(0x1001, 0, register)
        self.send(EMCY_BASE + self.node, struct.pack("<HB", code, register) + b"\0" * 5)

    @property
    def operation_enabled(self) -> bool:
        return self.state == OPERATION_ENABLED and self.get(0x6061) == MODE_CSP

    def statusword(self, following: bool) -> int:
        word = STATUS_BITS[self.state] | REMOTE
        if self.state in (READY, SWITCHED_ON, OPERATION_ENABLED, QUICK_STOP, FAULT_REACTION):
            word |= VOLTAGE_ENABLED
        if self.state == OPERATION_ENABLED and following:
            word |= FOLLOWING_TARGET
        if self.state == QUICK_STOP:
            word |= TARGET_REACHED
        return word

    # -- units at this drive ------------------------------------------------------------

    def counts(self, q: float) -> int:
        s = self.spec
        return s.zero + round(s.direction * q * s.gear * s.counts_per_revolution / (2 * math.pi))

    def angle(self, counts: int) -> float:
        s = self.spec
        return s.direction * (counts - s.zero) * 2 * math.pi / (s.gear * s.counts_per_revolution)

    def velocity_si(self, counts_per_s: int) -> float:
        s = self.spec
        return s.direction * counts_per_s * 2 * math.pi / (s.gear * s.counts_per_revolution)

    def torque_si(self, permille: int) -> float:
        s = self.spec
        return s.direction * permille * self.get(0x6076) * 1e-6 * s.gear

    def update_actual(self, q: float, v: float, tau: float) -> None:
        s = self.spec
        self.put(0x6064, 0, max(-2**31, min(2**31 - 1, self.counts(q))))
        self.put(0x606C, 0, max(-2**31, min(2**31 - 1, round(
            s.direction * v * s.gear * s.counts_per_revolution / (2 * math.pi)))))
        rated = max(self.get(0x6076), 1)
        self.put(0x6077, 0, max(-32768, min(32767, round(s.direction * tau / s.gear / (rated * 1e-6)))))
        self.put(0x6041, 0, self.statusword(following=self.operation_enabled))
        if not self.operation_enabled:
            # A drive not following keeps its target at the actual position (no jump on enable).
            self.put(0x607A, 0, self.get(0x6064))


# -- the SLCAN adapter and the bus ----------------------------------------------------

BITRATES = {"S0": 10000, "S1": 20000, "S2": 50000, "S3": 100000, "S4": 125000, "S5": 250000,
            "S6": 500000, "S7": 750000, "S8": 1000000}
OK, BELL = b"\r", b"\a"
#: SCHED_FIFO priority of the emulator process (the driver node runs at 50).
EMULATOR_PRIORITY = 60
CATCH_UP_SLICE = 0.005


class Emulator:
    """The adapter (Lawicel ASCII on a pty), the bus with its drives, and the physics."""

    def __init__(self, specs: list[DriveSpec], link: str | None = None, path_file: str | None = None,
                 out=sys.stdout) -> None:
        self.out = out
        self.link, self.path_file = link, path_file
        # The physics follows a clock of ours, so a catch-up slice also refreshes the
        # actual values: a stall then shows as a steady motion, not a frozen then jumping arm.
        self.sim_time = time.monotonic()
        self.arm = SimulatedArm(clock=lambda: self.sim_time)
        self.q, self.v, self.tau = self.arm.read().position, np.zeros(len(specs)), np.zeros(len(specs))
        self.hold = self.q.copy()
        self.tx = bytearray()  # to the host
        self.rx = bytearray()
        self.open = False  # the CAN channel ('O' / 'C')
        self.bitrate = 1000000
        self.bus_off = False
        self.frames_in = self.frames_out = self.bits = 0
        self.master = self.slave = None
        self.drives = [Drive(spec, j, self.to_host) for j, spec in enumerate(specs)]
        self.by_node = {d.node: d for d in self.drives}
        self.open_pty()

    # -- the port ---------------------------------------------------------------------

    def open_pty(self) -> None:
        """Open a pseudo-terminal in raw mode and announce its slave path."""
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
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
        self.open = False
        self.say(f"PTY {path}")

    def close_pty(self) -> None:
        """Close both ends: the host's next read or write fails, as on an unplugged adapter."""
        for fd in (self.master, self.slave):
            if fd is not None:
                os.close(fd)
        self.master = self.slave = None
        if self.link and os.path.lexists(self.link):
            os.unlink(self.link)
        self.rx.clear()
        self.tx.clear()
        self.open = False

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    # -- frames -------------------------------------------------------------------------

    def to_host(self, can_id: int, data: bytes) -> None:
        """A drive puts a frame on the bus; the adapter passes it to the host if open."""
        if self.bus_off:
            return
        self.frames_out += 1
        self.bits += can_frame_bits(len(data), data, can_id)
        if self.open and self.master is not None:
            self.tx += b"t%03X%d%s\r" % (can_id, len(data), data.hex().upper().encode())

    def from_host(self, can_id: int, data: bytes, now: float) -> None:
        """A frame the host sent: every drive sees it."""
        self.frames_in += 1
        self.bits += can_frame_bits(len(data), data, can_id)
        if can_id == NMT:
            for d in self.drives:
                d.on_nmt(data)
        elif can_id == SYNC_ID:
            self.step(time.monotonic())  # a drive samples its actual values at the SYNC
            for d in self.drives:
                if not d.silent:
                    for cob, payload in d.on_sync(now):
                        d.send(cob, payload)
        elif SDO_RX_BASE < can_id <= SDO_RX_BASE + 0x7F:
            d = self.by_node.get(can_id - SDO_RX_BASE)
            if d is not None and not d.silent:
                d.on_sdo(data)
        else:
            for d in self.drives:
                if d.silent:
                    continue
                for k in range(4):
                    cob = d.get(0x1400 + k, 1)
                    if not cob & COB_INVALID and cob & 0x7FF == can_id:
                        d.on_rpdo(k, data)
        self.drive_physics()

    def command_line(self, line: bytes, now: float) -> bytes:
        """One Lawicel command from the host; return the adapter's answer."""
        text = line.decode("ascii", errors="replace")
        if not text:
            return OK
        c = text[0]
        try:
            if c in "tT":
                if not self.open or self.bus_off:
                    return BELL
                id_len = 3 if c == "t" else 8
                can_id = int(text[1:1 + id_len], 16)
                dlc = int(text[1 + id_len])
                data = bytes.fromhex(text[2 + id_len:2 + id_len + 2 * dlc])
                if dlc > 8 or len(data) != dlc:
                    return BELL
                self.from_host(can_id, data, now)
                return b"z\r" if c == "t" else b"Z\r"
            if c in "rR":
                return BELL if not self.open or self.bus_off else (b"z\r" if c == "r" else b"Z\r")
            if c == "S" and text in BITRATES and not self.open:
                self.bitrate = BITRATES[text]
                return OK
            if c == "s" and not self.open:
                return OK
            if c in "OL":
                if self.open:
                    return BELL
                self.open = True
                return OK
            if c == "C":
                self.open = False
                return OK
            if c == "V":
                return b"V1013\r"
            if c == "v":
                return b"v0107\r"
            if c == "N":
                return b"NREHB\r"
            if c == "F":
                flags = 0xA0 if self.bus_off else 0x00  # bus error, error passive
                return b"F%02X\r" % flags
            if c in "ZXWMm":
                return OK
        except ValueError:
            return BELL
        return BELL

    # -- physics ---------------------------------------------------------------------------

    def step(self, now: float) -> None:
        behind = now - self.arm.time
        self.sim_time = self.arm.time + CATCH_UP_SLICE if CATCH_UP_SLICE < behind < MAX_CATCH_UP else now
        sample = self.arm.read()
        self.q, self.v, self.tau = sample.position, sample.velocity, sample.effort
        for d in self.drives:
            d.tick(now)
            j = d.joint
            d.update_actual(self.q[j], self.v[j], self.tau[j])
        self.drive_physics()

    def drive_physics(self) -> None:
        """Send the setpoints of drives in Operation enabled (CSP) to the simulated arm.

        Target position, velocity offset and torque offset become the simulated drive's
        position, velocity and torque setpoints; every other joint holds where it was
        when its drive left Operation enabled (brake / position hold).
        """
        following = [d.operation_enabled for d in self.drives]
        if not any(following):
            if self.arm.enabled:
                self.arm.disable()
            self.hold[:] = self.q
            return
        n = len(self.drives)
        goal, velocity, effort = self.hold.copy(), np.zeros(n), np.zeros(n)
        for d in self.drives:
            j = d.joint
            if following[j]:
                goal[j] = d.angle(d.get(0x607A))
                velocity[j] = d.velocity_si(d.get(0x60B1) + d.target_velocity)
                effort[j] = d.torque_si(d.get(0x60B2))
                self.hold[j] = self.q[j]
        if not self.arm.enabled:
            self.arm.enable()
        self.arm.write(JointCommand(goal, velocity, effort))

    # -- commands ----------------------------------------------------------------------------

    def command(self, line: str, now: float) -> bool:
        """Apply one stdin command; return False on ``quit``."""
        words = line.split()
        if not words:
            return True
        try:
            name, args = words[0], words[1:]
            if name == "quit":
                return False
            if name == "fault":
                self.by_node[int(args[0], 0)].fault(int(args[1], 0) if len(args) > 1 else 0x2310, now)
                self.drive_physics()
            elif name == "emcy":
                d = self.by_node[int(args[0], 0)]
                d.send(EMCY_BASE + d.node, struct.pack("<HB", int(args[1], 0), d.get(0x1001)) + b"\0" * 5)
            elif name in ("heartbeat", "silent", "truncate"):
                if args[1] not in ("on", "off"):
                    raise ValueError("on or off")
                d = self.by_node[int(args[0], 0)]
                if name == "heartbeat":
                    d.heartbeat_on = args[1] == "on"
                elif name == "silent":
                    d.silent = args[1] == "on"
                else:
                    d.truncate = args[1] == "on"
            elif name == "busoff":
                if args[0] not in ("on", "off"):
                    raise ValueError("on or off")
                self.bus_off = args[0] == "on"
            elif name == "close":
                self.close_pty()
            elif name == "reopen":
                if self.master is None:
                    self.open_pty()
            elif name == "set":
                d = self.by_node[int(args[0], 0)]
                index, sub = int(args[1], 0), int(args[2], 0)
                entry = d.od[(index, sub)]
                entry.value = int(args[3], 0)
            elif name == "od":
                d = self.by_node[int(args[0], 0)]
                self.say(f"od {d.get(int(args[1], 0), int(args[2], 0))}")
                return True
            elif name == "state":
                self.say("state " + " ".join(f"{x:.6f}" for x in (*self.q, *self.tau)))
                return True
            elif name == "drives":
                self.say("drives " + " ".join(d.state for d in self.drives))
                return True
            elif name == "stats":
                self.say(f"stats {self.frames_in} {self.frames_out} {self.bits}")
                return True
            else:
                raise ValueError(f"unknown command {name!r}")
        except (IndexError, KeyError, ValueError) as exc:
            self.say(f"error {line.strip()}: {exc}")
            return True
        self.say(f"ok {line.strip()}")
        return True

    def run(self, stdin=sys.stdin) -> None:
        """Serve the adapter and stdin until ``quit`` or a signal."""
        stdin_fd = stdin.fileno() if stdin is not None else None
        pending = b""
        while True:
            fds = [fd for fd in (self.master, stdin_fd) if fd is not None]
            ready, _, _ = select.select(fds, [], [], 0.001)
            now = time.monotonic()
            if self.master is not None and self.master in ready:
                try:
                    data = os.read(self.master, 4096)
                except OSError:
                    data = b""
                self.rx += data
                replies = bytearray()
                while b"\r" in self.rx:
                    line, _, rest = bytes(self.rx).partition(b"\r")
                    self.rx = bytearray(rest)
                    replies += self.command_line(line.strip(b"\n"), now)
                    # Frames the drives answered come after the adapter's acknowledgement.
                    replies += self.tx
                    self.tx.clear()
                if replies and self.master is not None:
                    self.send(bytes(replies))
            self.step(now)
            if self.tx and self.master is not None:
                self.send(bytes(self.tx))
                self.tx.clear()
            if stdin_fd is not None and stdin_fd in ready:
                chunk = os.read(stdin_fd, 4096)
                if not chunk:
                    stdin_fd = None
                    continue
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if not self.command(line.decode(errors="replace"), time.monotonic()):
                        return
                    if self.tx and self.master is not None:
                        self.send(bytes(self.tx))
                        self.tx.clear()

    def send(self, data: bytes) -> None:
        """Put bytes on the pty, never blocking: a full queue (nobody reading) drops them."""
        for _ in range(2):
            try:
                os.write(self.master, data)
                return
            except BlockingIOError:
                termios.tcflush(self.slave, termios.TCIFLUSH)
            except OSError:
                return


JOINTS = ("shoulder_flexion", "shoulder_abduction", "shoulder_rotation", "elbow_flexion")
#: The emulated arm, described independently of config/hardware/canopen_arm.yaml:
#: joint -> (node, counts per motor turn, gear, direction, zero [counts], rated torque [mN·m]).
DEFAULT_DRIVES = {
    "shoulder_flexion": (1, 524288, 100.0, 1, 0, 1270),
    "shoulder_abduction": (2, 524288, 100.0, 1, 0, 1270),
    "shoulder_rotation": (3, 524288, 100.0, -1, 0, 640),
    "elbow_flexion": (4, 524288, 80.0, 1, 262144, 640),
}


def parse_drive(spec: str) -> tuple:
    """Parse ``JOINT:NODE[:COUNTS[:GEAR[:DIR[:ZERO[:RATED_MNM]]]]]``."""
    parts = spec.split(":")
    if len(parts) < 2 or parts[0] not in DEFAULT_DRIVES:
        raise argparse.ArgumentTypeError(
            f"{spec!r}: expected JOINT:NODE[:COUNTS[:GEAR[:DIR[:ZERO[:RATED_MNM]]]]], JOINT one of {', '.join(JOINTS)}")
    values = list(DEFAULT_DRIVES[parts[0]])
    try:
        for k, text in enumerate(parts[1:]):
            values[k] = float(text) if k == 2 else int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{spec!r}: GEAR is a number, the others integers") from None
    if not 1 <= values[0] <= 127 or values[1] <= 0 or values[2] <= 0 or values[3] not in (1, -1):
        raise argparse.ArgumentTypeError(f"{spec!r}: NODE 1-127, COUNTS > 0, GEAR > 0, DIR 1 or -1")
    return parts[0], tuple(values)


def main(argv: list[str] | None = None) -> int:
    """Run the emulated adapter and drives until ``quit`` or Ctrl-C; returns the exit status."""
    parser = argparse.ArgumentParser(prog="rehab-robot emulate canopen",
                                     description="Four CiA 402 drives behind an SLCAN adapter on a pseudo-terminal.")
    parser.add_argument("--link", help="make a symlink at this path to the pseudo-terminal")
    parser.add_argument("--path-file", help="write the pseudo-terminal path to this file")
    parser.add_argument("--drive", action="append", default=[], type=parse_drive,
                        metavar="JOINT:NODE[:COUNTS[:GEAR[:DIR[:ZERO[:RATED_MNM]]]]]", help="change one joint's drive")
    args = parser.parse_args(argv)
    drives = dict(DEFAULT_DRIVES)
    drives.update(dict(args.drive))
    nodes = [d[0] for d in drives.values()]
    if len(set(nodes)) != len(nodes):
        parser.error(f"node ids must differ, got {nodes}")
    try:
        # Real drives answer whatever the host does: above the driver node's SCHED_FIFO 50, so
        # a busy driver process never holds the emulated bus up. The emulator sleeps in
        # select() between frames and physics steps, so it takes little from the host.
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(EMULATOR_PRIORITY))
    except (OSError, AttributeError) as exc:
        print(f"emulate canopen: no real-time priority ({exc}); replies may be late on a busy machine",
              file=sys.stderr)
    specs = [DriveSpec(*drives[j][:2], gear=drives[j][2], direction=drives[j][3], zero=drives[j][4],
                       rated_torque_mnm=drives[j][5]) for j in JOINTS]
    emulator = Emulator(specs, link=args.link, path_file=args.path_file)
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
