"""motion_controller: trajectory tracking and the interaction control modes.

Subscribes ``joint_trajectory`` (trajectory_msgs/JointTrajectory; it may name a subset
of the joints, the others hold), ``joint_states``, ``ft_sensor/wrench`` and
``safety/heartbeat``. Publishes ``joint_commands`` (sensor_msgs/JointState setpoints) and
``controller/events`` (diagnostic_msgs/DiagnosticStatus: spasm, soft_wall_limit, mode).

The control mode and its gains are ROS parameters (``mode``, ``admittance.*``,
``assist.*`` ..., docs/control-modes.md) that may be set while the node runs, with one
``set_parameters_atomically`` call; a bad value, or a ``mode`` change while the arm moves,
is refused with a reason. The core is :class:`~rehab_robot.control.interaction.InteractionController`.

While the heartbeat does not permit motion the controller drops its trajectory and
follows the measured position, so that motion resumes without a jump. The interaction
loop runs on a thread of its own (:class:`~rehab_robot.periodic.PeriodicLoop`) at
``interaction_rate``; callbacks only hand it the latest state, wrench, heartbeat,
trajectory and settings. In ``position`` mode it computes and publishes at ``rate``.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Optional

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from geometry_msgs.msg import WrenchStamped
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory

from rehab_robot.control.interaction import InteractionController
from rehab_robot.control.laws import CommandLimits, feedforward_command, limit_command
from rehab_robot.control.modes import InteractionState, Reference
from rehab_robot.control.settings import InteractionSettings
from rehab_robot.control.trajectory import SampledTrajectory
from rehab_robot.errors import ConfigError
from rehab_robot.model import ArmModel
from rehab_robot.nodes.common import (
    ERROR, OK, WARN, DiagnosticsPublisher, GracefulNode, ParamSpec, declare_parameters, run, subscriber_qos,
    watch_heartbeat_and_drives,
)
from rehab_robot.nodes.control_domain import CONTROL_DOMAIN_PARAMETER, ControlDomain
from rehab_robot.nodes.conversions import joint_arrays, joint_state_msg, sampled_trajectory
from rehab_robot.nodes.nonblocking import LatestValuePublisher
from rehab_robot.periodic import PeriodicLoop
from rehab_robot.safety.gate import HeartbeatMonitor

#: Age [s] up to which a measured position counts as where the arm is (a few driver cycles).
FRESH_MEASUREMENT = 0.02

PARAMETERS = (
    ParamSpec("robot_description", "", "URDF file of the arm (empty: the shipped arm)"),
    ParamSpec("rate", 100.0, "command rate in position mode [Hz]", "20 to 1000 Hz", lambda v: 20.0 <= v <= 1000.0),
    ParamSpec("interaction_rate", 500.0, "rate of the interaction loop [Hz] in every mode but position (which "
              "runs at rate)", "100 to 1000 Hz",
              lambda v: 100.0 <= v <= 1000.0),
    ParamSpec("heartbeat_timeout", 0.25, "age after which the safety heartbeat counts as lost [s]; the "
              "driver stops at its own 50 ms and reports it on hardware/status, which also drops the plan",
              "0.005 to 1 s", lambda v: 0.005 <= v <= 1.0),
    ParamSpec("max_trajectory_age", 2.0, "oldest trajectory start stamp accepted [s]; a trajectory that "
              "arrives late, but within this age, starts when it arrives", "0.01 to 5 s",
              lambda v: 0.01 <= v <= 5.0),
    ParamSpec("start_tolerance", 0.05, "largest gap between a trajectory's first point and the setpoint [rad]",
              "0.001 to 0.5 rad", lambda v: 0.001 <= v <= 0.5),
    ParamSpec("wrench_timeout", 0.1, "age after which the cuff wrench counts as missing [s]; the interaction "
              "modes then hold", "0.005 to 1 s", lambda v: 0.005 <= v <= 1.0),
    CONTROL_DOMAIN_PARAMETER,
)

#: QoS of ``controller/events``: like ``session/events``, plus kept for late joiners (contract B).
EVENTS_QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=10,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)
#: Frame the cuff wrench must be expressed in.
WRENCH_FRAME = "ft_sensor_link"


class _FixedParameters:
    """The node, as :func:`declare_parameters` sees it: declares its read-only start-up
    parameters, without the catch-all callback that would refuse the interaction
    parameters too (rclpy refuses a change of a read-only parameter by itself)."""

    def __init__(self, node) -> None:
        self._node = node

    def declare_parameter(self, *args, **kwargs):
        return self._node.declare_parameter(*args, **kwargs)

    def add_on_set_parameters_callback(self, callback) -> None:
        pass


class MotionControllerNode(GracefulNode):
    """The motion controller node (see module docstring)."""

    node_name = "motion_controller"
    realtime_priority = 48
    niceness = -10

    def __init__(self) -> None:
        super().__init__(self.node_name)
        p = declare_parameters(_FixedParameters(self), PARAMETERS)
        self.model = ArmModel.from_urdf(p["robot_description"] or None)
        self.joint_names = self.model.joint_names
        self.limits = CommandLimits(
            self.model.lower, self.model.upper, self.model.velocity_limit, self.model.effort_limit
        )
        self.heartbeat = HeartbeatMonitor(p["heartbeat_timeout"])
        self.start_tolerance = p["start_tolerance"]
        self.max_trajectory_age = p["max_trajectory_age"]
        self.wrench_timeout = p["wrench_timeout"]
        self.measured: Optional[np.ndarray] = None
        self.measured_velocity: Optional[np.ndarray] = None
        self.state_time = -float("inf")
        self.wrench: Optional[np.ndarray] = None
        self.wrench_time = -float("inf")
        self.setpoint: Optional[np.ndarray] = None
        self.trajectory: Optional[SampledTrajectory] = None
        self.trajectory_joints: list[int] = []
        self.trajectory_start = 0.0
        self.trajectory_base: Optional[np.ndarray] = None
        self.last_error = ""
        self.late_trajectories = 0
        self.bad_samples = {"joint_states": 0, "ft_sensor/wrench": 0}
        # Shared by the callbacks (executor thread) and the command loop.
        self._lock = threading.Lock()
        self.settings = InteractionSettings.defaults(self.model.lower, self.model.upper)
        self._declare_interaction_parameters()
        self.core = InteractionController(self.model, self.settings, 1.0 / p["interaction_rate"])
        self.add_on_set_parameters_callback(self.on_set_parameters)
        self._position_period = 1.0 / p["rate"]
        self._last_position_cycle = -float("inf")
        self._events: list = []
        self._ros_minus_monotonic = 0.0
        self.control_domain = ControlDomain(self, p["control_domain"])
        control = self.control_domain
        self.command_out = control.publisher(JointState, "joint_commands", "pub_commands")
        # Events go to the session and the bag (public domain), every one of them, in order.
        self.events_out = LatestValuePublisher(
            self.create_publisher(DiagnosticStatus, "controller/events", EVENTS_QOS), "pub_events", keep=100)
        control.subscribe(JointState, "joint_states", self.on_joint_state)
        control.subscribe(WrenchStamped, "ft_sensor/wrench", self.on_wrench)
        self.create_subscription(JointTrajectory, "joint_trajectory", self.on_trajectory, subscriber_qos("joint_trajectory"))
        watch_heartbeat_and_drives(control.subscribe, self.heartbeat)
        self.loop = PeriodicLoop(1.0 / p["interaction_rate"], self.cycle, "interaction_loop")
        self.create_timer(0.1, self.check_loop)
        self.create_timer(0.02, self.publish_events)
        self.diagnostics = DiagnosticsPublisher(self, self.report)
        self.get_logger().info(f"interaction loop {p['interaction_rate']:.0f} Hz on its own thread; {control.describe()}")
        self.loop.start()

    # --- interaction parameters (contract A) ------------------------------------------

    def _declare_interaction_parameters(self) -> None:
        for name in InteractionSettings.parameter_names():
            description, allowed = InteractionSettings.describe(name)
            value = self.settings.value(name)
            descriptor = ParameterDescriptor(description=description, additional_constraints=f"allowed: {allowed}")
            if isinstance(value, list):
                descriptor.type = Parameter.Type.DOUBLE_ARRAY.value
                value = Parameter.Type.DOUBLE_ARRAY if not value else [float(x) for x in value]
            try:
                declared = self.declare_parameter(name, value, descriptor).value
            except Exception as exc:  # rclpy raises several types for a mistyped override
                raise ConfigError(f"parameter {name!r}: {exc}; allowed: {allowed}") from None
            if declared is not None and declared != self.settings.value(name):
                try:
                    self.settings = self.settings.updated({name: declared})
                except ValueError as exc:
                    raise ConfigError(str(exc)) from None

    def on_set_parameters(self, params) -> SetParametersResult:
        """Check and apply a change of the interaction parameters (all of them, or none).

        A ``mode`` change is refused while the arm moves (a joint faster than
        ``REST_SPEED`` or a position-mode trajectory under way): switching happens at rest.
        """
        changes = {param.name: param.value for param in params
                   if param.name in InteractionSettings.parameter_names()}
        if not changes:
            return SetParametersResult(successful=True)
        with self._lock:
            try:
                new = self.settings.updated(changes)
            except ValueError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
            if "mode" in changes:
                moving = self._moving_reason(time.monotonic())
                if moving:
                    return SetParametersResult(
                        successful=False,
                        reason=f"parameter 'mode' = {changes['mode']!r} refused: {moving}; allowed: a mode change "
                               "only while the arm is at rest")
                # A trajectory of the previous exercise is no reference for the next one.
                self.trajectory = None
            self.settings = new
            self.core.configure(new, mode_set="mode" in changes)
        return SetParametersResult(successful=True)

    def _moving_reason(self, now: float) -> str:
        if self.measured_velocity is not None and not self.core.at_rest(self.measured_velocity):
            fastest = float(np.max(np.abs(self.measured_velocity)))
            return f"the arm moves ({fastest:.2f} rad/s)"
        if self.trajectory is not None and now - self.trajectory_start < self.trajectory.duration:
            return "a trajectory is under way"
        return ""

    def check_loop(self) -> None:
        """A bug in the command loop ends the node (the driver then holds: commands stop)."""
        if self.loop.error is not None and self.fatal_error is None:
            self.fatal_error = self.loop.error

    def on_joint_state(self, msg: JointState) -> None:
        """Keep the latest measured position [rad] and velocity [rad/s]; NaN/inf is a missing sample."""
        try:
            (position,) = joint_arrays(msg, self.joint_names, ("position",))
            velocity = joint_arrays(msg, self.joint_names, ("velocity",))[0] if len(msg.velocity) \
                else np.zeros(len(self.joint_names))
        except ValueError as exc:
            self.get_logger().error(f"joint_states ignored: {exc}", throttle_duration_sec=1.0)
            return
        if np.all(np.isfinite(position)) and np.all(np.isfinite(velocity)):
            with self._lock:
                self.measured, self.measured_velocity = position, velocity
                self.state_time = time.monotonic()
        else:
            self.bad_samples["joint_states"] += 1
            self.get_logger().error("joint_states sample holds NaN or inf: ignored (a missing sample)",
                                    throttle_duration_sec=1.0)

    def on_wrench(self, msg: WrenchStamped) -> None:
        """Keep the latest cuff wrench (force [N], torque [N·m] in ``ft_sensor_link``)."""
        if msg.header.frame_id not in (WRENCH_FRAME, ""):
            self.bad_samples["ft_sensor/wrench"] += 1
            self.get_logger().error(f"ft_sensor/wrench ignored: frame {msg.header.frame_id!r}, expected "
                                    f"{WRENCH_FRAME!r}", throttle_duration_sec=1.0)
            return
        f, t = msg.wrench.force, msg.wrench.torque
        wrench = np.array([f.x, f.y, f.z, t.x, t.y, t.z])
        if not np.all(np.isfinite(wrench)):
            self.bad_samples["ft_sensor/wrench"] += 1
        with self._lock:
            # NaN/inf is passed on: the controller holds and says why.
            self.wrench, self.wrench_time = wrench, time.monotonic()

    def on_trajectory(self, msg: JointTrajectory) -> None:
        """Start tracking a trajectory, or refuse it with a logged reason."""
        try:
            delay = self.start_delay(msg)
            with self._lock:
                trajectory, joints = self.validate(msg)
                # An interruption before this trajectory is behind it: it was planned from
                # where the arm stopped. Only a later one may cancel it.
                self.heartbeat.take_interruption()
                self.trajectory, self.trajectory_joints = trajectory, joints
                self.trajectory_base = self.setpoint.copy()
                self.trajectory_start = time.monotonic() + delay
                self.last_error = ""
        except ValueError as exc:
            self.last_error = f"trajectory refused: {exc}"
            self.get_logger().error(self.last_error)

    def start_delay(self, msg: JointTrajectory) -> float:
        """Return when [s from now] ``msg`` starts: at its header stamp if that is ahead, else now.

        A trajectory that arrives after its stamp (discovery or a busy machine delayed it)
        starts on arrival, from the current setpoint: jumping ahead along it would jerk the
        arm, and refusing it would stall the session on a transport delay.

        Raises:
            ValueError: if the stamp is older than ``max_trajectory_age`` (a stale command,
                e.g. the last one kept for late joiners when this controller restarted).
        """
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        if stamp == 0.0:
            return 0.0
        delay = stamp - self.get_clock().now().nanoseconds * 1e-9
        if delay < -self.max_trajectory_age:
            raise ValueError(
                f"trajectory is stale: it started {-delay:.2f} s ago (allowed: {self.max_trajectory_age:.2f} s)"
            )
        if delay < 0.0:
            self.late_trajectories += 1
        return max(delay, 0.0)

    def validate(self, msg: JointTrajectory) -> tuple[SampledTrajectory, list[int]]:
        """Return the trajectory of ``msg`` and its joint indices, checked against the limits.

        Raises:
            ValueError: naming the joint or point that is not allowed.
        """
        if self.setpoint is None:
            raise ValueError("no joint_states received yet")
        if not self.heartbeat.permits(time.monotonic()):
            raise ValueError("motion is not permitted by the safety supervisor")
        unknown = [name for name in msg.joint_names if name not in self.joint_names]
        if unknown:
            raise ValueError(f"unknown joints {unknown}; allowed: {list(self.joint_names)}")
        trajectory = sampled_trajectory(msg)
        joints = [self.joint_names.index(name) for name in msg.joint_names]
        lower, upper = self.limits.lower[joints], self.limits.upper[joints]
        outside = (trajectory.positions < lower) | (trajectory.positions > upper)
        if np.any(outside):
            point, j = np.argwhere(outside)[0]
            raise ValueError(
                f"point {point}: {msg.joint_names[j]} at {trajectory.positions[point, j]:.3f} rad is outside "
                f"[{lower[j]:.3f}, {upper[j]:.3f}] rad"
            )
        too_fast = np.abs(trajectory.velocities) > self.limits.velocity[joints]
        if np.any(too_fast):
            point, j = np.argwhere(too_fast)[0]
            raise ValueError(
                f"point {point}: {msg.joint_names[j]} velocity {trajectory.velocities[point, j]:.3f} rad/s "
                f"exceeds {self.limits.velocity[joints][j]:.3f} rad/s"
            )
        if trajectory.times[0] == 0:
            gap = np.abs(trajectory.positions[0] - self.setpoint[joints])
            if np.any(gap > self.start_tolerance):
                j = int(np.argmax(gap))
                raise ValueError(
                    f"{msg.joint_names[j]} starts {gap[j]:.3f} rad from the current setpoint "
                    f"{self.setpoint[joints][j]:.3f} rad (allowed: {self.start_tolerance:.3f} rad); "
                    "start at the current position or give the first point a time_from_start > 0"
                )
        else:
            # Start from where the controller is, as ROS joint trajectory controllers do.
            start = self.setpoint[joints]
            trajectory = SampledTrajectory(
                np.concatenate([[0.0], trajectory.times]),
                np.vstack([start, trajectory.positions]),
                np.vstack([np.zeros_like(start), trajectory.velocities]),
                np.vstack([np.zeros_like(start), trajectory.accelerations]),
            )
        return trajectory, joints

    def cycle(self, now: float) -> None:
        """Compute one drive setpoint and publish it (loop thread).

        In ``position`` mode, outside a reaction, only every ``1 / rate`` s: tracking needs
        no more, and the loop then costs what the command stream cost before the
        interaction modes (spasms are still watched at ``rate``: 2 samples, 20 ms at 100 Hz).
        """
        if (self.settings.mode == "position" and not self.core.reaction
                and now - self._last_position_cycle < self._position_period - 0.5 * self.loop.period):
            return
        self._last_position_cycle = now
        with self._lock:
            msg = self._command(now)
        if msg is not None:
            self.command_out.offer(msg)

    def _command(self, now: float) -> Optional[JointState]:
        if self.measured is None:
            return None
        self._ros_minus_monotonic = self.get_clock().now().nanoseconds * 1e-9 - now
        n = len(self.joint_names)
        interrupted = self.heartbeat.take_interruption()
        if self.setpoint is None or interrupted or not self.heartbeat.permits(now):
            # Follow the arm while motion is not permitted: no stale plan survives a stop,
            # and the interaction loop restarts from where the arm is (integrators reset).
            # Only a fresh measurement is followed: a delayed one lies behind a moving arm,
            # and a setpoint put there would yank it back. Until one is fresh, hold the
            # last setpoint (where the arm was going), still.
            self.trajectory = None
            if self.setpoint is None or now - self.state_time <= FRESH_MEASUREMENT:
                self.setpoint = self.measured.copy()
            self.core.follow(self.setpoint)
            command = limit_command(
                feedforward_command(self.model, self.setpoint, np.zeros(n), np.zeros(n), self.measured), self.limits)
        else:
            command = self.core.step(self._state(now), self._reference(now))
            self.setpoint = command.position.copy()
        self._events.extend(self.core.events)
        self.core.events.clear()
        msg = joint_state_msg(JointState(), self.joint_names, command.position, command.velocity, command.effort)
        msg.header.stamp = self.get_clock().now().to_msg()
        return msg

    def _state(self, now: float) -> InteractionState:
        """The measurement for the interaction loop; a stale one is a missing one (NaN)."""
        q, v = self.measured, self.measured_velocity
        if now - self.state_time > self.heartbeat.timeout:
            q = v = np.full(len(self.joint_names), np.nan)
        wrench = self.wrench if now - self.wrench_time <= self.wrench_timeout else None
        return InteractionState(now, q, v if v is not None else np.zeros(len(self.joint_names)), wrench)

    def _reference(self, now: float) -> Optional[Reference]:
        """The trajectory sampled now for every joint (the others at where it started), or None."""
        trajectory = self.trajectory
        if trajectory is None:
            return None
        joints = self.trajectory_joints
        position, velocity, acceleration = (self.trajectory_base.copy(), np.zeros(len(self.joint_names)),
                                            np.zeros(len(self.joint_names)))
        start, end = self.trajectory_base.copy(), self.trajectory_base.copy()
        elapsed = now - self.trajectory_start
        q, v, a = trajectory.sample(elapsed)
        position[joints], velocity[joints], acceleration[joints] = q, v, a
        start[joints], end[joints] = trajectory.positions[0], trajectory.positions[-1]
        return Reference(position, velocity, acceleration, start, end, elapsed, trajectory.duration)

    def publish_events(self) -> None:
        """Publish the loop's events on ``controller/events`` (and log them)."""
        with self._lock:
            events, self._events = self._events, []
            offset = self._ros_minus_monotonic
        for event in events:
            values = dict(event.values)
            if "onset" in values:
                # The loop's monotonic clock -> ROS time, as the contract's stamps are.
                values["onset"] = f"{float(values['onset']) + offset:.6f}"
                values["reaction_latency_ms"] = f"{(event.detected - float(event.values['onset'])) * 1e3:.1f}"
            level = WARN if event.warn else OK
            self.events_out.offer(DiagnosticStatus(
                level=level, name=event.name, message=event.message, hardware_id="rehab_arm",
                values=[KeyValue(key=str(k), value=str(v)) for k, v in values.items()]))
            if event.warn:
                self.get_logger().warning(f"{event.name}: {event.message}")
            else:
                self.get_logger().info(f"{event.name}: {event.message}")

    def report(self):
        """Diagnostics: mode, reaction, signals, tracking state, the last refusal and the loop's timing."""
        with self._lock:
            core_values = self.core.values()
            tracking = self.trajectory is not None and \
                time.monotonic() - self.trajectory_start <= self.trajectory.duration
        values = {**core_values, "tracking": tracking, "last_error": self.last_error,
                  "late_trajectories": self.late_trajectories,
                  "bad_joint_states": self.bad_samples["joint_states"],
                  "bad_wrenches": self.bad_samples["ft_sensor/wrench"],
                  "commands_longest_write_ms": f"{self.command_out.longest_write * 1e3:.1f}",
                  "commands_public_longest_write_ms": f"{self.command_out.public_longest_write * 1e3:.1f}",
                  **self.loop.stats.timing().as_values()}
        if self.measured is None:
            return WARN, "waiting for joint_states", values
        if self.last_error:
            return ERROR, self.last_error, values
        if core_values["signal_problem"] != "none" and self.settings.mode != "position":
            return WARN, f"holding: {core_values['signal_problem']}", values
        if self.core.reaction:
            return WARN, f"{self.settings.mode}: {self.core.reaction.replace('_', ' ')} until the mode is set again", \
                values
        if self.settings.mode != "position":
            return OK, f"{self.settings.mode} mode", values
        return OK, "tracking trajectory" if tracking else "holding setpoint", values

    def on_shutdown_request(self, executor) -> None:
        """Stop the command stream (the driver then holds: commands stop)."""
        self.loop.stop()
        self.command_out.stop()
        self.events_out.stop()


def main(args=None) -> int:
    """Entry point of ``motion_controller``."""
    return run(MotionControllerNode, args)


if __name__ == "__main__":
    sys.exit(main())
