"""``canopen``: the arm on CiA 402 servo drives over CANopen, cyclic synchronous position.

Built on ``canopen`` (NMT, SDO, PDO configuration, EMCY consumer, SYNC producer) over
``python-can`` (any interface: socketcan, slcan, pcan, kvaser, ...). See
docs/hardware/canopen.md for wiring, configuration, units and the bus load.

Start-up (constructor, and again on ``clear_fault()``): NMT reset communication and
every drive's boot-up awaited; over SDO each drive's device type (0x1000 must say CiA
402), then its configuration: every PDO invalidated, then the layout's RPDOs/TPDOs
mapped with synchronous transmission (type 1), communication cycle period (0x1006, the
SYNC period), heartbeat producer time (0x1017), quick
stop option code (0x605A), mode of operation CSP (0x6060 = 8), rated torque (0x6076 or
torque constant x rated current 0x6075). Then NMT operational, and the state machine
driven to holding: Quick stop active, reached through Operation enabled with the target
at the actual position. ``enable()`` takes the drives to Operation enabled (transition
16), ``disable()`` back to Quick stop active: the drive stops and holds, energised.

Cycle: ``read()`` takes the TPDOs the drives sent at the previous SYNC (statusword,
position, velocity, torque), checks the faults reported meanwhile, sends each drive's
RPDOs (controlword, target position, velocity and torque offsets of the last
``write()``, or a hold) and then the SYNC: the drives apply the RPDOs and answer at
this SYNC, the answers are read at the next cycle. ``write()`` only stores the setpoint.

Faults (each a :class:`HardwareError` naming the joint, raised once; later reads return
the readings until ``clear_fault()``): a drive in Fault (with its EMCY code and text), an
EMCY, a lost heartbeat, a drive whose TPDOs stop, a drive that leaves operation; a CAN
error-passive state; ``device_lost`` for bus-off, a silent bus (no drive answers SYNC)
and an adapter that fails (unplugged). A Fault is reset (controlword bit 7) only in
``clear_fault()``, i.e. on the operator's safety/reset.
"""

from __future__ import annotations

import collections
import math
import struct
import sys
import threading
import time
from typing import Optional

import numpy as np

from rehab_robot import JOINT_NAMES
from rehab_robot.errors import ConfigError, HardwareError
from rehab_robot.hardware.canopen import cia402
from rehab_robot.hardware.canopen.bus_load import layout_bus_load
from rehab_robot.hardware.canopen.config import ArmConfig, check_channel, default_config_path, load_config
from rehab_robot.hardware.canopen.emcy import emcy_text, error_frame, register_text
from rehab_robot.hardware.interface import HardwareInterface, JointCommand, JointSample
from rehab_robot.periodic import GIL_SWITCH_INTERVAL

#: Speed [rad/s] below which a joint counts as at rest.
REST_VELOCITY = 0.01
#: Time [s] the velocity is computed over when the drives do not send it (compact layout).
#: A TPDO read in a cycle may answer that cycle's SYNC or the one before, so a sample's
#: stamp can be one SYNC period off: over 20 ms that is a 10-20 % error at 250-500 Hz (a
#: 3-period window gave 40 %, and a false velocity-limit stop), for a 10 ms delay.
VELOCITY_WINDOW = 0.02
#: Cycles a drive may take to reach Operation enabled after ``enable()``.
ENABLE_CYCLES = 20
#: Python struct formats of the mapped object sizes [bit] (signed except the control words).
_FORMATS = {0x6040: "H", 0x6041: "H", 0x607A: "i", 0x60B1: "i", 0x60B2: "h", 0x6064: "i", 0x606C: "i", 0x6077: "h"}
_COB_INVALID = 0x80000000
_RPDO_COB = (0x200, 0x300, 0x400, 0x500)
_TPDO_COB = (0x180, 0x280, 0x380, 0x480)
_NMT_STATES = {0x00: "boot-up", 0x04: "stopped", 0x05: "operational", 0x7F: "pre-operational"}


def _can():
    import can

    return can


def _canopen():
    import canopen

    return canopen


def check_bus_load(config: ArmConfig, loop_rate: float) -> None:
    """Refuse a configuration whose computed bus load exceeds ``config.max_bus_load``.

    Raises:
        ConfigError: one line with the figure and what would fit.
    """
    load = layout_bus_load(config.layout, len(config.joints), loop_rate, config.bitrate, config.heartbeat_time)
    if load.load > config.max_bus_load:
        raise ConfigError(
            f"{config.path}: pdo_layout = {config.layout.name!r} at loop_rate {loop_rate:g} Hz on "
            f"{config.bitrate} bit/s: computed bus load {100 * load.load:.1f} % "
            f"({load.bits_per_second:.0f} bit/s, worst-case bit stuffing) exceeds max_bus_load "
            f"{100 * config.max_bus_load:.0f} %; use pdo_layout 'compact', a lower loop_rate or a higher bitrate")


