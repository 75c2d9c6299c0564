"""ft_sensor_driver: an ATI Net F/T force/torque sensor over RDT (UDP), published as the cuff wrench.

Publishes ``ft_sensor/wrench`` (geometry_msgs/WrenchStamped, frame ``ft_sensor_link``:
force [N] and torque [N·m] the patient applies to the cuff) once per healthy RDT record,
i.e. at the sensor's RDT output rate. Serves ``ft_sensor/tare`` (std_srvs/Trigger: the
average over ``tare_window`` becomes the new zero). Subscribes ``joint_states`` to remove
the cuff's own weight (gravity compensation) with the arm's forward kinematics.

Fail-safe: a saturated record, a record whose status code is not 0, or a stream that
stopped are never published. The safety supervisor treats a stale ``ft_sensor/wrench``
as missing state and stops and holds the arm. ``/diagnostics`` says which it is.

The datagrams are received, converted and published on a thread of their own, never on
the executor. Each record is handed to a publisher thread (the GIL is released during the
DDS write, :mod:`rehab_robot.nodes.control_domain`), so every healthy record is published
as it arrives, on the control chain's domain and mirrored on the public one; if the thread fell
behind (a stall), the queued records are all processed (sequence, tare) but only the newest
``PUBLISH_BACKLOG`` are published, so that a stall does not leave a queue of old wrenches.
"""

from __future__ import annotations

import math
import select
import socket
import sys
import threading
import time
import traceback
from typing import Optional

import numpy as np
from geometry_msgs.msg import WrenchStamped
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger

from rehab_robot.errors import ConfigError
from rehab_robot.model import ArmModel
from rehab_robot.nodes.common import (
    ERROR, OK, WARN, DiagnosticsPublisher, GracefulNode, ParamSpec, declare_parameters, non_empty, positive, run,
)
from rehab_robot.nodes.control_domain import CONTROL_DOMAIN_PARAMETER, ControlDomain
from rehab_robot.nodes.conversions import joint_arrays
from rehab_robot.sensors.netft import (
    CMD_START_REALTIME, CMD_STOP, RDT_PORT, Calibration, NetFTStream, SaturationCheck, encode_request,
)

FRAME = "ft_sensor_link"

PARAMETERS = (
    ParamSpec("sensor_address", "192.168.1.1", "IP address (or host name) of the Net F/T", "a non-empty address",
              non_empty),
    ParamSpec("port", RDT_PORT, "RDT UDP port of the sensor", "1 to 65535", lambda v: 1 <= v <= 65535),
    ParamSpec("counts_per_force", 1000000.0, "counts per N, from the sensor's calibration", "a number > 0",
              positive),
    ParamSpec("counts_per_torque", 1000000.0, "counts per N·m, from the sensor's calibration", "a number > 0",
              positive),
    ParamSpec("saturation_counts", 2000000000,
              "an axis with |counts| at or above this is saturated; set it to the rated range x counts per unit "
              "(0: off)", "0 to 2147483647", lambda v: 0 <= v <= 2**31 - 1),
    ParamSpec("saturation_status_mask", 0, "status bits that mean saturation on this sensor (other set bits "
              "are status errors; both stop publishing)", "0 to 4294967295", lambda v: 0 <= v < 2**32),
    ParamSpec("cuff_mass", 0.3, "mass distal of the sensor's measuring surface (cuff, strap) [kg]; 0: no "
              "gravity compensation", "0 to 10 kg", lambda v: math.isfinite(v) and 0.0 <= v <= 10.0),
    ParamSpec("cuff_com", [0.0, 0.0, -0.03], "centre of that mass in ft_sensor_link [m]",
              "3 finite numbers within 1 m", lambda v: len(v) == 3 and all(math.isfinite(x) and abs(x) <= 1 for x in v)),
    ParamSpec("robot_description", "", "URDF file of the arm, for gravity compensation (empty: the shipped arm)"),
    ParamSpec("rate", 1000.0, "RDT output rate set on the sensor [Hz]; the expected wrench rate",
              "10 to 7000 Hz", lambda v: 10.0 <= v <= 7000.0),
    ParamSpec("stale_timeout", 0.1, "age of the newest record after which the stream counts as stopped [s]",
              "0.005 to 1 s", lambda v: 0.005 <= v <= 1.0),
    ParamSpec("tare_window", 0.1, "averaging window of ft_sensor/tare [s]", "0.001 to 2 s",
              lambda v: 0.001 <= v <= 2.0),
    CONTROL_DOMAIN_PARAMETER,
)

#: How often [s] the start request is repeated while no records arrive (sensor rebooted, cable back).
RESTART_PERIOD = 1.0
#: Period [s] of the executor-side check that publishes diagnostics on a change of state.
HOUSEKEEPING_PERIOD = 0.02
#: Most records published from one batch drained from the socket (the newest ones).
PUBLISH_BACKLOG = 5
#: Measured rate below this fraction of ``rate`` is a warning.
RATE_WARN_FRACTION = 0.8


