"""hardware_driver: owns a hardware backend, publishes the arm's state, applies commands.

Subscribes ``joint_commands`` (sensor_msgs/JointState: position [rad], velocity [rad/s],
effort = feed-forward torque [N·m]), ``safety/heartbeat`` (std_msgs/Bool) and
``safety/status`` (diagnostic_msgs/DiagnosticStatus, for the operator's resets).
Publishes ``joint_states`` (sensor_msgs/JointState) and ``ft_sensor/wrench``
(geometry_msgs/WrenchStamped) every loop cycle, and ``hardware/status``
(diagnostic_msgs/DiagnosticStatus) on every change of the driver's state. A backend with a
virtual patient (``set_patient_target``, the sim) is shown the exercise's target from
``exercise/target`` (sensor_msgs/JointState, joint positions [rad]).

The control cycle (:class:`~rehab_robot.hardware.driver_loop.DriverLoop`) runs on a
thread of its own at ``loop_rate``; subscriptions only fill its latest-value slots and
the state is published by a separate thread that never holds the GIL during the DDS
write (see docs/architecture.md, "The control loop").
"""

from __future__ import annotations

import collections
import sys
import time
from typing import Optional

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from geometry_msgs.msg import WrenchStamped
from sensor_msgs.msg import JointState
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Bool

from rehab_robot.errors import ConfigError, HardwareError
from rehab_robot.hardware.driver_loop import DriverLoop, DriverState, default_budget
from rehab_robot.hardware.interface import JointCommand, JointSample
from rehab_robot.hardware.registry import backend_class, backend_options
from rehab_robot.nodes.common import (
    ERROR, OK, WARN, DiagnosticsPublisher, GracefulNode, ParamSpec, declare_parameters, non_empty, run,
)
from rehab_robot.nodes.control_domain import CONTROL_DOMAIN_PARAMETER, ControlDomain
from rehab_robot.nodes.conversions import joint_arrays, joint_state_msg
from rehab_robot.periodic import PeriodicLoop
from rehab_robot.safety.gate import MotionGate

PARAMETERS = (
    ParamSpec("hardware", "sim", "hardware backend name", "a registered backend (rehab-robot backends)", non_empty),
    ParamSpec("hardware_options", "{}", "YAML mapping of keyword options for the backend", "a YAML mapping"),
    ParamSpec("robot_description", "", "URDF file of the arm, passed to backends that take one"),
    ParamSpec("loop_rate", 500.0, "control loop and joint_states rate [Hz]", "50 to 2000 Hz",
              lambda v: 50.0 <= v <= 2000.0),
    ParamSpec("heartbeat_timeout", 0.05, "age after which the safety heartbeat counts as lost [s]",
              "0.005 to 0.2 s", lambda v: 0.005 <= v <= 0.2),
    ParamSpec("command_timeout", 0.1, "age after which joint commands count as lost [s]",
              "0.005 to 0.5 s", lambda v: 0.005 <= v <= 0.5),
    ParamSpec("resume_tolerance", 0.05, "largest command/position gap accepted when leaving hold [rad]",
              "0.001 to 0.5 rad", lambda v: 0.001 <= v <= 0.5),
    ParamSpec("following_tolerance", 0.1, "largest command/position gap while following [rad]; a larger one "
              "(a setpoint that jumps away from the arm) makes the drives hold", "0.01 to 0.5 rad",
              lambda v: 0.01 <= v <= 0.5),
    ParamSpec("publish_wrench", True, "publish the backend's F/T reading on ft_sensor/wrench (false when "
              "a separate F/T sensor driver publishes it)"),
    CONTROL_DOMAIN_PARAMETER,
)

#: QoS of ``exercise/target``: reliable, volatile, the latest target only (contract B).
EXERCISE_TARGET_QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE,
                                 history=HistoryPolicy.KEEP_LAST, depth=1)
#: How long [s] the driver waits on shutdown for the arm to come to rest.
SHUTDOWN_REST_TIMEOUT = 1.0
#: Period [s] of the executor-side housekeeping: log lines from the loop, status changes.
HOUSEKEEPING_PERIOD = 0.02
#: Period [s] at which hardware/status is repeated when nothing changes.
STATUS_REPEAT = 0.5


