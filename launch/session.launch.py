"""Start a rehab_robot session with launch_ros, on a ROS 2 machine.

    ros2 launch rehab_robot session.launch.py hardware:=sim patient:=P.yaml protocol:=Q.yaml

Everything comes from :mod:`rehab_robot.graph` (the same description ``rehab-robot run``
uses): one launch argument per ``graph.launch_arguments()``, one Node per
``graph.nodes()``, each parameter typed like its launch argument (so
``hardware_options:='{}'`` reaches the driver as the string ``'{}'``).

Before any node starts, the arguments, backend and files are validated and the
session folder ``<output_dir>/<session_id>`` is created (``rehab_robot.launcher.plan_session``);
an invalid argument ends the launch with one error line.

The launch shuts down when the session manager exits (status 0: the session ended)
and when any other node exits (it died). As with ``rehab-robot run``, a node that dies
is named on the terminal (as an error) and in the report, which is marked ``aborted``;
once every node has exited, a bag whose recorder was killed is repaired, and an aborted
session is logged as an error. Differences from ``rehab-robot run``:

* When the session ends or a node dies, the other nodes are stopped in ``stop_rank``
  order, as by ``rehab-robot run``. On Ctrl-C, however, the terminal sends SIGINT to
  every node at once (and launch does too): each node is safe on its own SIGINT (the
  session writes its report, the driver brings the arm to rest), but the bag may miss
  the last moments of the stop. Use ``rehab-robot run`` when the recording of a
  Ctrl-C stop matters.
* ``ros2 launch`` exits with status 0 even when a node died; the terminal and the
  report say so (``aborted``, as an error line). ``rehab-robot run`` exits 1.
* DDS discovery: ``ROS_AUTOMATIC_DISCOVERY_RANGE`` is set to ``LOCALHOST`` (and
  ``ROS_LOCALHOST_ONLY=1`` on distros older than Jazzy) unless the user already set it,
  so by default the arm's topics stay on this machine while a user who deliberately
  chose ``SUBNET`` keeps that choice. ``ROS_DOMAIN_ID`` is left to the user.
"""

import os
import signal

import launch.logging
from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    LogInfo,
    OpaqueFunction,
    RegisterEventHandler,
    SetEnvironmentVariable,
    Shutdown,
    TimerAction,
)
from launch.event_handlers import OnProcessExit
from launch.events import matches_action
from launch.events.process import SignalProcess
from launch.conditions import IfCondition
from launch.substitutions import EqualsSubstitution, LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from rehab_robot import graph, launcher
from rehab_robot.ros_env import OLDER_DISTROS

#: Seconds after SIGINT before SIGTERM, and after SIGTERM before SIGKILL (as rehab-robot).
SIGTERM_TIMEOUT = str(launcher.SIGINT_TIMEOUT)
SIGKILL_TIMEOUT = str(launcher.SIGTERM_TIMEOUT)
#: Seconds the ordered stop may take before the launch shuts down whatever still runs.
ORDERED_STOP_TIMEOUT = 30.0


def discovery_actions():
    """Keep DDS on localhost unless the user already chose a discovery range."""
    actions = []
    if not os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE"):
        actions.append(SetEnvironmentVariable("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST"))
    older = os.environ.get("ROS_DISTRO", "").lower() in OLDER_DISTROS
    if older and not os.environ.get("ROS_LOCALHOST_ONLY"):
        actions.append(SetEnvironmentVariable("ROS_LOCALHOST_ONLY", "1"))
    return actions


def parameter_value(value, argument_types):
    """Return a graph parameter value as launch_ros wants it, typed like its argument."""
    if isinstance(value, graph.Arg):
        return ParameterValue(LaunchConfiguration(value.name), value_type=argument_types[value.name])
    if isinstance(value, graph.PathJoin):
        parts = [LaunchConfiguration(p.name) if isinstance(p, graph.Arg) else p for p in value.parts]
        return ParameterValue(PathJoinSubstitution(parts), value_type=str)
    if isinstance(value, graph.ArgEquals):
        return ParameterValue(argument_equals(value), value_type=bool)
    return value


def argument_equals(condition):
    """Return the substitution that is "true" when a launch argument has the given value."""
    return EqualsSubstitution(LaunchConfiguration(condition.name), condition.value)


