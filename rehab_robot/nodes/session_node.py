"""session_manager: runs one exercise session and writes its report.

Loads the patient profile and exercise protocol (refusing bad files before anything
moves), offers ``session/start|pause|resume|stop`` (std_srvs/Trigger), sends the
exercise motions on ``joint_trajectory`` and publishes ``session/status``
(diagnostic_msgs/DiagnosticStatus). At the end it writes ``<session_dir>/report.json``
and appends the session to the patient's history (``<output_dir>/history/<id>.json``).

Exercises in which the patient takes part (docs/exercises.md) also: set the
``motion_controller``'s mode and gains at rest with one
``motion_controller/set_parameters_atomically`` call (contract A, the exercise is aborted
with the controller's reason if it refuses), publish the current target on
``exercise/target`` (sensor_msgs/JointState, 50 Hz while the exercise runs) and pause on
a ``controller/events`` spasm or soft-wall event.
"""

from __future__ import annotations

import collections
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import yaml
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from geometry_msgs.msg import WrenchStamped
from rcl_interfaces.srv import SetParametersAtomically
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from rehab_robot.control.trajectory import SampledTrajectory
from rehab_robot.errors import ConfigError
from rehab_robot.model import ArmModel
from rehab_robot.nodes.common import (
    ERROR, OK, WARN, DiagnosticsPublisher, GracefulNode, ParamSpec, declare_parameters, non_empty, positive, run,
    graph_subscriber, subscriber_qos, topic_qos, watch_heartbeat_and_drives,
)
from rehab_robot.nodes.conversions import joint_arrays, trajectory_msg
from rehab_robot.safety.gate import HeartbeatMonitor
from rehab_robot.session.exercises import InteractiveRunner, controller_parameters
from rehab_robot.session.history import HistoryError, append_session, history_entry, last_gain
from rehab_robot.session.interaction import CuffForceTare
from rehab_robot.session.repetition_metrics import PassiveRepetitions, SampleLog
from rehab_robot.session.profiles import load_patient, load_protocol
from rehab_robot.session.provenance import hardware_record, keep_input, software_record
from rehab_robot.session.report import build_report, write_report
from rehab_robot.session.runner import SessionRunner, SessionState

PARAMETERS = (
    ParamSpec("robot_description", "", "URDF file of the arm (empty: the shipped arm)"),
    ParamSpec("patient", "", "patient profile YAML file", "an existing file", non_empty),
    ParamSpec("protocol", "", "exercise protocol YAML file", "an existing file", non_empty),
    ParamSpec("session_dir", "", "folder that receives report.json", "a directory path", non_empty),
    ParamSpec("autostart", False, "start the exercise as soon as the arm is ready"),
    ParamSpec("exit_when_done", False, "exit once the session has ended and the report is written"),
    ParamSpec("ready_timeout", 30.0, "how long autostart waits for the arm to be ready [s]", "> 0 s", positive),
    ParamSpec("pause_timeout", 300.0, "a session paused longer than this is aborted [s]", "> 0 s", positive),
    ParamSpec("auto_resume_limit", 3, "glitches (< 1 s without motion permission) the session resumes from "
              "by itself after 2 s of permission; 0: never", "0 to 10", lambda v: 0 <= v <= 10),
    ParamSpec("hardware", "sim", "hardware backend the driver runs, for the report"),
    ParamSpec("hardware_options", "{}", "the backend's options (YAML mapping), for the report"),
    ParamSpec("tick_rate", 50.0, "session update rate [Hz]", "10 to 200 Hz", lambda v: 10.0 <= v <= 200.0),
    ParamSpec("history_dir", "", "folder of the per-patient history files (empty: the history folder next to "
              "the session folder, <output_dir>/history)"),
    ParamSpec("wait_for_nodes", ["motion_controller"], "nodes that must subscribe to joint_trajectory before "
              "the exercise starts (the controller; the recorder, so the bag holds the whole session)",
              "node names", lambda v: all(isinstance(n, str) and n for n in v)),
)

