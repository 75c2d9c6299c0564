"""Tests of ``launch/session.launch.py`` against ``rehab_robot.graph``.

``launch``, ``launch_ros`` and ``launch_testing`` come from a ROS 2 distro and cannot
be installed on this development machine. So, besides compiling the file, these tests
put minimal STAND-IN modules for ``launch``, ``launch.actions``, ``launch.events``, ``launch.substitutions``,
``launch.event_handlers``, ``launch_ros.actions`` and ``launch_ros.parameter_descriptions``
into ``sys.modules``. The stand-ins do nothing but record their constructor arguments,
so the tests check what the launch file *asks for* (arguments, nodes, parameters,
handlers), not launch_ros behaviour. ``test_launch_file_runs_a_session_with_launch_ros``
runs the file for real, and only where launch_ros and launch_testing are installed.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import py_compile
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from rehab_robot import graph, launcher
from rehab_robot.errors import ConfigError
from rehab_robot.ros_env import localhost_env

LAUNCH_FILE = Path(__file__).resolve().parent.parent / "launch" / "session.launch.py"
SESSION_ID = "20250101-000000"


class Recorded:
    """Stand-in for a launch class: records its constructor arguments, nothing more."""

    def __init__(self, *args, **kwargs):
        self.args = args
        self.kwargs = kwargs

    def __repr__(self):
        return f"{type(self).__name__}({self.args}, {self.kwargs})"


class LaunchConfiguration(Recorded):
    """Stand-in of launch.substitutions.LaunchConfiguration; performs from a dict context."""

    def perform(self, context):
        return context.launch_configurations[self.args[0]]


class MatchesAction(Recorded):
    """Stand-in of launch.events.matches_action: records the action it matches."""


def stand_in_modules() -> dict[str, types.ModuleType]:
    """Return the stand-in modules, keyed by their import name."""

    def module(name, **classes):
        mod = types.ModuleType(name)
        mod.__doc__ = "STAND-IN for tests: records constructor arguments only."
        for cls_name, cls in classes.items():
            setattr(mod, cls_name, cls or type(cls_name, (Recorded,), {}))
        return mod

    names = dict.fromkeys
    logging_module = module("launch.logging")
    logging_module.get_logger = lambda name=None: logging.getLogger(name)
    modules = {
        "launch": module("launch", **names(["LaunchDescription"])),
        "launch.logging": logging_module,
        "launch.actions": module("launch.actions", **names([
            "DeclareLaunchArgument", "EmitEvent", "LogInfo", "OpaqueFunction", "RegisterEventHandler",
            "SetEnvironmentVariable", "Shutdown", "TimerAction",
        ])),
        "launch.events": module("launch.events", matches_action=MatchesAction),
        "launch.events.process": module("launch.events.process", **names(["SignalProcess"])),
        "launch.substitutions": module(
            "launch.substitutions", LaunchConfiguration=LaunchConfiguration, PathJoinSubstitution=None,
            EqualsSubstitution=None,
        ),
        "launch.conditions": module("launch.conditions", **names(["IfCondition"])),
        "launch.event_handlers": module("launch.event_handlers", **names(["OnProcessExit"])),
        "launch_ros": module("launch_ros"),
        "launch_ros.actions": module("launch_ros.actions", **names(["Node"])),
        "launch_ros.parameter_descriptions": module("launch_ros.parameter_descriptions", **names(["ParameterValue"])),
    }
    for name, mod in modules.items():
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(modules[parent], child, mod)
            modules[parent].__path__ = []  # a package, so `import launch.logging` works
    return modules


@pytest.fixture
def stubs(monkeypatch):
    """Install the stand-ins and fix the session id default; return the stand-in modules."""
    modules = stand_in_modules()
    for name, mod in modules.items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(graph, "default_session_id", lambda: SESSION_ID)
    return modules


def load_launch_file():
    spec = importlib.util.spec_from_file_location("session_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def entities_of(stubs, kind, module="launch.actions"):
    description = load_launch_file().generate_launch_description()
    assert isinstance(description, stubs["launch"].LaunchDescription)
    entities = description.args[0]
    return entities, [e for e in entities if isinstance(e, getattr(stubs[module], kind))]


def test_launch_file_compiles(tmp_path):
    """The launch file is valid Python."""
    py_compile.compile(str(LAUNCH_FILE), cfile=str(tmp_path / "session.launch.pyc"), doraise=True)


def test_one_declared_argument_per_graph_launch_argument(stubs):
    """Every graph launch argument is declared once, with the same default and description."""
    _, declared = entities_of(stubs, "DeclareLaunchArgument")
    assert [(d.args[0], d.kwargs["default_value"], d.kwargs["description"]) for d in declared] == [
        (a.name, a.default, a.description) for a in graph.launch_arguments()
    ]
    assert dict((d.args[0], d.kwargs["default_value"]) for d in declared)["session_id"] == SESSION_ID


def test_one_node_per_graph_node_with_typed_parameters(stubs):
    """One Node per NodeSpec: same package, executable, name, parameter names; Arg values are
    ParameterValue(LaunchConfiguration(arg), value_type=<arg type>), PathJoin values a typed
    PathJoinSubstitution, literals unchanged."""
    _, nodes = entities_of(stubs, "Node", "launch_ros.actions")
    by_name = {n.kwargs["name"]: n for n in nodes}
    specs = {s.name: s for s in graph.nodes()}
    assert sorted(by_name) == sorted(specs)
    types_ = {a.name: a.type for a in graph.launch_arguments()}
    ParameterValue = stubs["launch_ros.parameter_descriptions"].ParameterValue
    PathJoinSubstitution = stubs["launch.substitutions"].PathJoinSubstitution
    EqualsSubstitution = stubs["launch.substitutions"].EqualsSubstitution
    for name, spec in specs.items():
        node = by_name[name]
        assert node.kwargs["package"] == "rehab_robot"
        assert node.kwargs["executable"] == spec.executable
        assert node.kwargs["output"] == "screen"
        assert float(node.kwargs["sigterm_timeout"]) > 0 and float(node.kwargs["sigkill_timeout"]) > 0
        (parameters,) = node.kwargs["parameters"]
        assert list(parameters) == list(spec.parameters)
        for key, value in spec.parameters.items():
            given = parameters[key]
            if isinstance(value, graph.Arg):
                assert isinstance(given, ParameterValue)
                assert isinstance(given.args[0], LaunchConfiguration) and given.args[0].args == (value.name,)
                assert given.kwargs["value_type"] is types_[value.name]
            elif isinstance(value, graph.PathJoin):
                assert isinstance(given, ParameterValue) and given.kwargs["value_type"] is str
                assert isinstance(given.args[0], PathJoinSubstitution)
                parts = given.args[0].args[0]
                assert [p.args[0] if isinstance(p, LaunchConfiguration) else p for p in parts] == [
                    p.name if isinstance(p, graph.Arg) else p for p in value.parts
                ]
            elif isinstance(value, graph.ArgEquals):
                assert isinstance(given, ParameterValue) and given.kwargs["value_type"] is bool
                assert isinstance(given.args[0], EqualsSubstitution)
                configuration, expected = given.args[0].args
                assert configuration.args == (value.name,) and expected == value.value
            else:
                assert given == value
        # A node that only some arguments start carries that condition.
        condition = node.kwargs["condition"]
        if spec.only_if is None:
            assert condition is None
        else:
            assert isinstance(condition, stubs["launch.conditions"].IfCondition)
            (equals,) = condition.args
            assert equals.args[0].args == (spec.only_if.name,) and equals.args[1] == spec.only_if.value
    # Spot checks of the types that matter: '{}' stays a string, rates are floats.
    driver = by_name["hardware_driver"].kwargs["parameters"][0]
    assert driver["hardware_options"].kwargs["value_type"] is str
    assert driver["loop_rate"].kwargs["value_type"] is float
    assert by_name["session_manager"].kwargs["parameters"][0]["autostart"].kwargs["value_type"] is bool


class Event:
    def __init__(self, returncode):
        self.returncode = returncode


class Context:
    def __init__(self, is_shutdown=False, launch_configurations=None):
        self.is_shutdown = is_shutdown
        self.launch_configurations = launch_configurations or {}


def exit_handlers(stubs):
    """Return (entities, {node name: its OnProcessExit callback}) of a fresh launch description."""
    entities, handlers = entities_of(stubs, "RegisterEventHandler")
    OnProcessExit = stubs["launch.event_handlers"].OnProcessExit
    by_target = {}
    for handler in handlers:
        (on_exit,) = handler.args
        assert isinstance(on_exit, OnProcessExit)
        by_target[on_exit.kwargs["target_action"].kwargs["name"]] = on_exit.kwargs["on_exit"]
    return entities, by_target


def test_shutdown_handlers_target_the_nodes(stubs):
    """Each node has an OnProcessExit handler; the ends_graph node's exit 0 shuts down as a
    normal end, any other exit shuts down naming the node and its status."""
    entities, by_target = exit_handlers(stubs)
    nodes = [e for e in entities if isinstance(e, stubs["launch_ros.actions"].Node)]
    Shutdown = stubs["launch.actions"].Shutdown
    (ends,) = [s.name for s in graph.nodes() if s.ends_graph]
    assert sorted(by_target) == sorted(n.kwargs["name"] for n in nodes)

    TimerAction = stubs["launch.actions"].TimerAction

    def shutdown_reason(name, returncode, is_shutdown=False):
        # A fresh description each time: the first node to exit decides for the graph.
        actions = exit_handlers(stubs)[1][name](Event(returncode), Context(is_shutdown))
        if actions is None:
            return None
        (timer,) = [a for a in actions if isinstance(a, TimerAction)]
        (shutdown,) = [a for a in timer.kwargs["actions"] if isinstance(a, Shutdown)]
        return shutdown.kwargs["reason"]

    assert shutdown_reason(ends, 0) == f"node '{ends}' finished: the session has ended"
    assert shutdown_reason(ends, 2) == f"node '{ends}' died (exit status 2)"
    assert shutdown_reason("safety_supervisor", -9) == "node 'safety_supervisor' died (killed by SIGKILL)"
    assert shutdown_reason("hardware_driver", 0, is_shutdown=True) is None


def test_the_rest_of_the_graph_stops_in_stop_rank_order(stubs):
    """After the session ends, each remaining node gets SIGINT only once the previous one
    has exited: driver, controller, supervisor, recorder; then the launch shuts down."""
    _, by_target = exit_handlers(stubs)
    EmitEvent = stubs["launch.actions"].EmitEvent
    Shutdown = stubs["launch.actions"].Shutdown

    def signalled(actions):
        return [a.kwargs["event"].kwargs["process_matcher"].args[0].kwargs["name"]
                for a in actions or [] if isinstance(a, EmitEvent)]

    (ends,) = [s for s in graph.nodes() if s.ends_graph]
    order = [s.name for s in sorted(graph.nodes(), key=lambda s: s.stop_rank) if not s.ends_graph]
    seen = signalled(by_target[ends.name](Event(0), Context(False)))
    for name in order:
        assert seen == [name], f"expected SIGINT to {name}, got {seen}"
        actions = by_target[name](Event(0), Context(False))
        seen = signalled(actions)
    assert seen == [] and any(isinstance(a, Shutdown) for a in actions), "the launch ends after the last node"


def test_a_dead_node_is_named_in_the_report_and_the_bag_repaired(stubs, tmp_path, monkeypatch):
    """Under ros2 launch as under rehab-robot: once every node has exited after one died,
    the report says aborted and names it, and a killed recorder's bag is repaired."""
    entities, functions = entities_of(stubs, "OpaqueFunction")
    (prepare,) = functions
    # The prepare function and the handlers of one description share the session record.
    by_target = {}
    for handler in [e for e in entities if isinstance(e, stubs["launch.actions"].RegisterEventHandler)]:
        (on_exit,) = handler.args
        by_target[on_exit.kwargs["target_action"].kwargs["name"]] = on_exit.kwargs["on_exit"]
    monkeypatch.setattr(launcher, "check_hardware", lambda *a: None)
    monkeypatch.setattr(launcher, "check_session_files", lambda *a: None)
    texts = {a.name: a.default for a in graph.launch_arguments()}
    prepare.kwargs["function"](Context(launch_configurations={**texts, "output_dir": str(tmp_path)}))
    session = tmp_path / SESSION_ID
    (session / "report.json").write_text(json.dumps({
        "ended": "stopped", "end_reason": "session manager shut down (SIGINT/SIGTERM)",
        "events": [{"time": 3.5, "event": "session stopped"}], "duration": 3.5}))
    repaired = []
    monkeypatch.setattr(launcher, "repair_bag", lambda path: repaired.append(path) or "bag repaired")
    (session / "bag").mkdir()
    assert by_target["motion_controller"](Event(-9), Context(False)) is not None
    for name in by_target:
        if name != "motion_controller":
            code = -9 if name == "session_recorder" else 0
            by_target[name](Event(code), Context(True))
    report = json.loads((session / "report.json").read_text())
    assert report["ended"] == "aborted"
    assert report["end_reason"] == "node 'motion_controller' died (killed by SIGKILL)"
    assert report["events"][-1] == {"time": 3.5, "event": report["end_reason"]}
    assert repaired == [session / "bag"]


