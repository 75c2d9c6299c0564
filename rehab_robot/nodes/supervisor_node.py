"""safety_supervisor: checks every state of the arm and gates motion with a heartbeat.

Subscribes ``joint_states`` and ``ft_sensor/wrench``; publishes ``safety/heartbeat``
(std_msgs/Bool, True = motion permitted) at ``heartbeat_rate``; offers ``safety/estop``
and ``safety/reset`` (std_srvs/Trigger).
"""

from __future__ import annotations

import sys
import time

import numpy as np
from geometry_msgs.msg import WrenchStamped
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from rehab_robot.model import ArmModel
from rehab_robot.nodes.common import (
    ERROR, OK, WARN, DiagnosticsPublisher, GracefulNode, topic_qos, ParamSpec, declare_parameters, raise_priority, positive, run,
)
from rehab_robot.nodes.conversions import joint_arrays
from rehab_robot.safety.rules import SafetyLimits, check_state
from rehab_robot.safety.supervisor import SafetyLatch
from rehab_robot.session.profiles import load_patient

PARAMETERS = (
    ParamSpec("robot_description", "", "URDF file of the arm (empty: the shipped arm)"),
    ParamSpec("patient", "", "patient profile YAML; tightens position, speed and force limits (empty: none)"),
    ParamSpec("heartbeat_rate", 100.0, "safety heartbeat rate [Hz]", "20 to 1000 Hz",
              lambda v: 20.0 <= v <= 1000.0),
    ParamSpec("state_timeout", 0.1, "age after which joint_states or the F/T reading count as missing [s]",
              "0.01 to 1 s", lambda v: 0.01 <= v <= 1.0),
    ParamSpec("command_timeout", 0.08, "age after which joint_commands count as missing [s]; keep it "
              "below the driver's command_timeout", "0.01 to 1 s", lambda v: 0.01 <= v <= 1.0),
    ParamSpec("max_interaction_force", 40.0, "cuff force limit without a patient profile [N]", "> 0 N", positive),
    ParamSpec("position_margin", 0.1, "tolerance around the patient's range of motion [rad]", "0 to 0.5 rad",
              lambda v: 0.0 <= v <= 0.5),
)


class SafetySupervisorNode(GracefulNode):
    """The safety supervisor node (see module docstring)."""

    node_name = "safety_supervisor"

    def __init__(self) -> None:
        super().__init__(self.node_name)
        p = declare_parameters(self, PARAMETERS)
        raise_priority(self)
        model = ArmModel.from_urdf(p["robot_description"] or None)
        self.joint_names = model.joint_names
        patient_limits = {"max_interaction_force": p["max_interaction_force"]}
        if p["patient"]:
            patient = load_patient(p["patient"], model.limits_by_joint())
            patient_limits = {
                "rom_limits": patient.rom_limits,
                "max_velocity": patient.max_velocity,
                "max_interaction_force": patient.max_interaction_force,
            }
        self.limits = SafetyLimits.for_patient(
            model.joint_names, model.lower, model.upper, model.velocity_limit, model.effort_limit,
            position_margin=p["position_margin"], **patient_limits,
        )
        self.latch = SafetyLatch({
            "joint_states": p["state_timeout"],
            "ft_sensor/wrench": p["state_timeout"],
            "joint_commands": p["command_timeout"],
        })
        self.force = None
        self._was_permitted = False
        self.heartbeat_pub = self.create_publisher(Bool, "safety/heartbeat", topic_qos("safety/heartbeat"))
        self.create_subscription(JointState, "joint_states", self.on_joint_state, topic_qos("joint_states"))
        self.create_subscription(WrenchStamped, "ft_sensor/wrench", self.on_wrench, topic_qos("ft_sensor/wrench"))
        self.create_subscription(
            JointState, "joint_commands",
            lambda msg: self.latch.on_signal("joint_commands", time.monotonic()), topic_qos("joint_commands"),
        )
        self.create_service(Trigger, "safety/estop", self.on_estop)
        self.create_service(Trigger, "safety/reset", self.on_reset)
        self.create_timer(1.0 / p["heartbeat_rate"], self.beat)
        self.diagnostics = DiagnosticsPublisher(self, self.report)
        self.get_logger().info(
            "limits: position [rad] "
            + ", ".join(f"{n} [{lo:.2f}, {hi:.2f}]" for n, lo, hi in zip(self.joint_names, self.limits.lower, self.limits.upper))
            + f"; cuff force {self.limits.max_interaction_force:.0f} N"
        )

    def on_wrench(self, msg: WrenchStamped) -> None:
        """Keep the latest cuff force [N]."""
        self.force = np.array([msg.wrench.force.x, msg.wrench.force.y, msg.wrench.force.z])
        self.latch.on_signal("ft_sensor/wrench", time.monotonic())

    def on_joint_state(self, msg: JointState) -> None:
        """Check one state of the arm against every rule."""
        try:
            position, velocity, effort = joint_arrays(msg, self.joint_names, ("position", "velocity", "effort"))
            violations = check_state(self.limits, position, velocity, effort, self.force)
        except ValueError as exc:
            self.latch.on_state(time.monotonic(), [])
            self.latch.estop(f"malformed joint_states: {exc}")
            return
        self.latch.on_state(time.monotonic(), violations)

    def beat(self) -> None:
        """Publish the heartbeat; log each change of verdict."""
        now = time.monotonic()
        permitted = self.latch.motion_permitted(now)
        self.heartbeat_pub.publish(Bool(data=permitted))
        if permitted != self._was_permitted:
            # rclpy ties a severity to each logging call site: one call per severity.
            if permitted:
                self.get_logger().info(self.latch.describe(now))
            else:
                self.get_logger().warning(self.latch.describe(now))
            self._was_permitted = permitted

    def on_estop(self, request, response):
        """``safety/estop``: latch a stop now."""
        self.latch.estop("e-stop requested (safety/estop)")
        self.beat()
        response.success = True
        response.message = "stop latched; call safety/reset to clear it"
        return response

    def on_reset(self, request, response):
        """``safety/reset``: clear the latch if the cause is gone."""
        response.success, response.message = self.latch.reset(time.monotonic())
        if response.success:
            self.get_logger().info(response.message)
        else:
            self.get_logger().warning(response.message)
        return response

    def report(self):
        """Diagnostics: latch state and causes."""
        now = time.monotonic()
        values = {"latched": self.latch.latched, "causes": "; ".join(self.latch.causes)}
        if self.latch.motion_permitted(now):
            return OK, "motion permitted", values
        return (ERROR if self.latch.latched else WARN), self.latch.describe(now), values


def main(args=None) -> int:
    """Entry point of ``safety_supervisor``."""
    return run(SafetySupervisorNode, args)


if __name__ == "__main__":
    sys.exit(main())
