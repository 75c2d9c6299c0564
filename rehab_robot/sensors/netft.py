"""ATI Net F/T over RDT (Raw Data Transfer, UDP): the protocol, conversions and health checks.

Written from ATI's published Net F/T manual (section "UDP Interface using RDT"):

* The host sends an 8-byte **request** to UDP port 49152 of the sensor, big-endian::

      uint16 command_header = 0x1234
      uint16 command        0x0000 stop streaming
                            0x0002 start high-speed real-time streaming
                            0x0042 set software bias (tare inside the sensor)
      uint32 sample_count   records to send; 0 = until told to stop

* The sensor answers to the address and port the request came from with one 36-byte
  **record** per UDP datagram (real-time mode), big-endian::

      uint32 rdt_sequence   +1 per RDT datagram sent (wraps at 2**32)
      uint32 ft_sequence    +1 per internal F/T sample (wraps at 2**32)
      uint32 status         system status code; 0 = healthy, any set bit is a fault
      int32  Fx Fy Fz Tx Ty Tz   in counts

* counts / counts-per-force = force and counts / counts-per-torque = torque, in the
  units chosen on the sensor's configuration page (here: N and N·m, from the
  calibration's "Counts per Force" and "Counts per Torque").

No rclpy here: :class:`NetFTStream` is the whole receive pipeline (parse, sequence gaps,
status, saturation, tare, gravity compensation, health) and the node only feeds it bytes
and orientations.
"""

from __future__ import annotations

import math
import struct
import threading
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from rehab_robot.errors import ConfigError, HardwareError

#: UDP port of the RDT server on the sensor.
RDT_PORT = 49152
#: First field of every request.
REQUEST_HEADER = 0x1234
#: Request commands (the manual's RDT command table; the ones this driver uses).
CMD_STOP = 0x0000
CMD_START_REALTIME = 0x0002
CMD_SET_SOFTWARE_BIAS = 0x0042
#: Byte sizes of a request and of one real-time record.
REQUEST_SIZE = 8
RECORD_SIZE = 36
#: Sequence counters are uint32 and wrap around.
SEQUENCE_MODULUS = 2**32
#: Axis names in record order.
AXES = ("Fx", "Fy", "Fz", "Tx", "Ty", "Tz")
#: Standard gravity [m/s²], pointing along -z of the base frame (REP-103).
GRAVITY = 9.81

_REQUEST = struct.Struct(">HHI")
_RECORD = struct.Struct(">III6i")
_COMMANDS = {CMD_STOP: "stop", CMD_START_REALTIME: "start real-time streaming",
             CMD_SET_SOFTWARE_BIAS: "set software bias"}


def encode_request(command: int, sample_count: int = 0) -> bytes:
    """Return the 8-byte RDT request for ``command`` (one of the ``CMD_*`` values).

    Args:
        command: RDT command code.
        sample_count: Records the sensor should send; 0 streams until stopped.

    Raises:
        ValueError: for an unknown command or a count outside 0 .. 2**32-1.
    """
    if command not in _COMMANDS:
        allowed = ", ".join(f"0x{c:04x} ({name})" for c, name in _COMMANDS.items())
        raise ValueError(f"unknown RDT command 0x{command:04x}; allowed: {allowed}")
    if not 0 <= sample_count < SEQUENCE_MODULUS:
        raise ValueError(f"RDT sample_count {sample_count} is out of range; allowed: 0 (endless) to {SEQUENCE_MODULUS - 1}")
    return _REQUEST.pack(REQUEST_HEADER, command, sample_count)


@dataclass(frozen=True)
class RdtRecord:
    """One RDT record as received.

    Attributes:
        rdt_sequence: Datagram counter of the sensor (uint32).
        ft_sequence: Internal F/T sample counter (uint32).
        status: System status code; 0 when healthy.
        counts: Fx, Fy, Fz, Tx, Ty, Tz in counts (int32 each).
    """

    rdt_sequence: int
    ft_sequence: int
    status: int
    counts: tuple[int, int, int, int, int, int]