class SessionRecord:
    """What the launch knows about the session, to complete its folder as rehab-robot does."""

    def __init__(self, specs):
        self.plan = None
        self.died = None
        self.reason = ""
        self.returncodes = {}
        self.specs = sorted(specs, key=lambda spec: spec.stop_rank)
        self.node_names = {spec.name for spec in self.specs}
        self.node_actions = {}
        self.signalled = set()

    def stop_next(self):
        """Return the actions that stop the next running node in stop order, or shut the
        launch down when none is left."""
        running = [s for s in self.specs if s.name not in self.returncodes]
        if not running:
            return [Shutdown(reason=self.reason)]
        following = running[0]
        if following.name in self.signalled:
            return []  # already asked: its exit continues the chain
        self.signalled.add(following.name)
        node = self.node_actions[following.name]
        return [EmitEvent(event=SignalProcess(signal_number=signal.SIGINT, process_matcher=matches_action(node)))]

    def prepare(self, context):
        """Validate the arguments and files and create the session folder, before any node."""
        texts = {a.name: LaunchConfiguration(a.name).perform(context) for a in graph.launch_arguments()}
        self.plan = launcher.plan_session(texts)  # raises a one-line RehabRobotError for user errors
        # Only the nodes these arguments start take part in the ordered stop and the record.
        active = {spec.name for spec in graph.active_nodes(texts)}
        self.specs = [spec for spec in self.specs if spec.name in active]
        self.node_names = active
        self.plan.create_folder()
        return [LogInfo(msg=f"rehab_robot: session folder {self.plan.session_dir.resolve()}")]

    def finish(self):
        """Once every node has exited: repair the bag, name a dead node in the report, and
        log an aborted session as an error."""
        logger = launch.logging.get_logger("rehab_robot")
        if self.plan is None:
            return
        recorder_code = self.returncodes.get(self.plan.recorder)
        for line in launcher.finish_session_record(self.plan, self.died, self.reason, recorder_code):
            logger.info(line)
        report = launcher.load_report(self.plan.report_path)
        if report is None:
            logger.error(f"no report was written ({self.plan.report_path})")
        elif report.get("ended") == "aborted":
            logger.error(f"session aborted: {report.get('end_reason')}; report: {self.plan.report_path}")
        else:
            logger.info(f"session {report.get('ended')}: {report.get('end_reason')}; report: {self.plan.report_path}")


def on_node_exit(spec, record):
    """Return the OnProcessExit callback of ``spec``.

    The first node to exit on its own (the session manager when the session has ended, or
    a node that died) starts the ordered stop: the remaining nodes get SIGINT one at a
    time in ``stop_rank`` order, each after the previous one has exited (the session ends,
    the driver brings the arm to rest, the recorder stops last), then the launch shuts
    down. Once the last node has exited, the session folder is completed.
    """

    def handle(event, context):
        record.returncodes[spec.name] = event.returncode
        actions = []
        if not context.is_shutdown and not record.reason:
            if spec.ends_graph and event.returncode == 0:
                record.reason = f"node '{spec.name}' finished: the session has ended"
                actions.append(LogInfo(msg=f"rehab_robot: {record.reason}; stopping the other nodes in order"))
            else:
                record.died = spec.name
                record.reason = f"node '{spec.name}' died ({launcher.describe_exit(event.returncode)})"
                launch.logging.get_logger("rehab_robot").error(f"{record.reason}; stopping the other nodes in order")
            # However a node hangs, the launch ends: launch's own SIGTERM/SIGKILL escalation follows.
            actions.append(TimerAction(period=ORDERED_STOP_TIMEOUT, actions=[Shutdown(reason=record.reason)]))
        if record.reason and not context.is_shutdown:
            actions += record.stop_next()
        if set(record.returncodes) >= record.node_names:
            record.finish()
        return actions or None

    return handle


def generate_launch_description():
    """Return the session launch description built from rehab_robot.graph."""
    arguments = graph.launch_arguments()
    argument_types = {a.name: a.type for a in arguments}
    actions = [
        DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
        for a in arguments
    ]
    actions += discovery_actions()
    record = SessionRecord(graph.nodes())
    actions.append(OpaqueFunction(function=record.prepare))
    # Start the highest stop_rank first, as rehab-robot does: the recorder is up before the session.
    for spec in sorted(graph.nodes(), key=lambda s: -s.stop_rank):
        node = Node(
            package=graph.PACKAGE,
            executable=spec.executable,
            name=spec.name,
            parameters=[{k: parameter_value(v, argument_types) for k, v in spec.parameters.items()}],
            output="screen",
            sigterm_timeout=SIGTERM_TIMEOUT,
            sigkill_timeout=SIGKILL_TIMEOUT,
            condition=None if spec.only_if is None else IfCondition(argument_equals(spec.only_if)),
        )
        actions.append(node)
        record.node_actions[spec.name] = node
        actions.append(RegisterEventHandler(OnProcessExit(target_action=node, on_exit=on_node_exit(spec, record))))
    return LaunchDescription(actions)
