"""motion_controller: tracks joint trajectories with model-based gravity compensation.

Subscribes ``joint_trajectory`` (trajectory_msgs/JointTrajectory; it may name a subset
of the joints, the others hold), ``joint_states`` and ``safety/heartbeat``. Publishes
``joint_commands`` (sensor_msgs/JointState setpoints) at ``rate``.

While the heartbeat does not permit motion the controller drops its trajectory and
follows the measured position, so that motion resumes without a jump. The command
stream runs on a thread of its own (:class:`~rehab_robot.periodic.PeriodicLoop`);
callbacks only hand it the latest state, heartbeat and trajectory.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Optional

import numpy as np
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory

from rehab_robot.control.laws import CommandLimits, feedforward_command, limit_command
from rehab_robot.control.trajectory import SampledTrajectory
from rehab_robot.model import ArmModel
from rehab_robot.nodes.common import (
    ERROR, OK, WARN, DiagnosticsPublisher, GracefulNode, ParamSpec, declare_parameters, run, subscriber_qos,
    topic_qos, watch_heartbeat_and_drives,
)
from rehab_robot.nodes.conversions import joint_arrays, joint_state_msg, sampled_trajectory
from rehab_robot.nodes.nonblocking import LatestValuePublisher
from rehab_robot.periodic import PeriodicLoop
from rehab_robot.safety.gate import HeartbeatMonitor

#: Age [s] up to which a measured position counts as where the arm is (a few driver cycles).
FRESH_MEASUREMENT = 0.02

PARAMETERS = (
    ParamSpec("robot_description", "", "URDF file of the arm (empty: the shipped arm)"),
    ParamSpec("rate", 100.0, "command rate [Hz]", "20 to 1000 Hz", lambda v: 20.0 <= v <= 1000.0),
    ParamSpec("heartbeat_timeout", 0.25, "age after which the safety heartbeat counts as lost [s]; the "
              "driver stops at its own 50 ms and reports it on hardware/status, which also drops the plan",
              "0.005 to 1 s", lambda v: 0.005 <= v <= 1.0),
    ParamSpec("max_trajectory_age", 2.0, "oldest trajectory start stamp accepted [s]; a trajectory that "
              "arrives late, but within this age, starts when it arrives", "0.01 to 5 s",
              lambda v: 0.01 <= v <= 5.0),
    ParamSpec("start_tolerance", 0.05, "largest gap between a trajectory's first point and the setpoint [rad]",
              "0.001 to 0.5 rad", lambda v: 0.001 <= v <= 0.5),
)


class MotionControllerNode(GracefulNode):
    """The motion controller node (see module docstring)."""

    node_name = "motion_controller"
    realtime_priority = 48
    niceness = -10

    def __init__(self) -> None:
        super().__init__(self.node_name)
        p = declare_parameters(self, PARAMETERS)
        self.model = ArmModel.from_urdf(p["robot_description"] or None)
        self.joint_names = self.model.joint_names
        self.limits = CommandLimits(
            self.model.lower, self.model.upper, self.model.velocity_limit, self.model.effort_limit
        )
        self.heartbeat = HeartbeatMonitor(p["heartbeat_timeout"])
        self.start_tolerance = p["start_tolerance"]
        self.max_trajectory_age = p["max_trajectory_age"]
        self.measured: Optional[np.ndarray] = None
        self.measured_at = -float("inf")
        self.setpoint: Optional[np.ndarray] = None
        self.trajectory: Optional[SampledTrajectory] = None
        self.trajectory_joints: list[int] = []
        self.trajectory_start = 0.0
        self.last_error = ""
        self.late_trajectories = 0
        # Shared by the callbacks (executor thread) and the command loop.
        self._lock = threading.Lock()
        self.command_out = LatestValuePublisher(
            self.create_publisher(JointState, "joint_commands", topic_qos("joint_commands")), "pub_commands")
        self.create_subscription(JointState, "joint_states", self.on_joint_state, subscriber_qos("joint_states"))
        self.create_subscription(JointTrajectory, "joint_trajectory", self.on_trajectory, subscriber_qos("joint_trajectory"))
        watch_heartbeat_and_drives(self, self.heartbeat)
        self.loop = PeriodicLoop(1.0 / p["rate"], self.cycle, "command_loop")
        self.create_timer(0.1, self.check_loop)
        self.diagnostics = DiagnosticsPublisher(self, self.report)
        self.loop.start()

    def check_loop(self) -> None:
        """A bug in the command loop ends the node (the driver then holds: commands stop)."""
        if self.loop.error is not None and self.fatal_error is None:
            self.fatal_error = self.loop.error

    def on_joint_state(self, msg: JointState) -> None:
        """Keep the latest measured position [rad]."""
        try:
            (position,) = joint_arrays(msg, self.joint_names, ("position",))
        except ValueError as exc:
            self.get_logger().error(f"joint_states ignored: {exc}", throttle_duration_sec=1.0)
            return
        if np.all(np.isfinite(position)):
            with self._lock:
                self.measured, self.measured_at = position, time.monotonic()

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
        """Compute and publish one drive setpoint (loop thread)."""
        with self._lock:
            msg = self._command(now)
        if msg is not None:
            self.command_out.offer(msg)

    def _command(self, now: float) -> Optional[JointState]:
        if self.measured is None:
            return None
        n = len(self.joint_names)
        velocity, acceleration = np.zeros(n), np.zeros(n)
        interrupted = self.heartbeat.take_interruption()
        if self.setpoint is None or interrupted or not self.heartbeat.permits(now):
            # Follow the arm while motion is not permitted: no stale plan survives a stop.
            # Only a fresh measurement is followed: a delayed one lies behind a moving arm,
            # and a setpoint put there would yank it back. Until one is fresh, hold the
            # last setpoint (where the arm was going), still.
            self.trajectory = None
            if self.setpoint is None or now - self.measured_at <= FRESH_MEASUREMENT:
                self.setpoint = self.measured.copy()
        elif self.trajectory is not None:
            q, v, a = self.trajectory.sample(now - self.trajectory_start)
            self.setpoint[self.trajectory_joints] = q
            velocity[self.trajectory_joints] = v
            acceleration[self.trajectory_joints] = a
            if now - self.trajectory_start > self.trajectory.duration:
                self.trajectory = None
        command = limit_command(
            feedforward_command(self.model, self.setpoint, velocity, acceleration, self.measured), self.limits
        )
        msg = joint_state_msg(JointState(), self.joint_names, command.position, command.velocity, command.effort)
        msg.header.stamp = self.get_clock().now().to_msg()
        return msg

    def report(self):
        """Diagnostics: tracking state, the last refusal and the command loop's timing."""
        values = {"tracking": self.trajectory is not None, "last_error": self.last_error,
                  "late_trajectories": self.late_trajectories,
                  "commands_longest_write_ms": f"{self.command_out.longest_write * 1e3:.1f}",
                  **self.loop.stats.timing().as_values()}
        if self.measured is None:
            return WARN, "waiting for joint_states", values
        if self.last_error:
            return ERROR, self.last_error, values
        return OK, "tracking trajectory" if self.trajectory is not None else "holding setpoint", values

    def on_shutdown_request(self, executor) -> None:
        """Stop the command stream (the driver then holds: commands stop)."""
        self.loop.stop()
        self.command_out.stop()


def main(args=None) -> int:
    """Entry point of ``motion_controller``."""
    return run(MotionControllerNode, args)


if __name__ == "__main__":
    sys.exit(main())
