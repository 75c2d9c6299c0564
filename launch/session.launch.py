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
and when any other node exits (it died). Differences from ``rehab-robot run``:

* ``ros2 launch`` sends SIGINT to every node at once on shutdown; it cannot stop them
  in ``stop_rank`` order. Each node is still safe on its own SIGINT (the driver brings
  the arm to rest), but the bag may miss the last moments of the stop. Use
  ``rehab-robot run`` when the recording of the stop matters.
* DDS discovery: ``ROS_AUTOMATIC_DISCOVERY_RANGE`` is set to ``LOCALHOST`` (and
  ``ROS_LOCALHOST_ONLY=1`` on distros older than Jazzy) unless the user already set it,
  so by default the arm's topics stay on this machine while a user who deliberately
  chose ``SUBNET`` keeps that choice. ``ROS_DOMAIN_ID`` is left to the user.
"""

import os

from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    LogInfo,
    OpaqueFunction,
    RegisterEventHandler,
    SetEnvironmentVariable,
    Shutdown,
)
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from rehab_robot import graph, launcher
from rehab_robot.ros_env import OLDER_DISTROS

#: Seconds after SIGINT before SIGTERM, and after SIGTERM before SIGKILL (as rehab-robot).
SIGTERM_TIMEOUT = str(launcher.SIGINT_TIMEOUT)
SIGKILL_TIMEOUT = str(launcher.SIGTERM_TIMEOUT)


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
    return value


def prepare_session(context):
    """Validate the arguments and files and create the session folder, before any node."""
    texts = {a.name: LaunchConfiguration(a.name).perform(context) for a in graph.launch_arguments()}
    plan = launcher.plan_session(texts)  # raises a one-line RehabRobotError for user errors
    plan.create_folder()
    return [LogInfo(msg=f"rehab_robot: session folder {plan.session_dir.resolve()}")]


def on_node_exit(spec):
    """Return the OnProcessExit callback of ``spec``: shut the launch down, saying why."""

    def handle(event, context):
        if context.is_shutdown:
            return None  # nodes exiting during the shutdown are expected
        if spec.ends_graph and event.returncode == 0:
            reason = f"node '{spec.name}' finished: the session has ended"
        else:
            reason = f"node '{spec.name}' died ({launcher.describe_exit(event.returncode)})"
        return [LogInfo(msg=f"rehab_robot: {reason}; shutting down"), Shutdown(reason=reason)]

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
    actions.append(OpaqueFunction(function=prepare_session))
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
        )
        actions.append(node)
        actions.append(RegisterEventHandler(OnProcessExit(target_action=node, on_exit=on_node_exit(spec))))
    return LaunchDescription(actions)