#: Waypoint spacing of the trajectories sent to the controller [s].
TRAJECTORY_STEP = 0.02
#: How long [s] motion must have been permitted without interruption before autostart:
#: every node has then heard the heartbeat, and start-up discovery has settled.
READY_SETTLE = 2.0
#: Status publication period [s].
STATUS_PERIOD = 0.1
#: Age [s] beyond which the controller's command stream or the wrench counts as not flowing.
FLOW_TIMEOUT = 0.2
#: A safety/status may arrive this much [s] before the last permitting heartbeat is seen and
#: still explain the stop that follows (the supervisor sends the status first).
CAUSE_SLACK = 0.05
#: Heartbeat age or gap [s] the session takes for a lost heartbeat (the drives stop at 50 ms).
HEARTBEAT_TIMEOUT = 1.0
#: How long [s] an interruption waits for the supervisor's cause before the heartbeat's own text is kept.
CAUSE_WAIT = 0.5
#: QoS of ``exercise/target`` (contract B): reliable, volatile, only the latest target matters.
TARGET_QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE,
                        history=HistoryPolicy.KEEP_LAST, depth=1)
#: QoS of ``controller/events`` (contract B): reliable, kept for late joiners, like session/events.
CONTROLLER_EVENTS_QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE,
                                   durability=DurabilityPolicy.TRANSIENT_LOCAL,
                                   history=HistoryPolicy.KEEP_LAST, depth=10)


def _options_mapping(text: str) -> Any:
    """Return the backend options as a mapping for the report (the text itself if it is not one)."""
    try:
        options = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return options if isinstance(options, dict) else text