def test_session_is_prepared_before_any_node(stubs, tmp_path, monkeypatch):
    """An OpaqueFunction validates the arguments and creates the session folder before the
    first Node; an invalid argument is a one-line ConfigError."""
    entities, functions = entities_of(stubs, "OpaqueFunction")
    (prepare,) = functions
    first_node = next(i for i, e in enumerate(entities) if isinstance(e, stubs["launch_ros.actions"].Node))
    assert entities.index(prepare) < first_node
    function = prepare.kwargs["function"]
    texts = {a.name: a.default for a in graph.launch_arguments()}
    with pytest.raises(ConfigError, match="autostart"):
        function(Context(launch_configurations={**texts, "autostart": "maybe"}))
    monkeypatch.setattr(launcher, "check_hardware", lambda *a: None)
    monkeypatch.setattr(launcher, "check_session_files", lambda *a: None)
    function(Context(launch_configurations={**texts, "output_dir": str(tmp_path)}))
    assert (tmp_path / SESSION_ID).is_dir()


def test_discovery_stays_on_localhost_unless_the_user_chose(stubs, monkeypatch):
    """ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST is set by default, never over the user's choice."""
    def settings():
        _, actions = entities_of(stubs, "SetEnvironmentVariable")
        return [a.args for a in actions]

    monkeypatch.delenv("ROS_AUTOMATIC_DISCOVERY_RANGE", raising=False)
    monkeypatch.setenv("ROS_DISTRO", "jazzy")
    assert settings() == [("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")]
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "SUBNET")
    assert settings() == []
    monkeypatch.setenv("ROS_DISTRO", "humble")
    monkeypatch.delenv("ROS_LOCALHOST_ONLY", raising=False)
    assert settings() == [("ROS_LOCALHOST_ONLY", "1")]