class HardwareDriverNode(GracefulNode):
    """The hardware driver node (see module docstring)."""

    node_name = "hardware_driver"
    realtime_priority = 50
    niceness = -10

    def __init__(self) -> None:
        super().__init__(self.node_name)
        p = declare_parameters(self, PARAMETERS)
        cls = backend_class(p["hardware"])
        options = backend_options(p["hardware_options"], cls, p["robot_description"], p["loop_rate"])
        try:
            self.hardware = cls(**options)
        except TypeError as exc:
            raise ConfigError(f"hardware backend {p['hardware']!r}: bad hardware_options: {exc}") from None
        try:
            self._set_up(p)
        except BaseException:
            self.hardware.close()  # a backend is always closed, also when start-up fails
            raise

    def _set_up(self, p: dict) -> None:
        self.backend_name = p["hardware"]
        self.joint_names = tuple(self.hardware.joint_names)
        try:
            budget = default_budget(p["loop_rate"], self.hardware.cycle_budget)
        except ValueError as exc:
            raise ConfigError(f"hardware backend {p['hardware']!r}: {exc}") from None
        self.gate = MotionGate(p["heartbeat_timeout"], p["command_timeout"], p["resume_tolerance"],
                               following_tolerance=p["following_tolerance"], joint_names=self.hardware.joint_names)
        self._log_queue: collections.deque = collections.deque(maxlen=100)
        self.rejected_commands = 0
        self._reset_count: Optional[int] = None
        self._backend_values: dict[str, str] = {}
        self._status_sent: Optional[tuple] = None
        self._status_time = 0.0
        self._publish_wrench = p["publish_wrench"]
        self.control_domain = ControlDomain(self, p["control_domain"])
        control = self.control_domain
        self.state_out = control.publisher(JointState, "joint_states", "pub_states")
        self.wrench_out = control.publisher(WrenchStamped, "ft_sensor/wrench", "pub_wrench")
        # Every status change counts (a stop, then a fault): kept in order, never skipped.
        self.status_out = control.publisher(DiagnosticStatus, "hardware/status", "pub_hw_status", keep=10)
        control.subscribe(JointState, "joint_commands", self.on_command)
        control.subscribe(Bool, "safety/heartbeat", self.on_heartbeat)
        control.subscribe(DiagnosticStatus, "safety/status", self.on_safety_status)
        self.bad_targets = 0
        if callable(getattr(self.hardware, "set_patient_target", None)):
            self.create_subscription(JointState, "exercise/target", self.on_exercise_target, EXERCISE_TARGET_QOS)
        self.driver = DriverLoop(self.hardware, self.gate, budget, self.publish_sample,
                                 lambda level, text: self._log_queue.append((level, text)))
        self.loop = PeriodicLoop(1.0 / p["loop_rate"], self.cycle, "driver_loop")
        self.create_timer(HOUSEKEEPING_PERIOD, self.housekeeping)
        self.diagnostics = DiagnosticsPublisher(self, self.report)
        self.get_logger().info(
            f"backend {self.backend_name!r} ready, joints {', '.join(self.joint_names)}, "
            f"loop {p['loop_rate']:.0f} Hz on its own thread, read()+write() budget {budget * 1e3:.2f} ms, "
            f"{control.describe()}; "
            "holding until the safety supervisor permits motion"
        )
        self.loop.start()

    # --- inputs (executor thread): latest-value slots only ----------------------------

    def on_heartbeat(self, msg: Bool) -> None:
        """Record the safety supervisor's verdict."""
        self.gate.on_heartbeat(time.monotonic(), msg.data)

    def on_command(self, msg: JointState) -> None:
        """Record a drive setpoint; refuse malformed ones (they never reach the drives)."""
        try:
            position, velocity, effort = joint_arrays(msg, self.joint_names, ("position", "velocity", "effort"))
            self.gate.on_command(time.monotonic(), JointCommand(position, velocity, effort))
        except ValueError as exc:
            self.rejected_commands += 1
            self._log_queue.append(("error", f"joint command refused: {exc}"))

    def on_exercise_target(self, msg: JointState) -> None:
        """Show the backend's virtual patient the exercise target, stamped on the backend's clock (now)."""
        sample = self.driver.last_sample
        if sample is None:
            return
        try:
            (position,) = joint_arrays(msg, self.joint_names, ("position",))
            self.hardware.set_patient_target(position, sample.stamp)
        except ValueError as exc:
            self.bad_targets += 1
            if self.bad_targets == 1:
                self._log_queue.append(("warning", f"exercise/target refused: {exc}"))

    def on_safety_status(self, msg: DiagnosticStatus) -> None:
        """An operator's ``safety/reset`` request (a new request count) asks the backend to clear its fault."""
        values = {kv.key: kv.value for kv in msg.values}
        try:
            count = int(values.get("reset_requests", ""))
        except ValueError:
            return
        if self._reset_count is not None and count > self._reset_count:
            self.driver.request_fault_clear()
        self._reset_count = count

    # --- the loop thread --------------------------------------------------------------

    def cycle(self, now: float) -> None:
        """One control cycle (loop thread), plus the backend's own diagnostics once a second."""
        self.driver.cycle(now)
        if self.loop.stats.cycles % max(1, round(1.0 / self.loop.period)) == 1:
            try:
                self._backend_values = {str(k): str(v) for k, v in self.hardware.diagnostics().items()}
            except Exception as exc:  # noqa: BLE001 - a backend's diagnostics never stop the loop
                self._backend_values = {"diagnostics_error": str(exc)}

    def publish_sample(self, sample: JointSample) -> None:
        """Hand ``joint_states`` and ``ft_sensor/wrench`` for ``sample`` to their publisher threads."""
        stamp = self.get_clock().now().to_msg()
        msg = joint_state_msg(JointState(), self.joint_names, sample.position, sample.velocity, sample.effort)
        msg.header.stamp = stamp
        self.state_out.offer(msg)
        if self._publish_wrench:
            w = WrenchStamped()
            w.header.stamp = stamp
            w.header.frame_id = "ft_sensor_link"
            f = sample.wrench
            w.wrench.force.x, w.wrench.force.y, w.wrench.force.z = float(f[0]), float(f[1]), float(f[2])
            w.wrench.torque.x, w.wrench.torque.y, w.wrench.torque.z = float(f[3]), float(f[4]), float(f[5])
            self.wrench_out.offer(w)

    # --- housekeeping (executor thread) ---------------------------------------------

    def housekeeping(self) -> None:
        """Log what the loop reported and publish ``hardware/status`` on change."""
        while self._log_queue:
            level, text = self._log_queue.popleft()
            # rclpy ties a severity to each logging call site: one call per severity.
            if level == "error":
                self.get_logger().error(text)
            elif level == "warning":
                self.get_logger().warning(text)
            else:
                self.get_logger().info(text)
        if self.loop.error is not None and self.fatal_error is None:
            self.fatal_error = self.loop.error
        status = self.driver.status()
        key = (status.state, status.reason, status.fault_id, status.quick_stops)
        now = time.monotonic()
        if key != self._status_sent or now - self._status_time >= STATUS_REPEAT:
            self._status_sent, self._status_time = key, now
            self.status_out.offer(self.hardware_status(status))

    def hardware_status(self, status) -> DiagnosticStatus:
        """Return the ``hardware/status`` message for a driver status snapshot."""
        level = {DriverState.FAULT: ERROR, DriverState.FOLLOWING: OK}.get(status.state, WARN)
        values = {
            "state": status.state.value,
            "fault_id": status.fault_id,
            "fault_joint": status.fault_joint,
            "device_lost": status.device_lost,
            "quick_stops": status.quick_stops,
            "backend": self.backend_name,
        }
        return DiagnosticStatus(
            level=level, name="rehab_robot: hardware", message=status.reason or status.state.value,
            hardware_id="rehab_arm", values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
        )

    def report(self):
        """Diagnostics: drive state, faults, loop timing and the backend's own values."""
        status = self.driver.status()
        timing = self.loop.stats.timing()
        values = {
            "backend": self.backend_name,
            "state": status.state.value,
            "hold_reason": status.reason,
            "fault_id": status.fault_id,
            "quick_stops": status.quick_stops,
            "over_budget_cycles": status.over_budget_cycles,
            "read_write_time_ms": f"{status.last_cycle_time * 1e3:.3f}",
            "budget_ms": f"{self.driver.budget * 1e3:.3f}",
            "rejected_commands": self.rejected_commands,
            "states_published": self.state_out.published,
            "states_skipped": self.state_out.skipped,
            "states_longest_write_ms": f"{self.state_out.longest_write * 1e3:.1f}",
            "states_public_longest_write_ms": f"{self.state_out.public_longest_write * 1e3:.1f}",
            "control_domain": "public" if self.control_domain.domain_id is None else self.control_domain.domain_id,
            "wrench_longest_write_ms": f"{self.wrench_out.longest_write * 1e3:.1f}",
            "gil_free_publishing": self.state_out.gil_free,
            "at_rest": self.driver.last_sample.at_rest if self.driver.last_sample else "unknown",
            **timing.as_values(),
            **{f"backend.{k}": v for k, v in self._backend_values.items()},
        }
        if status.state is DriverState.FAULT:
            return ERROR, status.reason, values
        if status.state is DriverState.FOLLOWING:
            return OK, "following commands", values
        return WARN if status.state is DriverState.HOLDING else OK, f"{status.state.value}: {status.reason}", values

    def on_shutdown_request(self, executor) -> None:
        """Bring the arm to rest and hold it, still publishing, then always close the hardware."""
        self.loop.stop()
        try:
            self._come_to_rest()
        finally:
            self.hardware.close()
            self.state_out.stop()
            self.wrench_out.stop()
            self.housekeeping()
            # Said last, so the supervisor knows the state stops on purpose (no warning).
            self.status_out.offer(DiagnosticStatus(
                level=OK, name="rehab_robot: hardware", message="driver shut down; hardware closed",
                hardware_id="rehab_arm", values=[KeyValue(key="state", value=DriverState.SHUT_DOWN.value),
                                                 KeyValue(key="backend", value=self.backend_name)]))
            self.status_out.stop()

    def _come_to_rest(self) -> None:
        try:
            self.hardware.disable()
            deadline = time.monotonic() + SHUTDOWN_REST_TIMEOUT
            at_rest = False
            while time.monotonic() < deadline and not at_rest:
                sample = self.hardware.read()
                self.publish_sample(sample)
                at_rest = sample.at_rest
                time.sleep(self.loop.period)
        except HardwareError as exc:
            self.get_logger().error(f"hardware fault while stopping: {exc}; closing the hardware")
            return
        self.get_logger().info(
            "arm at rest and holding; closing the hardware" if at_rest
            else f"arm not at rest after {SHUTDOWN_REST_TIMEOUT:g} s; closing the hardware (drives hold)"
        )


def main(args=None) -> int:
    """Entry point of ``hardware_driver``."""
    return run(HardwareDriverNode, args)


if __name__ == "__main__":
    sys.exit(main())
