"""The node graph of a rehab_robot session, described once.

Both starters read this module:
  * ``launch/session.launch.py`` turns it into a launch_ros description;
  * ``rehab-robot`` (:mod:`rehab_robot.launcher`) starts the same processes without launch_ros.

Parameter values are literals, :class:`Arg` (the value of a launch argument) or
:class:`PathJoin` (a path built from arguments and literals).
"""

from __future__ import annotations

import datetime
import functools
import math
import os.path
from dataclasses import dataclass, field
from typing import Mapping, Optional, Union

from rehab_robot import resources
from rehab_robot.errors import ConfigError

PACKAGE = resources.PACKAGE


@dataclass(frozen=True)
class Arg:
    """The value of the launch argument ``name``."""

    name: str


@dataclass(frozen=True)
class PathJoin:
    """A filesystem path joined from launch arguments and literal parts."""

    parts: tuple[Union[str, Arg], ...]


@dataclass(frozen=True)
class ArgEquals:
    """True when the launch argument ``name`` is ``value`` (a bool parameter)."""

    name: str
    value: str


ParameterValue = Union[str, int, float, bool, list, Arg, PathJoin, ArgEquals]


@dataclass(frozen=True)
class LaunchArgument:
    """A launch argument: ``name:=value`` on ``ros2 launch`` and ``rehab-robot``."""

    name: str
    default: str
    description: str
    type: type = str
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class NodeSpec:
    """One node of the graph, started as its own process.

    Attributes:
        name: ROS node name; also the output prefix of ``rehab-robot``.
        executable: console script of the ``rehab_robot`` package.
        parameters: ROS parameters given to the node at start.
        stop_rank: order of shutdown, lowest first. The session manager stops first
            (it ends the exercise), the driver next (it brings the arm to rest and holds),
            the recorder last (so the bag holds the stop).
        ends_graph: when this node exits with status 0, the whole graph shuts down
            normally (the session manager, once its session has ended).
        only_if: the node is part of the graph only when this launch argument has this
            value (e.g. the F/T sensor driver with ``ft_sensor:=netft``); None: always.
    """

    name: str
    executable: str
    parameters: Mapping[str, ParameterValue] = field(default_factory=dict)
    stop_rank: int = 0
    ends_graph: bool = False
    only_if: Optional[ArgEquals] = None


@dataclass(frozen=True)
class TopicSpec:
    """A topic of the graph, for the nodes' QoS, the recorder and the documentation.

    Attributes:
        name: Topic name, relative to the node namespace.
        type: Message type, e.g. ``sensor_msgs/msg/JointState``.
        description: Content, with units.
        streaming: High-rate state where only the newest sample matters: our own
            subscribers take it best effort, so a lost sample is a gap, never a stall
            while the reliable protocol repairs it. Published reliable, like the rest.
        keep_last_for_late_joiners: The last message is kept for subscribers that
            match after it was sent (transient local), so a command is not lost to
            discovery still under way; its receivers check its stamp for staleness.
        depth: History depth of a non-streaming topic: 1 for a command where only the
            last one counts, more for events, where two sent in a row (a stop, then
            permission again) must both arrive.
    """

    name: str
    type: str
    description: str
    streaming: bool = False
    keep_last_for_late_joiners: bool = False
    depth: int = 10


@functools.lru_cache(maxsize=1)
def default_session_id() -> str:
    """Return this process's default session id, its start time: ``YYYYmmdd-HHMMSS``.

    Computed once, so every node resolved by one starter lands in the same folder.
    """
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