class FtSensorNode(GracefulNode):
    """The Net F/T driver node (see module docstring)."""

    node_name = "ft_sensor_driver"
    # The wrench is a safety signal (the supervisor stops on a stale one): stream it at
    # real-time priority, just below the control loops' (see docs/architecture.md).
    realtime_priority = 47
    niceness = -10

    def __init__(self) -> None:
        super().__init__(self.node_name)
        p = declare_parameters(self, PARAMETERS)
        self.p = p
        self.stream = NetFTStream(
            Calibration(p["counts_per_force"], p["counts_per_torque"]),
            SaturationCheck(p["saturation_counts"], p["saturation_status_mask"]),
            p["stale_timeout"], p["cuff_mass"], list(p["cuff_com"]),
        )
        self.model = ArmModel.from_urdf(p["robot_description"] or None)
        self.tare_samples = max(1, round(p["tare_window"] * p["rate"]))
        try:
            address = socket.getaddrinfo(p["sensor_address"], p["port"], socket.AF_INET, socket.SOCK_DGRAM)[0][4]
        except socket.gaierror as exc:
            raise ConfigError(f"parameter 'sensor_address' = {p['sensor_address']!r}: cannot resolve it ({exc})") from None
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            # connect(): the kernel then delivers only the sensor's datagrams, and picks our address.
            self.sock.connect(address)
        except OSError as exc:
            self.sock.close()
            raise ConfigError(f"parameter 'sensor_address' = {p['sensor_address']!r}: no route to it ({exc}); "
                              "check the host's network interface and address") from None
        self.sock.setblocking(False)
        self.address = f"{address[0]}:{address[1]}"

        self._rotation: Optional[np.ndarray] = None
        self._rotation_time: Optional[float] = None
        self.rejected_joint_states = 0
        self.socket_error = ""
        self.start_requests = 0
        self._state_sent: Optional[str] = None
        self._rate_mark = (time.monotonic(), 0)
        self.measured_rate = 0.0
        self._lost_reported = 0
        self._bad_reported = 0

        self.control_domain = ControlDomain(self, p["control_domain"])
        self.wrench_out = self.control_domain.publisher(WrenchStamped, "ft_sensor/wrench", "pub_wrench",
                                                        keep=PUBLISH_BACKLOG)
        self.published = 0
        self.superseded = 0
        self.control_domain.subscribe(JointState, "joint_states", self.on_joint_states)
        self.create_service(Trigger, "ft_sensor/tare", self.on_tare)
        self.diagnostics = DiagnosticsPublisher(self, self.report)
        self.create_timer(HOUSEKEEPING_PERIOD, self.housekeeping)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive_guarded, name="netft_receive", daemon=True)
        self._thread.start()
        self.get_logger().info(
            f"Net F/T at {self.address}: RDT {p['rate']:g} Hz expected, {p['counts_per_force']:g} counts/N, "
            f"{p['counts_per_torque']:g} counts/(N·m), cuff {p['cuff_mass']:g} kg at {list(p['cuff_com'])} m; "
            "publishing ft_sensor/wrench only while the stream is healthy"
        )

    # --- receive thread ---------------------------------------------------------------

    def _receive_guarded(self) -> None:
        try:
            self._receive()
        except Exception:  # noqa: BLE001 - a bug: the node exits (run() checks fatal_error)
            self.fatal_error = traceback.format_exc()

    def _request(self, command: int) -> None:
        try:
            self.sock.send(encode_request(command))
        except OSError as exc:  # e.g. no route, or an ICMP error left from the last send
            self.socket_error = f"send: {exc}"

    def _receive(self) -> None:
        last_start = -math.inf
        while not self._stop.is_set():
            now = time.monotonic()
            if self.stream.health(now).state == "stopped" and now - last_start >= RESTART_PERIOD:
                self.stream.restart()
                self._request(CMD_START_REALTIME)
                self.start_requests += 1
                last_start = now
            readable, _, _ = select.select([self.sock], [], [], 0.02)
            if not readable:
                continue
            batch = []
            while True:
                try:
                    data = self.sock.recv(2048)
                except BlockingIOError:
                    break
                except OSError as exc:  # ICMP port unreachable: nothing listens at the sensor's address
                    self.socket_error = f"receive: {exc}"
                    break
                wrench = self.stream.on_datagram(data, time.monotonic(), self._rotation)
                if wrench is not None:
                    batch.append(wrench)
            # A saturated or faulty record after the newest good one withholds the batch too.
            if not batch or not self.stream.health(time.monotonic()).publishing:
                continue
            # After a stall, records older than the newest PUBLISH_BACKLOG are not worth sending.
            self.superseded += max(0, len(batch) - PUBLISH_BACKLOG)
            for wrench in batch[-PUBLISH_BACKLOG:]:
                self.wrench_out.offer(self._message(wrench))
                self.published += 1

    def _message(self, wrench: np.ndarray) -> WrenchStamped:
        msg = WrenchStamped()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = FRAME
        f = msg.wrench.force
        t = msg.wrench.torque
        f.x, f.y, f.z, t.x, t.y, t.z = (float(x) for x in wrench)
        return msg

    # --- executor ---------------------------------------------------------------------

    def on_joint_states(self, msg: JointState) -> None:
        """Keep the orientation of ft_sensor_link in base_link for gravity compensation."""
        try:
            (position,) = joint_arrays(msg, self.model.joint_names, ("position",))
        except ValueError:
            self.rejected_joint_states += 1
            return
        if not np.all(np.isfinite(position)):
            self.rejected_joint_states += 1
            return
        self._rotation = self.model.forward_kinematics(position, FRAME)[:3, :3]
        self._rotation_time = time.monotonic()

    def on_tare(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        """Average the next ``tare_window`` of healthy records into the bias (blocks for that window)."""
        health = self.stream.health(time.monotonic())
        if not health.publishing:
            response.success, response.message = False, f"cannot tare: {health.message}"
            return response
        self.stream.start_tare(self.tare_samples)
        deadline = time.monotonic() + 2 * self.p["tare_window"] + 0.5
        result = None
        while result is None and time.monotonic() < deadline:
            time.sleep(0.002)
            result = self.stream.tare_result()
        if result is None:
            self.stream.cancel_tare()
            response.success = False
            response.message = (f"tare failed: fewer than {self.tare_samples} healthy records arrived "
                                f"({self.stream.health(time.monotonic()).message}); bias unchanged")
        else:
            response.success, response.message = True, result
            self.get_logger().info(f"tare: {result}")
        return response

    def housekeeping(self) -> None:
        """Measure the rate; publish diagnostics and log at once when the stream's state changes."""
        now = time.monotonic()
        if self._thread is not None and not self._thread.is_alive() and self.fatal_error is None and \
                not self._stop.is_set():
            self.fatal_error = "the receive thread ended"
        t0, n0 = self._rate_mark
        if now - t0 >= 1.0:
            records = self.stream.stats()["records"]
            self.measured_rate = (records - n0) / (now - t0)
            self._rate_mark = (now, records)
        health = self.stream.health(now)
        if health.state != self._state_sent:
            if health.state == "ok":
                self.get_logger().info(f"Net F/T {self.address}: {health.message}; publishing ft_sensor/wrench")
            elif self._state_sent is not None:
                self.get_logger().error(f"Net F/T {self.address}: {health.message}; ft_sensor/wrench withheld")
            self._state_sent = health.state
            self.diagnostics.publish()

    def report(self):
        """Diagnostics: stream state, rate, packet loss, status errors, saturation, tare and gravity."""
        now = time.monotonic()
        health = self.stream.health(now)
        stats = self.stream.stats()
        lost_new = stats["lost_packets"] - self._lost_reported
        bad_new = stats["bad_packets"] - self._bad_reported
        self._lost_reported, self._bad_reported = stats["lost_packets"], stats["bad_packets"]
        orientation_age = "unknown" if self._rotation_time is None else f"{now - self._rotation_time:.3f}"
        values = {
            "state": health.state,
            "sensor": self.address,
            "rate_hz": f"{self.measured_rate:.1f}",
            "expected_rate_hz": f"{self.p['rate']:g}",
            **stats,
            "lost_packets_since_last_report": lost_new,
            "wrenches_published": self.published,
            "wrenches_superseded": self.superseded,
            "last_publish_error": self.wrench_out.error or "",
            "start_requests": self.start_requests,
            "last_socket_error": self.socket_error,
            "orientation_age_s": orientation_age,
            "rejected_joint_states": self.rejected_joint_states,
        }
        if not health.publishing:
            return ERROR, f"{health.message}; ft_sensor/wrench withheld", values
        problems = []
        if lost_new:
            problems.append(f"{lost_new} packets lost")
        if bad_new:
            problems.append(f"{bad_new} bad packets ({stats['last_bad_packet']})")
        if self.measured_rate and self.measured_rate < RATE_WARN_FRACTION * self.p["rate"]:
            problems.append(f"rate {self.measured_rate:.0f} Hz, expected {self.p['rate']:g} Hz")
        if problems:
            return WARN, "streaming; " + "; ".join(problems), values
        return OK, "streaming", values

    def on_shutdown_request(self, executor) -> None:
        """Stop the receive thread, ask the sensor to stop streaming, publish what is pending."""
        self._stop.set()
        self._thread.join(timeout=1.0)
        self._request(CMD_STOP)
        self.sock.close()
        self.wrench_out.stop()


def main(args=None) -> int:
    """Entry point of ``ft_sensor_driver``."""
    return run(FtSensorNode, args)


if __name__ == "__main__":
    sys.exit(main())