def parse_record(data: bytes) -> RdtRecord:
    """Decode one real-time RDT datagram.

    Raises:
        HardwareError: if ``data`` is not exactly one 36-byte record (naming its length).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise HardwareError(f"RDT record must be bytes, not {type(data).__name__}")
    if len(data) != RECORD_SIZE:
        raise HardwareError(
            f"bad RDT record: {len(data)} bytes received, a real-time record has exactly {RECORD_SIZE} "
            f"(3 uint32 + 6 int32, big-endian); first bytes {bytes(data[:12]).hex() or '(none)'}"
        )
    rdt, ft, status, *counts = _RECORD.unpack(data)
    return RdtRecord(rdt, ft, status, tuple(counts))


def describe_status(word: int) -> str:
    """Return a status code as hex with its set bits, e.g. ``0x80010000 (bits 31, 16)``."""
    if word == 0:
        return "0x00000000 (healthy)"
    bits = [str(b) for b in range(31, -1, -1) if word >> b & 1]
    return f"0x{word:08x} (bit{'s' if len(bits) > 1 else ''} {', '.join(bits)})"


def _positive_finite(value: float, name: str, unit: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not (math.isfinite(number) and number > 0):
        raise ConfigError(f"{name} = {value!r} is not allowed; allowed: a finite number > 0 [{unit}]")
    return number


@dataclass(frozen=True)
class Calibration:
    """Conversion of counts to SI units, from the sensor's calibration.

    Attributes:
        counts_per_force: Counts per newton [1/N].
        counts_per_torque: Counts per newton-metre [1/(N·m)].
    """

    counts_per_force: float
    counts_per_torque: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "counts_per_force",
                           _positive_finite(self.counts_per_force, "counts_per_force", "counts/N"))
        object.__setattr__(self, "counts_per_torque",
                           _positive_finite(self.counts_per_torque, "counts_per_torque", "counts/(N·m)"))

    def to_wrench(self, counts: Sequence[int]) -> np.ndarray:
        """Return force [N] (first 3) and torque [N·m] (last 3) for six axis counts."""
        c = np.asarray(counts, dtype=float)
        if c.shape != (6,):
            raise ValueError(f"expected 6 axis counts, got shape {c.shape}")
        return np.concatenate((c[:3] / self.counts_per_force, c[3:] / self.counts_per_torque))


def sequence_gap(previous: int, current: int) -> int:
    """Return how many sequence numbers lie strictly between ``previous`` and ``current``.

    Counts forward modulo 2**32, so 4294967295 -> 1 is a gap of 1. Returns -1 when
    ``current`` is not ahead of ``previous`` (a repeat or a datagram that arrived late):
    a step of more than half the counter range is taken as going backwards.
    """
    step = (current - previous) % SEQUENCE_MODULUS
    if step == 0 or step >= SEQUENCE_MODULUS // 2:
        return -1
    return step - 1


class SequenceTracker:
    """Counts lost, repeated and late datagrams from their ``rdt_sequence``.

    Attributes:
        received: Datagrams seen.
        lost: Sequence numbers skipped (datagrams that never arrived, so far).
        late: Datagrams that arrived after a newer one, or repeats; they are not used.
    """

    def __init__(self) -> None:
        self.last: Optional[int] = None
        self.received = 0
        self.lost = 0
        self.late = 0

    def update(self, sequence: int) -> bool:
        """Account for one datagram; return False when it is late or a repeat (drop it)."""
        self.received += 1
        if self.last is None:
            self.last = sequence
            return True
        gap = sequence_gap(self.last, sequence)
        if gap < 0:
            self.late += 1
            return False
        self.lost += gap
        self.last = sequence
        return True

    def restart(self) -> None:
        """Forget the last sequence number (the sensor was told to start streaming again)."""
        self.last = None


@dataclass(frozen=True)
class SaturationCheck:
    """When a record counts as saturated.

    Attributes:
        counts_limit: An axis with ``|counts| >= counts_limit`` is saturated; 0 turns the check off.
            Set it from the calibration's rated range (range [N] x counts per force).
        status_mask: Status bits that mean a saturated gauge on this sensor (see the
            manual's status code table); 0 for none. Other set bits are status errors.
    """

    counts_limit: int = 0
    status_mask: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.counts_limit, int) or self.counts_limit < 0:
            raise ConfigError(f"saturation counts limit {self.counts_limit!r} is not allowed; "
                              "allowed: an integer >= 0 (0: no counts check)")
        if not isinstance(self.status_mask, int) or not 0 <= self.status_mask < SEQUENCE_MODULUS:
            raise ConfigError(f"saturation status mask {self.status_mask!r} is not allowed; "
                              "allowed: 0 to 0xFFFFFFFF")

    def saturated_axes(self, record: RdtRecord) -> tuple[str, ...]:
        """Return the axes at or beyond the limit, plus ``"status"`` when a saturation bit is set."""
        axes = ()
        if self.counts_limit:
            axes = tuple(a for a, c in zip(AXES, record.counts) if abs(c) >= self.counts_limit)
        if record.status & self.status_mask:
            axes += ("status",)
        return axes


def cuff_gravity_wrench(rotation, mass: float, com, gravity: float = GRAVITY) -> np.ndarray:
    """Wrench that the cuff's own weight puts on the sensor, in the sensor frame.

    Args:
        rotation: 3x3 rotation of ``ft_sensor_link`` in the base frame (columns = sensor
            axes in base coordinates). Gravity points along -z of the base (REP-103).
        mass: Mass of everything distal of the sensor's measuring surface [kg].
        com: Its centre of mass in the sensor frame [m].
        gravity: Magnitude of gravity [m/s²].

    Returns:
        Force [N] and torque about the sensor origin [N·m], sensor frame, with the same
        sign as a force the patient applies to the cuff (the weight pulls the cuff down).
    """
    r = np.asarray(rotation, dtype=float)
    c = np.asarray(com, dtype=float)
    if r.shape != (3, 3) or not np.all(np.isfinite(r)):
        raise ValueError(f"rotation must be a finite 3x3 matrix, got shape {r.shape}")
    if c.shape != (3,) or not np.all(np.isfinite(c)):
        raise ValueError(f"com must be 3 finite coordinates [m], got {c.tolist()}")
    force = mass * (r.T @ np.array([0.0, 0.0, -gravity]))
    return np.concatenate((force, np.cross(c, force)))


class TareWindow:
    """Averages a fixed number of wrenches into a bias.

    Args:
        samples: How many wrenches to average (>= 1).
    """

    def __init__(self, samples: int) -> None:
        if samples < 1:
            raise ValueError(f"a tare needs at least 1 sample, not {samples}")
        self.samples = samples
        self._sum = np.zeros(6)
        self._count = 0
        self.gravity_compensated = True

    def add(self, wrench: np.ndarray, gravity_compensated: bool) -> Optional[np.ndarray]:
        """Add one wrench [N, N·m]; return the mean once ``samples`` have been added, else None."""
        self._sum += wrench
        self._count += 1
        self.gravity_compensated &= gravity_compensated
        if self._count < self.samples:
            return None
        return self._sum / self._count


@dataclass(frozen=True)
class Health:
    """State of the stream at one moment.

    Attributes:
        state: ``ok``, ``stopped``, ``saturated`` or ``status_error``.
        message: One line for people.
    """

    state: str
    message: str

    @property
    def publishing(self) -> bool:
        """True when wrenches are being published."""
        return self.state == "ok"


class NetFTStream:
    """The receive pipeline of one Net F/T: bytes in, SI wrench (or nothing) out.

    Thread-safe: :meth:`on_datagram` runs on the receive thread; :meth:`health`,
    :meth:`stats`, :meth:`start_tare` and :meth:`tare_result` on others.

    Args:
        calibration: Counts-to-SI conversion.
        saturation: When a record counts as saturated.
        stale_timeout: Age of the newest record after which the stream counts as stopped [s].
        cuff_mass: Mass distal of the sensor for gravity compensation [kg]; 0 turns it off.
        cuff_com: That mass's centre in the sensor frame [m].
    """

    def __init__(self, calibration: Calibration, saturation: SaturationCheck, stale_timeout: float,
                 cuff_mass: float = 0.0, cuff_com: Sequence[float] = (0.0, 0.0, 0.0)) -> None:
        self.calibration = calibration
        self.saturation = saturation
        self.stale_timeout = _positive_finite(stale_timeout, "stale_timeout", "s")
        mass = float(cuff_mass)
        if not (math.isfinite(mass) and mass >= 0):
            raise ConfigError(f"cuff_mass = {cuff_mass!r} is not allowed; allowed: a finite number >= 0 [kg]")
        com = np.asarray(cuff_com, dtype=float)
        if com.shape != (3,) or not np.all(np.isfinite(com)):
            raise ConfigError(f"cuff_com = {list(cuff_com)!r} is not allowed; allowed: 3 finite coordinates [m]")
        self.cuff_mass, self.cuff_com = mass, com
        self.sequence = SequenceTracker()
        self._lock = threading.Lock()
        self.bias = np.zeros(6)
        self.bias_gravity_compensated = True  # a zero bias holds no cuff weight
        self.bad_datagrams = 0
        self.last_bad_datagram = ""
        self.status_errors = 0
        self.saturated_records = 0
        self.last_status = 0
        self.last_saturated: tuple[str, ...] = ()
        self.last_record: Optional[RdtRecord] = None
        self.last_time: Optional[float] = None
        self.last_wrench: Optional[np.ndarray] = None
        self.gravity_active = False
        self._tare: Optional[TareWindow] = None
        self._tare_result: Optional[str] = None

    # -- receive thread --------------------------------------------------------------

    def on_datagram(self, data: bytes, now: float, rotation=None) -> Optional[np.ndarray]:
        """Process one datagram received at ``now`` [s, monotonic].

        Args:
            data: The UDP payload.
            now: Receive time [s].
            rotation: 3x3 rotation of the sensor in the base frame, or None when unknown
                (no gravity compensation then).

        Returns:
            The wrench to publish [N, N·m] in the sensor frame, or None when this record must
            not be published (bad bytes, late, status error, saturated).
        """
        try:
            record = parse_record(data)
        except HardwareError as exc:
            with self._lock:
                self.bad_datagrams += 1
                self.last_bad_datagram = str(exc)
            return None
        with self._lock:
            if not self.sequence.update(record.rdt_sequence):
                return None
            self.last_record, self.last_time, self.last_status = record, now, record.status
            saturated = self.saturation.saturated_axes(record)
            self.last_saturated = saturated
            if saturated:
                self.saturated_records += 1
            elif record.status:
                self.status_errors += 1
            if saturated or record.status:
                self.last_wrench = None
                return None
            raw = self.calibration.to_wrench(record.counts)
            gravity = None
            if rotation is not None and self.cuff_mass > 0:
                gravity = cuff_gravity_wrench(rotation, self.cuff_mass, self.cuff_com)
            if self._tare is not None:
                # With no cuff mass there is no weight to leave out: such a bias is always usable.
                mean = self._tare.add(raw if gravity is None else raw - gravity,
                                      gravity is not None or self.cuff_mass == 0)
                if mean is not None:
                    self.bias, self.bias_gravity_compensated = mean, self._tare.gravity_compensated
                    self._tare_result = (
                        f"bias set from {self._tare.samples} records: force "
                        f"{np.round(mean[:3], 4).tolist()} N, torque {np.round(mean[3:], 5).tolist()} N·m"
                        + ("" if self._tare.gravity_compensated else
                           "; cuff orientation unknown during the tare, gravity compensation off until the next one")
                    )
                    self._tare = None
            self.gravity_active = gravity is not None and self.bias_gravity_compensated
            wrench = raw - self.bias - (gravity if self.gravity_active else 0.0)
            self.last_wrench = wrench
            return wrench

    # -- other threads ---------------------------------------------------------------

    def start_tare(self, samples: int) -> None:
        """Begin averaging the next ``samples`` publishable records into the bias."""
        with self._lock:
            self._tare = TareWindow(samples)
            self._tare_result = None

    def tare_result(self) -> Optional[str]:
        """Return the description of the finished tare, or None while it is under way."""
        with self._lock:
            return self._tare_result

    def cancel_tare(self) -> None:
        """Abandon a tare under way (the bias keeps its previous value)."""
        with self._lock:
            self._tare = None

    def restart(self) -> None:
        """The sensor is being asked to start streaming again: sequence numbers restart."""
        with self._lock:
            self.sequence.restart()

    def health(self, now: float) -> Health:
        """Return the state of the stream at ``now`` [s, monotonic]."""
        with self._lock:
            if self.last_time is None:
                return Health("stopped", "no RDT record received yet")
            age = now - self.last_time
            if age > self.stale_timeout:
                return Health("stopped", f"stream stopped: no RDT record for {age:.2f} s "
                                         f"(limit {self.stale_timeout:g} s)")
            if self.last_saturated:
                return Health("saturated", f"saturated: {', '.join(self.last_saturated)} "
                                           f"(status {describe_status(self.last_status)})")
            if self.last_status:
                return Health("status_error", f"sensor reports status {describe_status(self.last_status)}")
            return Health("ok", "streaming")

    def stats(self) -> dict[str, object]:
        """Counters and the latest values, for diagnostics."""
        with self._lock:
            return {
                "records": self.sequence.received,
                "lost_packets": self.sequence.lost,
                "late_packets": self.sequence.late,
                "bad_packets": self.bad_datagrams,
                "last_bad_packet": self.last_bad_datagram,
                "status_errors": self.status_errors,
                "last_status": describe_status(self.last_status),
                "saturated_records": self.saturated_records,
                "rdt_sequence": self.last_record.rdt_sequence if self.last_record else "none",
                "bias": np.round(self.bias, 5).tolist(),
                "gravity_compensation": self.gravity_active,
            }