def launch_arguments() -> list[LaunchArgument]:
    """Return the launch arguments of the session graph, with their defaults."""
    return [
        LaunchArgument("hardware", "sim", "hardware backend name (see `rehab-robot backends`)"),
        LaunchArgument("hardware_options", "{}", "YAML mapping of backend keyword options"),
        LaunchArgument("patient", str(resources.example_patient()), "patient profile YAML file"),
        LaunchArgument("protocol", str(resources.example_protocol()), "exercise protocol YAML file"),
        LaunchArgument("robot_description", str(resources.default_urdf()), "URDF file of the arm"),
        LaunchArgument("output_dir", "sessions", "directory that receives one folder per session"),
        LaunchArgument("history_dir", "", "folder of the per-patient history files (empty: <output_dir>/history)"),
        LaunchArgument("session_id", default_session_id(), "name of this session's folder"),
        LaunchArgument("autostart", "true", "start the exercise as soon as the arm is ready", bool),
        LaunchArgument("exit_when_done", "true", "shut the graph down when the session ends", bool),
        LaunchArgument("pause_timeout", "300.0", "abort a session paused longer than this [s]", float),
        LaunchArgument("loop_rate", "500.0", "driver loop and joint_states rate [Hz]", float),
        LaunchArgument("ft_sensor", "none", "cuff force/torque source: none (the hardware backend's "
                       "reading) or netft (the ATI Net F/T driver node, docs/hardware/netft.md)",
                       choices=("none", "netft")),
        LaunchArgument("ft_sensor_address", "192.168.1.1", "IP address of the Net F/T (ft_sensor:=netft)"),
        LaunchArgument("control_domain", "auto", "DDS domain on which the control chain (drivers, supervisor, "
                       "controller) talks, apart from tools: auto (ROS_DOMAIN_ID + 100, or - 100 above 132), "
                       "public (everything on ROS_DOMAIN_ID), or a domain id; its topics are mirrored on ROS_DOMAIN_ID"),
    ]


#: Every topic of the graph; all of them are recorded to the session bag.
RECORDED_TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("joint_states", "sensor_msgs/msg/JointState",
              "measured position [rad], velocity [rad/s], effort [N·m]", streaming=True),
    TopicSpec("ft_sensor/wrench", "geometry_msgs/msg/WrenchStamped",
              "force [N] / torque [N·m] applied by the patient at the cuff", streaming=True),
    TopicSpec("joint_commands", "sensor_msgs/msg/JointState",
              "drive setpoints: position [rad], velocity [rad/s], feed-forward effort [N·m]", streaming=True),
    TopicSpec("joint_trajectory", "trajectory_msgs/msg/JointTrajectory",
              "trajectory sent by the session manager to the controller; header.stamp = start time",
              keep_last_for_late_joiners=True, depth=1),
    TopicSpec("safety/heartbeat", "std_msgs/msg/Bool", "True while motion is permitted", streaming=True),
    TopicSpec("session/status", "diagnostic_msgs/msg/DiagnosticStatus", "session state and progress"),
    TopicSpec("session/events", "diagnostic_msgs/msg/DiagnosticStatus",
              "each report event as it happens (message: the event; values: time_s since the start, session_id)"),
    TopicSpec("safety/status", "diagnostic_msgs/msg/DiagnosticStatus",
              "safety supervisor verdict, its cause and the operator's reset count; sent on change",
              keep_last_for_late_joiners=True),
    TopicSpec("hardware/status", "diagnostic_msgs/msg/DiagnosticStatus",
              "driver state (starting, holding, following, fault) and the fault's joint and reason; sent on change",
              keep_last_for_late_joiners=True),
    TopicSpec("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", "health of every node"),
    TopicSpec("exercise/target", "sensor_msgs/msg/JointState",
              "the exercise's current target shown to the patient: joint positions [rad], 50 Hz while it runs",
              depth=1),
    TopicSpec("controller/events", "diagnostic_msgs/msg/DiagnosticStatus",
              "motion controller events: spasm, soft_wall_limit, mode (values: joint, force [N] or torque [N·m], "
              "onset [s], reaction)", keep_last_for_late_joiners=True),
)


def session_dir() -> PathJoin:
    """Return the folder of one session: ``<output_dir>/<session_id>``."""
    return PathJoin((Arg("output_dir"), Arg("session_id")))