class _BusWatcher:
    """A python-can listener that sees error frames (the canopen library drops them)."""

    def __init__(self, backend: "CanopenArm") -> None:
        self.backend = backend
        self._stopping = False

    def __call__(self, msg) -> None:
        self.on_message_received(msg)

    def on_message_received(self, msg) -> None:
        if msg.is_error_frame:
            self.backend._on_error_frame(msg)

    def on_error(self, exc: Exception) -> None:
        """The adapter failed under the receiving thread: note it and end that thread
        (from another one: a thread cannot join itself), instead of letting it spin on
        a port that is gone."""
        self.backend._on_receive_error(exc)
        if not self._stopping:
            self._stopping = True
            notifier = self.backend._network.notifier if self.backend._network is not None else None
            if notifier is not None:
                threading.Thread(target=notifier.stop, daemon=True).start()
        time.sleep(0.01)

    def stop(self) -> None:
        pass


class CanopenArm(HardwareInterface):
    """The arm on four CiA 402 drives in cyclic synchronous position mode.

    Args:
        config: The arm configuration file (default ``config/hardware/canopen_arm.yaml``).
        interface: Overrides the file's python-can interface.
        channel: Overrides the file's channel.
        bitrate: Overrides the file's bitrate [bit/s].
        loop_rate: The driver's loop rate [Hz]: the SYNC rate.

    Raises:
        ConfigError: for a bad configuration, before any frame is sent.
        HardwareError: if a drive does not answer or is not a CiA 402 drive.
    """

    def __init__(self, config: Optional[str] = None, interface: Optional[str] = None,
                 channel: Optional[str] = None, bitrate: Optional[int] = None, loop_rate: float = 500.0) -> None:
        self.check_options(config, interface, channel, bitrate, loop_rate)
        self.config = load_config(config or default_config_path(), interface, channel, bitrate)
        self.loop_rate = float(loop_rate)
        self.period = 1.0 / self.loop_rate
        self.joint_names = JOINT_NAMES
        # Sending the RPDOs and the SYNC is a few serial writes; the TPDOs are not waited
        # for, so the cycle costs far less than a period. A cycle as long as 0.9 period
        # means the host can no longer keep the SYNC rate.
        self.cycle_budget = 0.9 * self.period
        self.layout = self.config.layout
        n = len(self.config.joints)
        self._lock = threading.Lock()
        self._network = None
        self._nodes: list = []
        self._rated = np.ones(n)  # rated motor torque [N·m] per joint
        self._position = np.zeros(n)
        self._velocity = np.zeros(n)
        self._effort = np.zeros(n)
        self._statusword = np.zeros(n, dtype=int)
        self._counts = np.zeros(n, dtype=np.int64)
        self._tpdo_data = [[b""] * len(self.layout.tpdos) for _ in range(n)]
        self._tpdo_count = np.zeros((n, len(self.layout.tpdos)), dtype=np.int64)
        self._tpdo_seen = np.zeros((n, len(self.layout.tpdos)), dtype=np.int64)
        self._missed = np.zeros(n, dtype=int)
        self._heartbeat_time = np.zeros(n)
        self._nmt_state = [None] * n
        self._booted = [False] * n
        self._emcy: collections.deque = collections.deque(maxlen=32)
        self._last_emcy: dict[int, tuple[int, int]] = {}  # since the last start-up
        self._emcy_seen: dict[int, tuple[int, int]] = {}  # ever, for diagnostics
        self._bus_errors: collections.deque = collections.deque(maxlen=8)
        self._error_frames = 0
        self._last_error_frame = ""
        self._last_frame = 0.0  # [s] monotonic time of the last TPDO or heartbeat received
        self._receive_gap_max = 0.0  # [s] longest time without one since start-up
        self._reported: set = set()
        self._lost: Optional[str] = None
        self._follow = False
        self._enable_cycle = 0
        self._command: Optional[tuple] = None
        self._hold_counts = np.zeros(n, dtype=np.int64)
        self._sync_times: collections.deque = collections.deque(maxlen=9)
        self._history = [collections.deque(maxlen=64) for _ in range(n)]
        self._cycles = 0
        self._frames_sent = 0
        self._started = False
        self._closed = False
        # The receiving thread (python-can's notifier) gives the GIL up at every read from
        # the adapter (slcan: every byte) and waits up to the switch interval to get it back
        # while the control loop and the ROS executor compute: at the default 5 ms it falls
        # behind the bus. A shorter interval (the driver loop's, rehab_robot.periodic) keeps it
        # within a cycle, also where the backend runs without that loop.
        sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL))
        try:
            self._open()
            self._start_up(reset_faults=False)
        except BaseException:
            self._close_network()
            raise

    @classmethod
    def check_options(cls, config: Optional[str] = None, interface: Optional[str] = None,
                      channel: Optional[str] = None, bitrate: Optional[int] = None,
                      loop_rate: float = 500.0) -> None:
        """Validate the options and the configuration file without opening the bus.

        Raises:
            ConfigError: naming the file or option, the field and what is allowed.
        """
        if not (isinstance(loop_rate, (int, float)) and not isinstance(loop_rate, bool)
                and math.isfinite(loop_rate) and 1.0 <= loop_rate <= 2000.0):
            raise ConfigError(f"hardware option 'loop_rate' = {loop_rate!r}: must be 1 to 2000 Hz")
        if config is not None and not isinstance(config, str):
            raise ConfigError(f"hardware option 'config' = {config!r}: must be the path of a YAML file")
        parsed = load_config(config or default_config_path(), interface, channel, bitrate)
        interfaces = _can().VALID_INTERFACES
        if parsed.interface not in interfaces:
            raise ConfigError(f"{parsed.path}: interface = {parsed.interface!r}: not a python-can interface; "
                              f"allowed: {', '.join(sorted(interfaces))}")
        if parsed.interface == "udp_multicast":
            # It carries the CAN frames as UDP multicast onto the network the host is on.
            raise ConfigError(f"{parsed.path}: interface = 'udp_multicast': not allowed, it sends the bus's "
                              "frames onto the network; use a CAN adapter (socketcan, slcan, pcan, ...) or, "
                              "for the emulator, slcan on its pseudo-terminal")
        if parsed.interface != "virtual":  # python-can's in-process bus (unit tests) has no channel
            check_channel(parsed)
        check_bus_load(parsed, float(loop_rate))

    # -- the bus --------------------------------------------------------------------

    def _open(self) -> None:
        """Connect to the bus and create one canopen node per drive from its EDS."""
        canopen = _canopen()
        cfg = self.config
        network = canopen.Network()
        self._nodes = []
        for j, joint in enumerate(cfg.joints):
            try:
                node = canopen.RemoteNode(joint.node_id, str(joint.eds))
            except Exception as exc:  # the EDS parser raises many kinds
                raise ConfigError(f"{cfg.path}: joints.{joint.name}.eds = {str(joint.eds)!r}: not a readable "
                                  f"EDS file: {exc}") from None
            node.sdo.RESPONSE_TIMEOUT = cfg.sdo_timeout
            network.add_node(node)
            node.emcy.add_callback(lambda error, j=j: self._on_emcy(j, error))
            network.subscribe(0x700 + joint.node_id, lambda cob, data, stamp, j=j: self._on_heartbeat(j, data))
            self._nodes.append(node)
        try:
            network.connect(interface=cfg.interface, channel=cfg.channel, bitrate=cfg.bitrate, **cfg.bus_options)
        except Exception as exc:  # python-can raises CanError, OSError, ValueError, ImportError...
            raise HardwareError(f"CAN interface {cfg.interface} channel {cfg.channel} cannot be opened "
                                f"({cfg.path}): {exc}", device_lost=True) from None
        network.notifier.add_listener(_BusWatcher(self))
        self._network = network
        self._lost = None

    def _close_network(self) -> None:
        network, self._network = self._network, None
        if network is None:
            return
        try:
            network.disconnect()
        except Exception:  # closing a bus whose adapter is gone raises; nothing left to do
            if network.bus is not None:
                try:
                    network.bus.shutdown()
                except Exception:
                    pass

    def _send(self, can_id: int, data: bytes) -> None:
        network = self._network
        if network is None or self._lost:
            raise HardwareError(f"CAN adapter {self.config.channel} lost ({self._lost or 'closed'}); "
                                "safety/reset reconnects", device_lost=True)
        try:
            network.send_message(can_id, data)
        except Exception as exc:  # CanError, SerialException, OSError: the adapter is gone
            self._lost = f"send failed: {exc}"
            raise HardwareError(f"CAN adapter {self.config.channel} lost: {exc}", device_lost=True) from None
        self._frames_sent += 1

    # -- callbacks from the receiving thread ----------------------------------------------

    def _on_tpdo(self, j: int, k: int, pdo_map) -> None:
        now = time.monotonic()
        with self._lock:
            self._tpdo_data[j][k] = bytes(pdo_map.data)
            self._tpdo_count[j, k] += 1
            if self._started:
                self._receive_gap_max = max(self._receive_gap_max, now - self._last_frame)
            self._last_frame = now

    def _on_heartbeat(self, j: int, data: bytes) -> None:
        if not data:
            return
        with self._lock:
            self._heartbeat_time[j] = self._last_frame = time.monotonic()
            self._nmt_state[j] = data[0] & 0x7F
            if data[0] == 0x00:
                self._booted[j] = True

    def _on_emcy(self, j: int, error) -> None:
        with self._lock:
            if error.code:
                self._emcy.append((j, error.code, error.register))
                self._last_emcy[j] = (error.code, error.register)
                self._emcy_seen[j] = (error.code, error.register)

    def _on_receive_error(self, exc: Exception) -> None:
        if not self._lost:
            self._lost = f"receive failed: {exc}"

    def _on_error_frame(self, msg) -> None:
        text, severity = error_frame(msg.arbitration_id, msg.data)
        with self._lock:
            self._error_frames += 1
            self._last_error_frame = text
            if severity != "counted":
                self._bus_errors.append((text, severity == "bus-off"))

    # -- the interface ---------------------------------------------------------------------

    def read(self) -> JointSample:
        """Return the drives' state at the previous SYNC; send RPDOs and the next SYNC.

        Raises:
            HardwareError: for a fault noticed since the last call (see the module doc).
        """
        if self._network is None:
            raise HardwareError(f"CAN adapter {self.config.channel} is closed after a fault; "
                                "safety/reset reconnects", device_lost=True)
        now = time.monotonic()
        try:
            self._take_tpdos(now)
            self._check_faults(now)
        finally:
            self._cycle_out()
        return JointSample(stamp=now, position=self._position.copy(), velocity=self._velocity.copy(),
                           effort=self._effort.copy(),
                           at_rest=bool(np.all(np.abs(self._velocity) < REST_VELOCITY)))

    def write(self, command: JointCommand) -> None:
        """Store the setpoint (position [rad], velocity [rad/s], effort [N·m]) for the next SYNC.

        Ignored while disabled.

        Raises:
            ValueError: if the command has the wrong size or holds NaN/inf.
        """
        fields = command.checked_fields(self.joint_names)
        if not self._follow:
            return
        self._command = fields

    def enable(self) -> None:
        """Take the drives from Quick stop active to Operation enabled at the next SYNC."""
        if self._network is None:
            raise HardwareError("CAN bus closed; safety/reset reconnects", device_lost=True)
        if self._reported or not self._started:
            raise HardwareError("motion refused: a fault reported earlier is not cleared (safety/reset clears it)")
        if not self._follow:
            self._command = None
            self._hold_counts[:] = self._counts
            self._follow = True
            self._enable_cycle = self._cycles

    def disable(self) -> None:
        """Quick stop: each drive stops and holds in Quick stop active. Idempotent."""
        self._follow = False
        self._command = None
        if self._network is not None and not self._lost and self._started:
            try:
                self._send_rpdos()  # at once, not only at the next cycle
            except HardwareError:
                pass  # the adapter is gone: the next read() reports it

    @property
    def enabled(self) -> bool:
        """True while ``write()`` setpoints take effect."""
        return self._follow

    def clear_fault(self) -> None:
        """Reconnect if the adapter was lost, reset drive faults (controlword bit 7) and
        start up again, holding.

        Raises:
            HardwareError: if a fault is still present.
        """
        self._follow = False
        self._command = None
        if self._network is None or self._lost:
            self._close_network()
            self._open()
        self._start_up(reset_faults=True)

    def diagnostics(self) -> dict[str, str]:
        """Bus, load and per-drive state values for /diagnostics (no bus access)."""
        load = layout_bus_load(self.layout, len(self.config.joints), self.loop_rate, self.config.bitrate,
                               self.config.heartbeat_time)
        values = {
            "bus": f"{self.config.interface} {self.config.channel} @ {self.config.bitrate} bit/s",
            "pdo_layout": self.layout.name,
            "bus_load_computed": f"{100 * load.load:.1f} %",
            "cycles": str(self._cycles),
            "frames_sent": str(self._frames_sent),
            "receive_gap_max": f"{self._receive_gap_max * 1e3:.1f} ms",
            "error_frames": str(self._error_frames) + (f" (last: {self._last_error_frame})"
                                                       if self._last_error_frame else ""),
            "adapter": f"lost: {self._lost}" if self._lost else ("closed" if self._network is None else "ok"),
        }
        for j, joint in enumerate(self.config.joints):
            prefix = joint.name
            values[f"{prefix}.node"] = str(joint.node_id)
            values[f"{prefix}.state"] = cia402.state(int(self._statusword[j]))
            nmt = self._nmt_state[j]
            values[f"{prefix}.nmt"] = "operational (no heartbeat since start-up yet)" if nmt is None \
                else _NMT_STATES.get(nmt, f"0x{nmt:02X}")
            if j in self._emcy_seen:
                code, register = self._emcy_seen[j]
                values[f"{prefix}.last_emcy"] = f"0x{code:04X} {emcy_text(code)}"
        return values

    def close(self) -> None:
        """Quick stop every drive (they hold), then release the bus. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self.disable()
            if self._network is not None and not self._lost and self._started:
                self._sync()
        except HardwareError:
            pass
        self._close_network()

    # -- the cycle ---------------------------------------------------------------------------

    def _take_tpdos(self, now: float) -> None:
        """Decode the TPDOs received since the last SYNC; count drives that sent none."""
        with self._lock:
            counts = self._tpdo_count.copy()
            data = [list(row) for row in self._tpdo_data]
        fresh = np.all(counts > self._tpdo_seen, axis=1)
        # The newest TPDO answers the last SYNC sent: positions are stamped with the time
        # that SYNC was sent, whatever the delay of this read.
        self._tpdo_seen = counts
        stamp = self._sync_times[-1] if self._sync_times else now
        for j, joint in enumerate(self.config.joints):
            if not fresh[j]:
                if self._sync_times:
                    self._missed[j] += 1
                continue
            self._missed[j] = 0
            values = {}
            for k, pdo in enumerate(self.layout.tpdos):
                needed = sum(m.bits for m in pdo) // 8
                if len(data[j][k]) != needed:
                    # Bytes from the wire that do not match the mapping written: never guess.
                    self._missed[j] += 1
                    self._raise_once(("length", j, k), f"node {joint.node_id}: TPDO{k + 1} has {len(data[j][k])} "
                                                       f"bytes, the mapping written needs {needed}", joint.name)
                    break
                offset = 0
                for m in pdo:
                    values[m.role] = struct.unpack_from("<" + _FORMATS[m.index], data[j][k], offset)[0]
                    offset += m.bits // 8
            if len(values) < sum(len(pdo) for pdo in self.layout.tpdos):
                continue
            self._statusword[j] = values["statusword"]
            self._counts[j] = values["position"]
            self._position[j] = joint.counts_to_position(values["position"])
            if "velocity" in values:
                self._velocity[j] = joint.counts_to_velocity(values["velocity"])
            else:
                # Over a few SYNCs: the jitter between sending a SYNC and the drive sampling
                # at it would make a one-period difference noisy.
                history = self._history[j]
                history.append((stamp, self._position[j]))
                while len(history) > 2 and history[1][0] <= stamp - VELOCITY_WINDOW:
                    history.popleft()
                dt = history[-1][0] - history[0][0]
                if dt > 1e-4:
                    self._velocity[j] = (history[-1][1] - history[0][1]) / dt
            self._effort[j] = joint.permille_to_torque(values["torque"], self._rated[j])

    def _check_faults(self, now: float) -> None:
        cfg = self.config
        if self._network.notifier is not None and self._network.notifier.exception is not None and not self._lost:
            self._lost = f"receive failed: {self._network.notifier.exception}"
        if self._lost:
            self._raise_once(("lost",), f"CAN adapter {cfg.channel} lost: {self._lost}", None, True)
        with self._lock:
            bus_errors = list(self._bus_errors)
            self._bus_errors.clear()
            emcys = list(self._emcy)
            self._emcy.clear()
            heartbeats = self._heartbeat_time.copy()
            nmt = list(self._nmt_state)
        for what, lost in bus_errors:
            if lost:
                self._lost = what
            self._raise_once(("bus", what), f"CAN bus {cfg.channel}: {what}", None, lost)
        for j, code, register in emcys:
            joint = cfg.joints[j]
            self._reported.add(("fault", j))  # the Fault state that follows is this EMCY's, said once
            self._raise_once(("emcy", j, code), f"node {joint.node_id} EMCY 0x{code:04X} {emcy_text(code)} "
                                                f"(error register 0x{register:02X}: {register_text(register)})",
                             joint.name)
        with self._lock:
            quiet = now - self._last_frame
        # The whole bus is gone only if no drive has said anything (TPDO or heartbeat) for a
        # heartbeat timeout: missed SYNC answers alone may be this host falling behind.
        if self._started and np.all(self._missed >= cfg.max_missed_cycles) and quiet > cfg.heartbeat_timeout:
            self._lost = "bus silent"
            self._raise_once(("silent",), f"no drive answered SYNC for {int(self._missed.min())} cycles in a row "
                                          f"and nothing was heard for {quiet * 1e3:.0f} ms on {cfg.channel}: "
                                          "bus-off, bus error, or the CAN cable/power?", None, True)
        # A drive is silent on its own only while another one answers; all silent is the bus.
        bus_alive = bool(np.any(self._missed == 0))
        for j, joint in enumerate(cfg.joints):
            if not self._started:
                break
            if self._missed[j] >= cfg.max_missed_cycles and bus_alive:
                self._raise_once(("tpdo", j), f"node {joint.node_id}: no TPDO for {int(self._missed[j])} SYNC "
                                              "cycles in a row", joint.name)
            silence = now - heartbeats[j]
            if silence > cfg.heartbeat_timeout and bus_alive:
                self._raise_once(("heartbeat", j), f"node {joint.node_id}: heartbeat lost (none for "
                                                   f"{silence * 1e3:.0f} ms, timeout {cfg.heartbeat_timeout * 1e3:.0f} ms)",
                                 joint.name)
            if nmt[j] is not None and nmt[j] != 0x05:
                self._raise_once(("nmt", j), f"node {joint.node_id} left NMT operational: now "
                                             f"{_NMT_STATES.get(nmt[j], hex(nmt[j]))} (rebooted or reset?)", joint.name)
            state = cia402.state(int(self._statusword[j]))
            if state in (cia402.FAULT, cia402.FAULT_REACTION_ACTIVE):
                reason = f"node {joint.node_id} drive in Fault"
                if j in self._last_emcy:
                    code, _ = self._last_emcy[j]
                    reason += f" (EMCY 0x{code:04X} {emcy_text(code)})"
                self._raise_once(("fault", j), reason + "; safety/reset resets it", joint.name)
            elif state not in (cia402.OPERATION_ENABLED, cia402.QUICK_STOP_ACTIVE):
                self._raise_once(("state", j), f"node {joint.node_id} left operation: drive now '{state}'",
                                 joint.name)
            elif self._follow and state != cia402.OPERATION_ENABLED and \
                    self._cycles - self._enable_cycle > ENABLE_CYCLES:
                self._raise_once(("enable", j), f"node {joint.node_id} did not reach Operation enabled within "
                                                f"{ENABLE_CYCLES} cycles (still '{state}')", joint.name)

    def _raise_once(self, key: tuple, reason: str, joint: Optional[str], device_lost: bool = False) -> None:
        if key in self._reported:
            return
        self._reported.add(key)
        if not device_lost:
            self._follow = False
        raise HardwareError(reason, joint, device_lost)

    def _cycle_out(self) -> None:
        """Send every drive's RPDOs, then the SYNC (skipped once the adapter is lost)."""
        if self._network is None or self._lost:
            return
        self._send_rpdos()
        self._sync()

    def _sync(self) -> None:
        self._send(0x80, b"")
        self._sync_times.append(time.monotonic())
        self._cycles += 1

    def _send_rpdos(self, climb: bool = False, reset: Optional[set] = None) -> None:
        """Each drive's RPDOs: the controlword toward holding or following, and the setpoint."""
        command = self._command
        for j, joint in enumerate(self.config.joints):
            state = cia402.state(int(self._statusword[j]))
            word = cia402.controlword(state, self._follow, climb)
            if reset is not None and j in reset:
                word = cia402.FAULT_RESET
            if self._follow and command is not None:
                values = {
                    "controlword": word,
                    "target_position": joint.position_to_counts(command[0][j]),
                    "velocity_offset": joint.velocity_to_counts(command[1][j]),
                    "torque_offset": joint.torque_to_permille(command[2][j], self._rated[j]),
                }
            else:
                target = int(self._hold_counts[j]) if self._follow else int(self._counts[j])
                values = {"controlword": word, "target_position": target, "velocity_offset": 0, "torque_offset": 0}
            for k, pdo in enumerate(self.layout.rpdos):
                payload = b"".join(struct.pack("<" + _FORMATS[m.index], values[m.role]) for m in pdo)
                self._send(_RPDO_COB[k] + joint.node_id, payload)

    # -- start-up ------------------------------------------------------------------------------

    def _start_up(self, reset_faults: bool) -> None:
        """NMT reset, SDO configuration, operational, then every drive holding."""
        cfg = self.config
        self._started = False
        self._follow = False
        self._command = None
        network = self._network
        with self._lock:
            self._booted = [False] * len(cfg.joints)
            self._emcy.clear()
            self._bus_errors.clear()
        self._reported.clear()
        self._last_emcy.clear()
        self._missed[:] = 0
        self._sync_times.clear()
        for history in self._history:
            history.clear()
        try:
            network.nmt.send_command(0x82)  # reset communication: PDOs back to the drive's defaults
        except Exception as exc:
            self._lost = f"send failed: {exc}"
            raise HardwareError(f"CAN adapter {cfg.channel}: cannot send NMT reset: {exc}", device_lost=True) from None
        deadline = time.monotonic() + cfg.startup_timeout
        while not all(self._booted) and time.monotonic() < deadline:
            time.sleep(0.005)
        if not any(self._booted):
            raise HardwareError(
                f"no drive answered on {cfg.interface} {cfg.channel} at {cfg.bitrate} bit/s (no boot-up within "
                f"{cfg.startup_timeout:g} s of NMT reset communication): drive power, CAN cable, termination, "
                "bitrate, or the bus is off", device_lost=True)
        for j, joint in enumerate(cfg.joints):
            if not self._booted[j]:
                raise HardwareError(
                    f"{cfg.path}: joints.{joint.name}.node_id = {joint.node_id}: no drive answered (no boot-up "
                    f"within {cfg.startup_timeout:g} s of NMT reset communication); must be the node id of a "
                    f"powered drive on {cfg.channel} at {cfg.bitrate} bit/s", joint.name)
        for j, joint in enumerate(cfg.joints):
            self._configure(j, joint, self._nodes[j])
        self._send(0x000, bytes((0x01, 0x00)))  # NMT start every node: operational
        now = time.monotonic()
        with self._lock:
            self._heartbeat_time[:] = now
        self._settle(lambda: True, "the first TPDOs", cycles=3)
        faulted = {j for j in range(len(cfg.joints))
                   if cia402.state(int(self._statusword[j])) in (cia402.FAULT, cia402.FAULT_REACTION_ACTIVE)}
        if faulted and reset_faults:
            self._settle(lambda: True, "a fault reset", cycles=2, reset=set())  # bit 7 low first: an edge follows
            self._settle(lambda: True, "a fault reset", cycles=2, reset=faulted)
            still = [j for j in faulted if cia402.state(int(self._statusword[j])) == cia402.FAULT]
            if still:
                j = still[0]
                raise HardwareError(f"node {cfg.joints[j].node_id}: fault still present after fault reset",
                                    cfg.joints[j].name)
            faulted = set()
        self._settle(lambda: all(j in faulted or cia402.state(int(self._statusword[j])) == cia402.QUICK_STOP_ACTIVE
                                 for j in range(len(cfg.joints))), "holding (Quick stop active)", climb=True)
        # Every drive's heartbeat must be heard after start-up, or the first cycle would fail.
        begun = time.monotonic()
        deadline = begun + cfg.heartbeat_timeout
        while time.monotonic() < deadline:
            with self._lock:
                heard = self._heartbeat_time > begun
            if heard.all():
                break
            time.sleep(0.005)
        else:
            j = int(np.flatnonzero(~heard)[0])
            raise HardwareError(f"node {cfg.joints[j].node_id}: no heartbeat within {cfg.heartbeat_timeout * 1e3:.0f} ms "
                                f"of start-up (producer time {cfg.heartbeat_time * 1e3:.0f} ms written to 0x1017)",
                                cfg.joints[j].name)
        self._started = True
        with self._lock:
            self._receive_gap_max = 0.0
            # Heartbeats sent before NMT start said pre-operational; judge only the ones after.
            self._nmt_state = [None] * len(cfg.joints)
            self._heartbeat_time[:] = np.maximum(self._heartbeat_time, time.monotonic())

    def _settle(self, done, what: str, cycles: int = 0, climb: bool = False, reset: Optional[set] = None) -> None:
        """Run SYNC cycles (RPDOs toward holding) until ``done()`` after at least ``cycles``."""
        deadline = time.monotonic() + self.config.startup_timeout
        count = 0
        while True:
            self._send_rpdos(climb=climb, reset=reset)
            self._sync()
            time.sleep(self.period)
            self._take_tpdos(time.monotonic())
            count += 1
            missing = [j for j in range(len(self.config.joints)) if self._missed[j] >= self.config.max_missed_cycles]
            if missing:
                joint = self.config.joints[missing[0]]
                raise HardwareError(f"node {joint.node_id}: no TPDO at start-up ({what})", joint.name)
            if count >= cycles and done():
                return
            if time.monotonic() > deadline:
                states = ", ".join(f"{j.name} '{cia402.state(int(s))}'"
                                   for j, s in zip(self.config.joints, self._statusword))
                raise HardwareError(f"drives did not reach {what} within {self.config.startup_timeout:g} s: {states}")

    def _configure(self, j: int, joint, node) -> None:
        """Check the device type and write the drive's configuration over SDO."""
        canopen = _canopen()
        cfg = self.config

        def sdo(action, what):
            try:
                return action()
            except canopen.SdoAbortedError as exc:
                raise HardwareError(f"node {joint.node_id}: SDO {what} refused: {exc}", joint.name) from None
            except canopen.SdoCommunicationError as exc:
                raise HardwareError(f"node {joint.node_id}: SDO {what}: {exc}", joint.name) from None
            except Exception as exc:  # the adapter failed underneath the SDO client
                raise HardwareError(f"node {joint.node_id}: SDO {what}: {exc}", joint.name, True) from None

        def write(index, sub, fmt, value):
            sdo(lambda: node.sdo.download(index, sub, struct.pack("<" + fmt, value)),
                f"write of 0x{index:04X}:{sub:02X} = {value}")

        def read(index, sub, fmt):
            data = sdo(lambda: node.sdo.upload(index, sub), f"read of 0x{index:04X}:{sub:02X}")
            return struct.unpack("<" + fmt, bytes(data[:struct.calcsize(fmt)]).ljust(struct.calcsize(fmt), b"\0"))[0]

        device_type = read(0x1000, 0, "I")
        if not cia402.is_device_type_402(device_type):
            raise HardwareError(
                f"{cfg.path}: joints.{joint.name}.node_id = {joint.node_id}: device type (0x1000) is "
                f"0x{device_type:08X}, not a CiA 402 drive (low 16 bits must be 0x0192 = 402)", joint.name)
        write(0x1006, 0, "I", round(self.period * 1e6))  # SYNC period [us]: the drive's interpolation
        write(0x1017, 0, "H", round(cfg.heartbeat_time * 1000))
        write(0x605A, 0, "h", cfg.quick_stop_option_code)
        write(0x6060, 0, "b", cia402.MODE_CSP)
        if joint.torque_constant is not None:
            rated_current = read(0x6075, 0, "I") * 1e-3  # [mA] -> [A]
            self._rated[j] = joint.torque_constant * rated_current
        else:
            drive_rated = read(0x6076, 0, "I") * 1e-3  # [mN·m] -> [N·m]
            if joint.rated_torque is not None and abs(drive_rated - joint.rated_torque) > 1e-3:
                raise HardwareError(
                    f"{cfg.path}: joints.{joint.name}.rated_torque = {joint.rated_torque:g} N·m, but the drive's "
                    f"0x6076 says {drive_rated:g} N·m: torque objects would be scaled wrongly; fix one of them",
                    joint.name)
            self._rated[j] = drive_rated
        if not self._rated[j] > 0:
            raise HardwareError(f"node {joint.node_id}: rated torque is 0: set joints.{joint.name}.torque_constant "
                                "or the drive's 0x6076", joint.name)
        # Every PDO invalid first: nothing of a vendor's default mapping stays active.
        for k in range(4):
            write(0x1400 + k, 1, "I", _COB_INVALID | (_RPDO_COB[k] + joint.node_id))
            write(0x1800 + k, 1, "I", _COB_INVALID | (_TPDO_COB[k] + joint.node_id))
        for maps, pdos, cobs, receive in ((node.rpdo, self.layout.rpdos, _RPDO_COB, False),
                                          (node.tpdo, self.layout.tpdos, _TPDO_COB, True)):
            for k, pdo in enumerate(pdos):
                pdo_map = maps[k + 1]
                pdo_map.clear()
                for m in pdo:
                    pdo_map.add_variable(m.index, m.subindex)
                pdo_map.cob_id = cobs[k] + joint.node_id
                pdo_map.trans_type = 1  # synchronous, every SYNC
                pdo_map.enabled = True
                sdo(pdo_map.save, f"mapping of {'T' if receive else 'R'}PDO{k + 1}")
                if receive:
                    if not getattr(pdo_map, "_rehab_callback", False):
                        pdo_map.add_callback(lambda m, j=j, k=k: self._on_tpdo(j, k, m))
                        pdo_map._rehab_callback = True
