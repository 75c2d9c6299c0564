"""safety_supervisor: checks every state of the arm and gates motion with a heartbeat.

Subscribes ``joint_states``, ``ft_sensor/wrench``, ``joint_commands`` and
``hardware/status`` (a driver fault latches a stop); publishes ``safety/heartbeat``
(std_msgs/Bool, True = motion permitted) at ``heartbeat_rate`` from a thread of its own,
and ``safety/status`` (diagnostic_msgs/DiagnosticStatus: the verdict, its cause and the
count of operator resets) on every change; offers ``safety/estop`` and ``safety/reset``
(std_srvs/Trigger).
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
from geometry_msgs.msg import WrenchStamped
from sensor_msgs.msg import JointState
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from rehab_robot.hardware.driver_loop import DriverState
from rehab_robot.model import ArmModel
from rehab_robot.nodes.common import (
    ERROR, OK, WARN, DiagnosticsPublisher, GracefulNode, ParamSpec, declare_parameters, positive, run,
)
from rehab_robot.nodes.conversions import joint_arrays
from rehab_robot.nodes.control_domain import CONTROL_DOMAIN_PARAMETER, ControlDomain
from rehab_robot.periodic import PeriodicLoop
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
    CONTROL_DOMAIN_PARAMETER,
)


#: Statuses queued for publication: every change of verdict is sent, none coalesced.
STATUS_QUEUE = 20


class SafetySupervisorNode(GracefulNode):
    """The safety supervisor node (see module docstring)."""

    node_name = "safety_supervisor"
    realtime_priority = 49
    niceness = -10

    def __init__(self) -> None:
        super().__init__(self.node_name)
        p = declare_parameters(self, PARAMETERS)
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
        self.reset_requests = 0
        self._latched_fault_id = 0
        self._driver_shut_down = False
        self._was_permitted = False
        self._status_key: tuple = ()
        self._status_time = 0.0
        self._changes: list[tuple[bool, str]] = []
        # The latch is fed by callbacks on the executor thread and read by the heartbeat thread.
        self._lock = threading.Lock()
        self.control_domain = ControlDomain(self, p["control_domain"])
        control = self.control_domain
        self.heartbeat_out = control.publisher(Bool, "safety/heartbeat", "pub_heartbeat")
        self.status_out = control.publisher(DiagnosticStatus, "safety/status", "pub_safety", keep=STATUS_QUEUE)
        control.subscribe(JointState, "joint_states", self.on_joint_state)
        control.subscribe(WrenchStamped, "ft_sensor/wrench", self.on_wrench)
        control.subscribe(JointState, "joint_commands", self.on_command)
        control.subscribe(DiagnosticStatus, "hardware/status", self.on_hardware_status)
        self.create_service(Trigger, "safety/estop", self.on_estop)
        self.create_service(Trigger, "safety/reset", self.on_reset)
        self.create_timer(0.02, self.housekeeping)
        self.loop = PeriodicLoop(1.0 / p["heartbeat_rate"], self.beat, "heartbeat_loop")
        self.diagnostics = DiagnosticsPublisher(self, self.report)
        self.get_logger().info(
            "limits: position [rad] "
            + ", ".join(f"{n} [{lo:.2f}, {hi:.2f}]" for n, lo, hi in zip(self.joint_names, self.limits.lower, self.limits.upper))
            + f"; cuff force {self.limits.max_interaction_force:.0f} N; {control.describe()}"
        )
        self.loop.start()

    def on_wrench(self, msg: WrenchStamped) -> None:
        """Keep the latest cuff force [N]."""
        self.force = np.array([msg.wrench.force.x, msg.wrench.force.y, msg.wrench.force.z])
        with self._lock:
            self.latch.on_signal("ft_sensor/wrench", time.monotonic())

    def on_command(self, msg: JointState) -> None:
        """Note that the motion controller's command stream is alive."""
        with self._lock:
            self.latch.on_signal("joint_commands", time.monotonic())

    def on_hardware_status(self, msg: DiagnosticStatus) -> None:
        """Latch a stop for each new fault the hardware driver reports."""
        values = {kv.key: kv.value for kv in msg.values}
        self._driver_shut_down = values.get("state") == DriverState.SHUT_DOWN.value
        try:
            fault_id = int(values.get("fault_id", "0"))
        except ValueError:
            fault_id = 0
        if msg.level == DiagnosticStatus.ERROR and fault_id != self._latched_fault_id:
            self._latched_fault_id = fault_id
            with self._lock:
                self.latch.estop(msg.message)

    def on_joint_state(self, msg: JointState) -> None:
        """Check one state of the arm against every rule."""
        try:
            position, velocity, effort = joint_arrays(msg, self.joint_names, ("position", "velocity", "effort"))
            violations = check_state(self.limits, position, velocity, effort, self.force)
        except ValueError as exc:
            with self._lock:
                self.latch.on_state(time.monotonic(), [])
                self.latch.estop(f"malformed joint_states: {exc}")
            return
        with self._lock:
            self.latch.on_state(time.monotonic(), violations)

    def beat(self, now: float) -> None:
        """Publish the heartbeat (loop thread); on a change of verdict, the status with its cause first."""
        with self._lock:
            permitted = self.latch.motion_permitted(now)
            changed = permitted != self._was_permitted
            if changed:
                self._was_permitted = permitted
                self.status_out.offer(self.safety_status(now))
                self._changes.append((permitted, self.latch.describe(now)))
        self.heartbeat_out.offer(Bool(data=permitted))

    def housekeeping(self) -> None:
        """Log changes of verdict and repeat ``safety/status`` when something changed or once a second."""
        if self.loop.error is not None and self.fatal_error is None:
            self.fatal_error = self.loop.error
        now = time.monotonic()
        with self._lock:
            changes, self._changes = self._changes, []
            key = (self.latch.motion_permitted(now), self.latch.latched, tuple(self.latch.causes), self.reset_requests)
            status = self.safety_status(now) if key != self._status_key or now - self._status_time >= 1.0 else None
        for permitted, text in changes:
            # rclpy ties a severity to each logging call site: one call per severity.
            if permitted:
                self.get_logger().info(text)
            elif self._driver_shut_down:
                # The graph is stopping: state and F/T end on purpose.
                self.get_logger().info(f"{text} (the hardware driver has shut down)")
            else:
                self.get_logger().warning(text)
        if status is not None:
            self._status_key, self._status_time = key, now
            self.status_out.offer(status)

    def safety_status(self, now: float) -> DiagnosticStatus:
        """Return the ``safety/status`` message (call with the lock held)."""
        permitted = self.latch.motion_permitted(now)
        level = OK if permitted else (ERROR if self.latch.latched else WARN)
        values = {
            "motion_permitted": permitted,
            "latched": self.latch.latched,
            "causes": "; ".join(self.latch.causes),
            "reset_requests": self.reset_requests,
        }
        return DiagnosticStatus(
            level=level, name="rehab_robot: safety", message=self.latch.describe(now), hardware_id="rehab_arm",
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
        )

    def on_estop(self, request, response):
        """``safety/estop``: latch a stop now."""
        with self._lock:
            self.latch.estop("e-stop requested (safety/estop)")
        self.beat(time.monotonic())
        response.success = True
        response.message = "stop latched; call safety/reset to clear it"
        return response

    def on_reset(self, request, response):
        """``safety/reset``: clear the latch if the cause is gone.

        Every request is counted and announced on ``safety/status``, cleared or not: the
        hardware driver answers a new request by asking its backend to clear a fault
        (reconnecting a lost device), which may be what keeps the stop in place.
        """
        now = time.monotonic()
        with self._lock:
            self.reset_requests += 1
            response.success, response.message = self.latch.reset(now)
            if not response.success and any(c.startswith("hardware fault") for c in self.latch.causes):
                response.message += "; the hardware driver was asked to clear its fault: call safety/reset again once it has"
            self.status_out.offer(self.safety_status(now))
        if response.success:
            self.get_logger().info(response.message)
        else:
            self.get_logger().warning(response.message)
        return response

    def report(self):
        """Diagnostics: latch state, causes and heartbeat timing."""
        now = time.monotonic()
        with self._lock:
            permitted, latched = self.latch.motion_permitted(now), self.latch.latched
            values = {"latched": latched, "causes": "; ".join(self.latch.causes), "reset_requests": self.reset_requests,
                      "heartbeat_longest_write_ms": f"{self.heartbeat_out.longest_write * 1e3:.1f}",
                      "heartbeat_public_longest_write_ms": f"{self.heartbeat_out.public_longest_write * 1e3:.1f}",
                      **self.loop.stats.timing().as_values()}
            text = self.latch.describe(now)
        if permitted:
            return OK, "motion permitted", values
        return (ERROR if latched else WARN), text, values

    def on_shutdown_request(self, executor) -> None:
        """Stop the heartbeat thread (the driver then holds: a missing heartbeat means stop)."""
        self.loop.stop()
        self.heartbeat_out.stop()
        self.status_out.stop()


def main(args=None) -> int:
    """Entry point of ``safety_supervisor``."""
    return run(SafetySupervisorNode, args)


if __name__ == "__main__":
    sys.exit(main())