class SessionManagerNode(GracefulNode):
    """The exercise session manager node (see module docstring)."""

    node_name = "session_manager"

    def __init__(self) -> None:
        super().__init__(self.node_name)
        p = declare_parameters(self, PARAMETERS)
        self.model = model = ArmModel.from_urdf(p["robot_description"] or None)
        self.patient = load_patient(p["patient"], model.limits_by_joint())
        self.protocol = load_protocol(
            p["protocol"], self.patient, model.limits_by_joint(),
            dict(zip(model.joint_names, model.velocity_limit)),
        )
        self.joint_names = model.joint_names
        self.session_dir = Path(p["session_dir"])
        self.session_id = self.session_dir.name
        # Copied now: a file edited during or after the session no longer says what ran.
        try:
            inputs = {"patient": keep_input(self.session_dir, "patient", Path(p["patient"])),
                      "protocol": keep_input(self.session_dir, "protocol", Path(p["protocol"]))}
        except OSError as exc:
            raise ConfigError(f"parameter 'session_dir': cannot keep the input files there ({exc}); "
                              "allowed: a writable directory") from None
        self.provenance = {
            "inputs": inputs,
            "software": software_record(),
            "hardware": hardware_record(p["hardware"], _options_mapping(p["hardware_options"])),
        }
        self._events_sent = 0
        self.autostart = p["autostart"]
        self.exit_when_done = p["exit_when_done"]
        self.ready_deadline = time.monotonic() + p["ready_timeout"]
        self.history_dir = Path(p["history_dir"]) if p["history_dir"] else self.session_dir.parent / "history"
        if self.protocol.interactive:
            self.runner = self._interactive_runner(p)
        else:
            self.runner = SessionRunner(
                self.protocol, self.joint_names, self.protocol.max_velocity,
                pause_timeout=p["pause_timeout"], auto_resume_limit=p["auto_resume_limit"],
            )
        self._parameter_call = None
        self._pending_parameters: Optional[dict] = None
        self._wrench: Optional[np.ndarray] = None
        self._torque_window: collections.deque = collections.deque(maxlen=25)
        self._torque_bias = np.zeros(3)
        self.velocity: Optional[np.ndarray] = None
        self.effort: Optional[np.ndarray] = None
        # Passive exercises: the per-repetition metrics are computed here, from the runner's events.
        self.passive_log = SampleLog()
        self.passive_repetitions = PassiveRepetitions(self.joint_names, self.protocol.joint)
        # The session does not command the drives, and learns of every stop of theirs from
        # hardware/status: a late tick of its own must not pause the exercise.
        self.heartbeat = HeartbeatMonitor(HEARTBEAT_TIMEOUT)
        self.wait_for_nodes = list(p["wait_for_nodes"])
        self._stop_cause: tuple[float, str] = (-1e9, "")
        self._cause_deadline = 0.0
        self._last_command = -1e9
        self._last_wrench = -1e9
        self.position: Optional[np.ndarray] = None
        self.force_norm: Optional[float] = None
        self.cuff_force = CuffForceTare()
        self.report_path: Optional[Path] = None
        self._last_status = 0.0
        self._permitted_since: Optional[float] = None
        self.trajectory_pub = self.create_publisher(JointTrajectory, "joint_trajectory", topic_qos("joint_trajectory"))
        self.status_pub = self.create_publisher(DiagnosticStatus, "session/status", topic_qos("session/status"))
        self.events_pub = self.create_publisher(DiagnosticStatus, "session/events", topic_qos("session/events"))
        self.create_subscription(JointState, "joint_states", self.on_joint_state, subscriber_qos("joint_states"))
        self.create_subscription(WrenchStamped, "ft_sensor/wrench", self.on_wrench, subscriber_qos("ft_sensor/wrench"))
        watch_heartbeat_and_drives(graph_subscriber(self), self.heartbeat)
        self.create_subscription(DiagnosticStatus, "safety/status", self.on_safety_status, subscriber_qos("safety/status"))
        self.create_subscription(JointState, "joint_commands", self.on_command, subscriber_qos("joint_commands"))
        if self.protocol.interactive:
            self.target_pub = self.create_publisher(JointState, "exercise/target", TARGET_QOS)
            self.parameter_client = self.create_client(SetParametersAtomically,
                                                       "motion_controller/set_parameters_atomically")
            self.create_subscription(DiagnosticStatus, "controller/events", self.on_controller_event,
                                     CONTROLLER_EVENTS_QOS)
        for name, handler in (("start", self.on_start), ("pause", self.on_pause),
                              ("resume", self.on_resume), ("stop", self.on_stop)):
            self.create_service(Trigger, f"session/{name}", handler)
        self.create_timer(1.0 / p["tick_rate"], self.tick)
        self.diagnostics = DiagnosticsPublisher(self, self.report)
        self.get_logger().info(
            f"patient {self.patient.patient_id}, protocol {self.protocol.name}: {self._exercise_summary()}"
            + ("; starts when the arm is ready" if self.autostart else "; call session/start")
        )

    def _exercise_summary(self) -> str:
        """One line saying what the exercise is, for the log."""
        p = self.protocol
        if p.type == "isometric":
            return (f"isometric, {p.repetitions} x push {p.joint} to {p.target_torque:g} N·m for {p.hold_time:g} s "
                    f"at {p.hold_angle:.2f} rad")
        if p.type == "path_guidance":
            return f"path_guidance, {p.repetitions} x through {len(p.waypoints)} waypoints and back"
        text = f"{p.repetitions} x {p.joint} {p.start_angle:.2f} <-> {p.end_angle:.2f} rad"
        return text if p.type == "passive_rom" else f"{p.type}, {text}"

    def _interactive_runner(self, p: dict) -> InteractiveRunner:
        """The runner of an exercise in which the patient takes part, starting from the history's gain."""
        gain = None
        if self.protocol.type == "assist_as_needed":
            try:
                gain = last_gain(self.history_dir, self.patient.patient_id, self.protocol.name)
            except HistoryError as exc:
                # Full assistance (the protocol's initial gain) is the safe start without a history.
                self.get_logger().error(f"{exc}; the assistance starts from the protocol's initial_gain "
                                        f"{self.protocol.initial_gain:g}")
                self.provenance["history_problem"] = str(exc)
            if gain is not None:
                self.get_logger().info(f"assistance gain {gain:.3f} from the last session of {self.protocol.name}")
        limits = self.model.limits_by_joint()

        def parameters(posture, assist_gain):
            cuff = None
            if self.protocol.type == "path_guidance":
                cuff = np.array([self.cuff_position(self._posture_at(posture, w)) for w in self.protocol.waypoints])
            return controller_parameters(self.protocol, self.patient, self.joint_names, limits, posture,
                                         cuff_waypoints=cuff, gain=assist_gain)

        return InteractiveRunner(
            self.protocol, self.patient, self.joint_names, self.protocol.max_velocity,
            make_parameters=parameters, cuff_position=self.cuff_position, initial_gain=gain,
            pause_timeout=p["pause_timeout"], auto_resume_limit=p["auto_resume_limit"],
        )

    def _posture_at(self, posture, waypoint) -> np.ndarray:
        q = np.array(posture, dtype=float)
        for name, angle in waypoint.items():
            q[self.joint_names.index(name)] = angle
        return q

    def cuff_position(self, q) -> np.ndarray:
        """Position [m] of ``cuff_link`` in ``base_link`` at joint positions ``q`` [rad]."""
        return self.model.forward_kinematics(q, "cuff_link")[:3, 3]

    # --- inputs ---------------------------------------------------------------------

    def on_joint_state(self, msg: JointState) -> None:
        """Keep the latest measured position [rad] (and velocity [rad/s], effort [N·m] when sent)."""
        try:
            (position,) = joint_arrays(msg, self.joint_names, ("position",))
        except ValueError:
            return  # the supervisor latches a stop on malformed states
        self.position = position
        try:  # for the per-repetition metrics
            self.velocity, self.effort = joint_arrays(msg, self.joint_names, ("velocity", "effort"))
        except ValueError:
            self.velocity, self.effort = None, None

    def on_controller_event(self, msg: DiagnosticStatus) -> None:
        """A ``controller/events`` spasm or soft_wall_limit interrupts the exercise (manual resume)."""
        if msg.name not in ("spasm", "soft_wall_limit") or self.position is None:
            return
        values = {kv.key: kv.value for kv in msg.values}
        self.get_logger().warning(f"controller event {msg.name}: {msg.message}; the session pauses")
        self.runner.controller_event(time.monotonic(), self.position, msg.name, msg.message, values)

    def joint_torques(self) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
        """Robot and patient joint torques [N·m] now, for the work shares (None when unknown).

        Robot: the motor effort minus the torque that holds the arm's own links against
        gravity. Patient: J^T W, W the cuff wrench minus the resting load, J the Jacobian of
        ``ft_sensor_link`` in its own frame.
        """
        if self.position is None or self.effort is None or self._wrench is None or self.cuff_force.bias is None:
            return None, None
        robot = self.effort - self.model.gravity_torques(self.position)
        rotation = self.sensor_rotation()
        force = self.cuff_force.active_force_vector(self._wrench[:3], rotation)
        wrench = np.concatenate([force, self._wrench[3:] - self._torque_bias])
        jacobian = self.model.frame_jacobian(self.position, "ft_sensor_link", "local")
        return robot, jacobian.T @ wrench

    def on_wrench(self, msg: WrenchStamped) -> None:
        """Keep the latest cuff force magnitude [N]."""
        f = msg.wrench.force
        force = (f.x, f.y, f.z)
        self._last_wrench = time.monotonic()
        t = msg.wrench.torque  # the whole wrench, for the patient's joint torques
        self._wrench = np.array([f.x, f.y, f.z, t.x, t.y, t.z], dtype=float)
        if np.all(np.isfinite(self._wrench)):
            self._torque_window.append(self._wrench[3:])
        self.cuff_force.add(self._last_wrench, force)
        # Kinematics only once there is a resting load to carry along (after the tare).
        rotation = self.sensor_rotation() if self.cuff_force.bias is not None else None
        self.force_norm = self.cuff_force.active_force(force, rotation)

    def sensor_rotation(self) -> Optional[np.ndarray]:
        """Orientation (3x3) of ``ft_sensor_link`` in ``base_link`` at the measured position, if known."""
        if self.position is None:
            return None
        return self.model.forward_kinematics(self.position, "ft_sensor_link")[:3, :3]

    def on_command(self, msg: JointState) -> None:
        """Note that the motion controller's command stream flows."""
        self._last_command = time.monotonic()

    def on_safety_status(self, msg: DiagnosticStatus) -> None:
        """Keep the safety supervisor's cause of the latest stop, to record with the interruption."""
        values = {kv.key: kv.value for kv in msg.values}
        if values.get("motion_permitted") == "False":
            cause = msg.message[len("waiting: "):] if msg.message.startswith("waiting: ") else msg.message
            self._stop_cause = (time.monotonic(), cause)

    def stop_cause(self) -> str:
        """Return why motion stopped, or "" while the cause has not arrived.

        The supervisor's safety/status says it best (which rule, which signal and how
        old). It travels on its own topic and may arrive just after the heartbeat that
        stopped motion; a status older than the last heartbeat that permitted motion
        belongs to an earlier stop. Without one, a heartbeat gap or a stop the driver
        reported for a reason of its own is the cause.
        """
        stamp, cause = self._stop_cause
        if cause and stamp >= self.heartbeat.last_permitted_at - CAUSE_SLACK:
            return cause
        interruption = self.heartbeat.interruption
        if interruption.startswith("safety heartbeat lost") or (
            interruption.startswith("drives stopped") and not interruption.endswith("safety supervisor stop")
        ):
            return interruption
        return ""

    def not_ready_reason(self) -> str:
        """Return why the exercise cannot move the arm now, or "" when it can."""
        now = time.monotonic()
        if self.position is None:
            return "no joint_states received yet"
        if now - self._last_wrench > FLOW_TIMEOUT:
            return "ft_sensor/wrench is not flowing"
        subscribers = {info.node_name for info in self.get_subscriptions_info_by_topic("joint_trajectory")}
        missing = [name for name in self.wait_for_nodes if name not in subscribers]
        if missing:
            # A trajectory sent before the controller is discovered would be lost.
            return f"not connected yet (no joint_trajectory subscription): {', '.join(missing)}"
        if now - self._last_command > FLOW_TIMEOUT:
            return "the motion controller's joint_commands are not flowing"
        return ""

    def _command(self, name: str, action, response):
        # Start and resume move the arm; pause and stop only need to know where it is.
        if name in ("start", "resume"):
            reason = self.not_ready_reason()
        else:
            reason = "no joint_states received yet" if self.position is None else ""
        if reason:
            response.success, response.message = False, f"cannot {name}: {reason}"
        else:
            response.success, response.message = action()
            self.get_logger().info(f"session/{name}: {response.message}")
            self.flush_motion()
        return response

    def on_start(self, request, response):
        """``session/start``: tare the cuff force (the arm holds still before the start), then start."""
        return self._command("start", self._start, response)

    def _start(self) -> tuple[bool, str]:
        now = time.monotonic()
        if self.runner.state is SessionState.IDLE:
            try:
                self.cuff_force.tare(self.sensor_rotation())
            except ValueError as exc:
                return False, f"cannot start: the cuff force cannot be tared ({exc})"
            self.provenance["interaction_force"] = self.cuff_force.describe()
            if self._torque_window:
                self._torque_bias = np.mean(self._torque_window, axis=0)
            self.force_norm = None  # computed before the tare: the next reading replaces it
        return self.runner.start(now, self.position, self.heartbeat.permits(now))

    def on_pause(self, request, response):
        """``session/pause``."""
        return self._command("pause", lambda: self.runner.pause(time.monotonic(), self.position), response)

    def on_resume(self, request, response):
        """``session/resume``."""
        return self._command("resume", lambda: self.runner.resume(
            time.monotonic(), self.position, self.heartbeat.permits(time.monotonic())), response)

    def on_stop(self, request, response):
        """``session/stop``."""
        return self._command("stop", lambda: self.runner.stop(time.monotonic()), response)

    # --- loop -----------------------------------------------------------------------

    def tick(self) -> None:
        """Advance the session, send motions, publish status, finish when done."""
        now = time.monotonic()
        # An interruption between two ticks also stopped the drives and the controller.
        permitted = not self.heartbeat.take_interruption() and self.heartbeat.permits(now)
        if not permitted:
            self._permitted_since = None
        elif self._permitted_since is None:
            self._permitted_since = now
        if self.runner.state is SessionState.IDLE and self.autostart:
            reason = self.not_ready_reason() or self.heartbeat.closed_reason(now)
            if permitted and not reason and now - self._permitted_since >= READY_SETTLE:
                self.on_start(None, Trigger.Response())
            elif now > self.ready_deadline:
                self.runner.abort(now, f"arm not ready within the ready timeout: {reason or 'motion permitted only intermittently'}")
        if self.position is not None:
            resumes, pending = self.runner.auto_resumes, self.runner.cause_pending
            cause = "" if permitted else self.stop_cause()
            if self.protocol.interactive:
                robot, patient = self.joint_torques()
                self.runner.update(now, self.position, self.force_norm, permitted, cause, velocity=self.velocity,
                                   effort=self.effort, robot_torque=robot, patient_torque=patient)
            else:
                self.runner.update(now, self.position, self.force_norm, permitted, cause)
                self.log_passive(now)
            if self.runner.auto_resumes > resumes:
                self.get_logger().warning(f"session resumed automatically: {self.runner.events[-1]['event']}")
            self.name_pending_interruption(now, pending)
        self.flush_motion()
        if self.protocol.interactive:
            self.exchange_parameters(now)
            self.publish_target()
        self.publish_events()
        if now - self._last_status >= STATUS_PERIOD:
            self._last_status = now
            self.status_pub.publish(self.status())
        if self.runner.state.finished and self.report_path is None:
            self.write_report()

    def name_pending_interruption(self, now: float, was_pending: bool) -> None:
        """Give an interruption recorded before its cause arrived that cause, once it does."""
        if not self.runner.cause_pending:
            return
        if not was_pending:
            self._cause_deadline = now + CAUSE_WAIT
        cause = self.stop_cause()
        if cause:
            self.runner.name_interruption(cause)
        elif now > self._cause_deadline:
            self.runner.name_interruption("motion not permitted by the safety supervisor (no cause reported in time)")

    def publish_events(self) -> None:
        """Publish each new report event on ``session/events``, so the bag alone tells the story."""
        for event in self.runner.events[self._events_sent:]:
            self.events_pub.publish(DiagnosticStatus(
                level=OK, name="rehab_robot: session event", message=event["event"], hardware_id="rehab_arm",
                values=[KeyValue(key="time_s", value=f"{event['time']:.3f}"),
                        KeyValue(key="session_id", value=self.session_id)]))
        self._events_sent = len(self.runner.events)

    def exchange_parameters(self, now: float) -> None:
        """Send the controller parameters the runner asks for (one atomic call); hand it the answer."""
        parameters = self.runner.take_parameters()
        if parameters is not None:
            self._pending_parameters = parameters
        if self._pending_parameters is not None and self._parameter_call is None \
                and self.parameter_client.service_is_ready():
            request = SetParametersAtomically.Request(
                parameters=[Parameter(name, value=value).to_parameter_msg()
                            for name, value in self._pending_parameters.items()])
            self.get_logger().info(f"motion_controller parameters: {self._pending_parameters}")
            self._pending_parameters = None
            self._parameter_call = self.parameter_client.call_async(request)
        # A call not answered in time: the runner aborts after its own time-out.
        if self._parameter_call is not None and self._parameter_call.done():
            call, self._parameter_call = self._parameter_call, None
            try:
                result = call.result().result
                success, reason = bool(result.successful), result.reason
            except Exception as exc:  # noqa: BLE001 - a failed call is a refusal with its reason
                success, reason = False, f"the call failed: {exc}"
            if not success:
                self.get_logger().error(f"motion_controller refused the parameters: {reason}")
            self.runner.parameters_result(now, self.position, success, reason)

    def log_passive(self, now: float) -> None:
        """Log a sample of a passive exercise and close the repetitions its runner has completed."""
        runner = self.runner
        if runner.state in (SessionState.RUNNING, SessionState.PAUSED) and runner.step_index > 0 \
                and self.velocity is not None:
            robot, patient = self.joint_torques()
            self.passive_log.add(now, self.position, self.velocity, self.force_norm, robot, patient)
        self.passive_repetitions.update(runner._started_at, runner.events, self.passive_log)

    def publish_target(self) -> None:
        """Publish the exercise's current target on ``exercise/target`` (joint positions [rad])."""
        target = self.runner.target_position()
        if target is None:
            return
        msg = JointState(name=list(self.joint_names), position=[float(x) for x in target])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.target_pub.publish(msg)

    def flush_motion(self) -> None:
        """Send the motions the runner has queued."""
        joints = getattr(self.runner, "moved_joints", [self.protocol.joint])
        while (segment := self.runner.take_motion()) is not None:
            trajectory = SampledTrajectory.from_segment(segment, TRAJECTORY_STEP)
            msg = trajectory_msg(joints, trajectory)
            # Stamped with its start: a controller that receives it late (discovery) knows.
            msg.header.stamp = self.get_clock().now().to_msg()
            self.trajectory_pub.publish(msg)

    def write_report(self) -> None:
        """Write the report of the finished session."""
        report = build_report(
            self.session_id, self.patient.patient_id, self.protocol.name, self.runner.outcome(), self.runner.metrics,
            self.provenance,
        )
        if self.protocol.interactive:
            report.update(self.runner.exercise_report())
        else:
            report.update(self.passive_repetitions.report())
        try:
            path = append_session(self.history_dir, self.patient.patient_id, history_entry(report))
            report["history"] = {"file": str(path), "updated": True, "problem": ""}
        except HistoryError as exc:
            self.get_logger().error(f"patient history not updated: {exc}")
            report["history"] = {"file": str(self.history_dir), "updated": False, "problem": str(exc)}
        self.publish_events()
        self.report_path = write_report(self.session_dir / "report.json", report)
        self.status_pub.publish(self.status())
        self.get_logger().info(
            f"session {report['ended']}: {report['end_reason']}; "
            f"{report['repetitions_completed']}/{report['repetitions_planned']} repetitions; "
            f"report: {self.report_path}"
        )

    def finished(self) -> bool:
        """Exit on our own once the report is written, when asked to."""
        return self.exit_when_done and self.report_path is not None

    def on_shutdown_request(self, executor) -> None:
        """On SIGINT/SIGTERM: stop the exercise smoothly and write the report."""
        if not self.runner.state.finished:
            self.runner.stop(time.monotonic(), "session manager shut down (SIGINT/SIGTERM)")
            self.flush_motion()
        if self.report_path is None:
            self.write_report()
        # Give DDS a moment to deliver the last motion and status before the process ends.
        deadline = time.monotonic() + 0.2
        while time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)

    # --- outputs ----------------------------------------------------------------------

    def status(self) -> DiagnosticStatus:
        """Return the session status message."""
        state = self.runner.state
        level = {SessionState.ABORTED: ERROR, SessionState.PAUSED: WARN}.get(state, OK)
        message = self.runner.pause_reason or self.runner.end_reason or self.runner.current_step
        now = time.monotonic()
        target = self.runner.current_target()
        events = self.runner.events
        # Every key is documented in docs/operator.md ("session/status"); numbers in SI units.
        values = {
            "state": state.value,
            "step": self.runner.current_step,
            "repetition": self.runner.current_repetition(),
            "repetitions_completed": self.runner.repetitions_completed,
            "repetitions_planned": self.protocol.repetitions,
            "progress": f"{self.runner.progress():.3f}",
            "elapsed_s": f"{self.runner.elapsed_time(now):.1f}",
            "remaining_s": f"{self.runner.remaining_time(now):.1f}",
            "joint": self.protocol.joint,
            "target_rad": "" if target is None else f"{target:.4f}",
            "last_event": events[-1]["event"] if events else "",
            "last_event_time_s": f"{events[-1]['time']:.3f}" if events else "",
            "patient_id": self.patient.patient_id,
            "protocol": self.protocol.name,
            "report": str(self.report_path or ""),
        }
        return DiagnosticStatus(
            level=level, name="rehab_robot: session", message=message, hardware_id="rehab_arm",
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
        )

    def report(self):
        """Diagnostics: the session status."""
        status = self.status()
        return status.level, status.message, {kv.key: kv.value for kv in status.values}


def main(args=None) -> int:
    """Entry point of ``session_manager``."""
    return run(SessionManagerNode, args)


if __name__ == "__main__":
    sys.exit(main())
