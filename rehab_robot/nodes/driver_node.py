"""hardware_driver: owns a hardware backend, publishes the arm's state, applies commands.

Subscribes ``joint_commands`` (sensor_msgs/JointState: position [rad], velocity [rad/s],
effort = feed-forward torque [N·m]) and ``safety/heartbeat`` (std_msgs/Bool).
Publishes ``joint_states`` (sensor_msgs/JointState) and ``ft_sensor/wrench``
(geometry_msgs/WrenchStamped) every loop cycle. Commands reach the drives only
through the :class:`~rehab_robot.safety.gate.MotionGate`.
"""

from __future__ import annotations

import sys
import time

from geometry_msgs.msg import WrenchStamped
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool

from rehab_robot.errors import ConfigError
from rehab_robot.hardware.interface import JointCommand
from rehab_robot.hardware.registry import backend_class, backend_options
from rehab_robot.nodes.common import (
    OK, WARN, DiagnosticsPublisher, GracefulNode, topic_qos, ParamSpec, declare_parameters, raise_priority, non_empty, run,
)
from rehab_robot.nodes.conversions import joint_arrays, joint_state_msg
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
)

#: How long [s] the driver waits on shutdown for the arm to come to rest.
SHUTDOWN_REST_TIMEOUT = 1.0


class HardwareDriverNode(GracefulNode):
    """The hardware driver node (see module docstring)."""

    node_name = "hardware_driver"

    def __init__(self) -> None:
        super().__init__(self.node_name)
        p = declare_parameters(self, PARAMETERS)
        raise_priority(self)
        cls = backend_class(p["hardware"])
        try:
            self.hardware = cls(**backend_options(p["hardware_options"], cls, p["robot_description"]))
        except TypeError as exc:
            raise ConfigError(f"hardware backend {p['hardware']!r}: bad hardware_options: {exc}") from None
        self.backend_name = p["hardware"]
        self.joint_names = tuple(self.hardware.joint_names)
        self.gate = MotionGate(p["heartbeat_timeout"], p["command_timeout"], p["resume_tolerance"])
        self.hold_reason = "starting"
        self.rejected_commands = 0
        self._cycles = 0
        self._rate_window = (time.monotonic(), 0)
        self.measured_rate = 0.0
        self._joint_state = JointState()
        self._wrench = WrenchStamped()
        self._wrench.header.frame_id = "ft_sensor_link"
        self.state_pub = self.create_publisher(JointState, "joint_states", topic_qos("joint_states"))
        self.wrench_pub = self.create_publisher(WrenchStamped, "ft_sensor/wrench", topic_qos("ft_sensor/wrench"))
        self.create_subscription(JointState, "joint_commands", self.on_command, topic_qos("joint_commands"))
        self.create_subscription(Bool, "safety/heartbeat", self.on_heartbeat, topic_qos("safety/heartbeat"))
        self.timer = self.create_timer(1.0 / p["loop_rate"], self.cycle)
        self.diagnostics = DiagnosticsPublisher(self, self.report)
        self.last_sample = self.hardware.read()
        self.get_logger().info(
            f"backend {self.backend_name!r} ready, joints {', '.join(self.joint_names)}, "
            f"loop {p['loop_rate']:.0f} Hz; holding until the safety supervisor permits motion"
        )

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
            self.get_logger().error(f"joint command refused: {exc}", throttle_duration_sec=1.0)

    def cycle(self) -> None:
        """One control cycle: measure, decide, command, publish."""
        sample = self.hardware.read()
        self.last_sample = sample
        decision = self.gate.decide(time.monotonic(), sample.position)
        if decision.move:
            if not self.hardware.enabled:
                self.hardware.enable()
                self.get_logger().info("motion permitted: drives follow commands")
            self.hardware.write(decision.command)
        elif self.hardware.enabled:
            self.hardware.disable()
            self.get_logger().warning(f"quick stop and hold: {decision.reason}")
        self.hold_reason = decision.reason
        self.publish(sample)
        self._count_cycle()

    def publish(self, sample) -> None:
        """Publish ``joint_states`` and ``ft_sensor/wrench`` for ``sample``."""
        stamp = self.get_clock().now().to_msg()
        msg = joint_state_msg(self._joint_state, self.joint_names, sample.position, sample.velocity, sample.effort)
        msg.header.stamp = stamp
        self.state_pub.publish(msg)
        w = self._wrench
        w.header.stamp = stamp
        f = sample.wrench
        w.wrench.force.x, w.wrench.force.y, w.wrench.force.z = float(f[0]), float(f[1]), float(f[2])
        w.wrench.torque.x, w.wrench.torque.y, w.wrench.torque.z = float(f[3]), float(f[4]), float(f[5])
        self.wrench_pub.publish(w)

    def _count_cycle(self) -> None:
        self._cycles += 1
        start, count = self._rate_window
        now = time.monotonic()
        if now - start >= 1.0:
            self.measured_rate = (self._cycles - count) / (now - start)
            self._rate_window = (now, self._cycles)

    def report(self):
        """Diagnostics: drive state and measured loop rate."""
        values = {
            "backend": self.backend_name,
            "drives": "following commands" if self.hardware.enabled else "holding",
            "hold_reason": self.hold_reason,
            "loop_rate_measured_hz": f"{self.measured_rate:.1f}",
            "rejected_commands": self.rejected_commands,
            "at_rest": self.last_sample.at_rest,
        }
        if self.hardware.enabled:
            return OK, "following commands", values
        return WARN, f"holding: {self.hold_reason}", values

    def on_shutdown_request(self, executor) -> None:
        """Bring the arm to rest and hold it, still publishing, before the process ends."""
        self.timer.cancel()
        self.hardware.disable()
        deadline = time.monotonic() + SHUTDOWN_REST_TIMEOUT
        period = self.timer.timer_period_ns * 1e-9
        while time.monotonic() < deadline:
            sample = self.hardware.read()
            self.publish(sample)
            if sample.at_rest:
                break
            time.sleep(period)
        self.get_logger().info(
            "arm at rest and holding; closing the hardware" if sample.at_rest
            else "arm not at rest after 1 s; closing the hardware (drives hold)"
        )
        self.hardware.close()


def main(args=None) -> int:
    """Entry point of ``hardware_driver``."""
    return run(HardwareDriverNode, args)


if __name__ == "__main__":
    sys.exit(main())