def nodes() -> list[NodeSpec]:
    """Return every node of the session graph."""
    urdf = Arg("robot_description")
    return [
        NodeSpec(
            name="hardware_driver",
            executable="hardware_driver",
            parameters={
                "hardware": Arg("hardware"),
                "hardware_options": Arg("hardware_options"),
                "robot_description": urdf,
                "loop_rate": Arg("loop_rate"),
                # A separate F/T sensor driver publishes ft_sensor/wrench instead.
                "publish_wrench": ArgEquals("ft_sensor", "none"),
                "control_domain": Arg("control_domain"),
            },
            stop_rank=1,
        ),
        NodeSpec(
            name="ft_sensor_driver",
            executable="ft_sensor_driver",
            parameters={"sensor_address": Arg("ft_sensor_address"), "robot_description": urdf,
                        "control_domain": Arg("control_domain")},
            # Stops with the supervisor: wrenches flow (and are recorded) until the arm is at rest.
            stop_rank=3,
            only_if=ArgEquals("ft_sensor", "netft"),
        ),
        NodeSpec(
            name="safety_supervisor",
            executable="safety_supervisor",
            parameters={"robot_description": urdf, "patient": Arg("patient"), "control_domain": Arg("control_domain")},
            stop_rank=3,
        ),
        NodeSpec(
            name="motion_controller",
            executable="motion_controller",
            parameters={"robot_description": urdf, "control_domain": Arg("control_domain")},
            stop_rank=2,
        ),
        NodeSpec(
            name="session_manager",
            executable="session_manager",
            parameters={
                "robot_description": urdf,
                "patient": Arg("patient"),
                "protocol": Arg("protocol"),
                "session_dir": session_dir(),
                "autostart": Arg("autostart"),
                "exit_when_done": Arg("exit_when_done"),
                "pause_timeout": Arg("pause_timeout"),
                "history_dir": Arg("history_dir"),
                "hardware": Arg("hardware"),
                "hardware_options": Arg("hardware_options"),
                "wait_for_nodes": ["motion_controller", "session_recorder"],
            },
            stop_rank=0,
            ends_graph=True,
        ),
        NodeSpec(
            name="session_recorder",
            executable="session_recorder",
            parameters={
                "bag_path": PathJoin((Arg("output_dir"), Arg("session_id"), "bag")),
                "topics": [t.name for t in RECORDED_TOPICS],
                "types": [t.type for t in RECORDED_TOPICS],
                "best_effort_topics": [t.name for t in RECORDED_TOPICS if t.streaming],
            },
            stop_rank=4,
        ),
    ]


def convert_argument(argument: LaunchArgument, text: str) -> Union[str, float, bool]:
    """Convert the text of a launch argument to its type.

    Raises:
        ConfigError: naming the argument and what is allowed, if ``text`` does not fit.
    """
    if argument.type is bool:
        lowered = text.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        raise ConfigError(f"launch argument {argument.name}:={text!r}: allowed values are true, false")
    if argument.choices and text not in argument.choices:
        raise ConfigError(f"launch argument {argument.name}:={text!r}: allowed values are "
                          f"{', '.join(argument.choices)}")
    if argument.type is float:
        try:
            number = float(text)
        except ValueError:
            number = float("nan")
        if not math.isfinite(number):
            raise ConfigError(f"launch argument {argument.name}:={text!r}: a finite number is required")
        return number
    return text


def resolve(value: ParameterValue, arguments: Mapping[str, object]) -> ParameterValue:
    """Return ``value`` with every :class:`Arg` replaced by its value in ``arguments``."""
    if isinstance(value, Arg):
        return arguments[value.name]
    if isinstance(value, PathJoin):
        return os.path.join(*(str(resolve(part, arguments)) for part in value.parts))
    if isinstance(value, ArgEquals):
        return str(arguments[value.name]) == value.value
    return value


def active_nodes(arguments: Mapping[str, str]) -> list[NodeSpec]:
    """Return the nodes of the graph for the launch argument texts ``arguments``
    (missing ones take their default): those without ``only_if``, and those whose
    condition holds."""
    defaults = {a.name: a.default for a in launch_arguments()}
    texts = {**defaults, **arguments}
    return [spec for spec in nodes() if spec.only_if is None or texts[spec.only_if.name] == spec.only_if.value]


def node_parameters(node: NodeSpec, arguments: Mapping[str, str]) -> dict[str, object]:
    """Return the parameters of ``node`` for the launch argument texts ``arguments``.

    Arguments missing from ``arguments`` take their default.

    Raises:
        ConfigError: if an argument is unknown or its text does not fit its type.
    """
    declared = {a.name: a for a in launch_arguments()}
    unknown = sorted(set(arguments) - set(declared))
    if unknown:
        raise ConfigError(
            f"unknown launch argument(s) {', '.join(unknown)}; allowed: {', '.join(sorted(declared))}"
        )
    typed = {
        name: convert_argument(arg, arguments.get(name, arg.default)) for name, arg in declared.items()
    }
    return {name: resolve(value, typed) for name, value in node.parameters.items()}


def topic_spec(topic: str) -> Optional[TopicSpec]:
    """Return the graph's description of ``topic``, or None if it is not a graph topic."""
    return next((t for t in RECORDED_TOPICS if t.name == topic), None)