RUN_LAUNCH = textwrap.dedent(
    """
    import sys
    from launch import LaunchService
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    path, output_dir = sys.argv[1:3]
    service = LaunchService()
    service.include_launch_description(IncludeLaunchDescription(
        PythonLaunchDescriptionSource(path),
        launch_arguments={"hardware": "sim", "output_dir": output_dir, "session_id": "launch_test"}.items(),
    ))
    sys.exit(service.run())
    """
)


@pytest.mark.integration
def test_launch_file_runs_a_session_with_launch_ros(tmp_path, domain_id):
    """On a ROS 2 machine: the launch file runs a complete simulated session and shuts down
    by itself when the session manager exits, leaving a completed report and a bag."""
    # Not `launch` itself: the source tree's launch/ folder would pass for it.
    missing = [m for m in ("launch_ros", "launch_testing") if importlib.util.find_spec(m) is None]
    if missing:
        reason = (
            f"launch_ros is not installed here: {', '.join(missing)} missing (they come from a ROS 2 "
            "distro, not PyPI); the launch file was checked against stand-ins instead"
        )
        print(reason)
        pytest.skip(reason)
    script = tmp_path / "run_launch.py"
    script.write_text(RUN_LAUNCH)
    done = subprocess.run(
        [sys.executable, str(script), str(LAUNCH_FILE), str(tmp_path / "sessions")],
        env=localhost_env(domain_id), capture_output=True, text=True, timeout=150,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    session = tmp_path / "sessions" / "launch_test"
    report = json.loads((session / "report.json").read_text())
    assert report["ended"] == "completed", report
    assert (session / "bag" / "metadata.yaml").exists()
    assert "finished: the session has ended" in done.stdout + done.stderr
