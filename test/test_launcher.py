"""Tests of ``rehab-robot`` (rehab_robot.launcher).

ProcessGraph is exercised with small stand-in Python processes written to tmp_path:
they print, trap SIGINT/SIGTERM and append ``<name> <SIGNAL>`` to an order file when
stopped, or exit / get SIGKILLed on cue. The CLI is run as a subprocess, as a user would.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from rehab_robot import graph, launcher
from rehab_robot.errors import ConfigError
from rehab_robot.launcher import ProcessGraph, ProcessSpec, ros_params_yaml
from rehab_robot.ros_env import localhost_env

CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    name, order_file, mode = sys.argv[1:4]

    def stopped(signum, frame):
        with open(order_file, "a") as f:
            f.write(f"{name} {signal.Signals(signum).name}\\n")
        sys.exit(0)

    signal.signal(signal.SIGINT, signal.SIG_IGN if mode == "ignore_sigint" else stopped)
    signal.signal(signal.SIGTERM, stopped)
    print(f"hello from {name}", flush=True)
    print(f"warning from {name}", file=sys.stderr, flush=True)
    with open(f"{order_file}.{name}.ready", "w") as f:  # handlers are installed now
        f.write(str(os.getpgid(0) == os.getpid()))
    kind, _, rest = mode.partition(":")
    if kind in ("exit", "sigkill"):  # act only once every sibling traps its signals
        import glob
        while len(glob.glob(f"{order_file}.*.ready")) < int(os.environ.get("EXPECT_READY", "0")):
            time.sleep(0.01)
    if kind == "exit":
        delay, code = rest.split(":")
        time.sleep(float(delay))
        sys.exit(int(code))
    if kind == "sigkill":
        time.sleep(float(rest))
        os.kill(os.getpid(), signal.SIGKILL)
    while True:
        time.sleep(0.02)
    """
)


@pytest.fixture
def stand_in(tmp_path):
    """Return a factory of ProcessSpecs running the stand-in child, and the order file."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    order = tmp_path / "order.txt"

    def make(name, stop_rank, mode="wait", ends_graph=False):
        command = [sys.executable, str(script), name, str(order), mode]
        return ProcessSpec(name, command, None, stop_rank, ends_graph)

    make.order = order
    return make


def stop_order(order: Path) -> list[str]:
    return order.read_text().split("\n")[:-1] if order.exists() else []


def run_graph(specs, timeout=10.0, **kwargs):
    env = {**os.environ, "EXPECT_READY": str(len(specs))}
    specs = [ProcessSpec(s.name, s.command, env, s.stop_rank, s.ends_graph) for s in specs]
    out, err = io.StringIO(), io.StringIO()
    graph_ = ProcessGraph(specs, out=out, err=err, sigint_timeout=2.0, sigterm_timeout=1.0, **kwargs)
    result = graph_.run(timeout=timeout, handle_signals=False)
    return result, out.getvalue(), err.getvalue()


# --------------------------------------------------------------------------- ProcessGraph

DRIVER = textwrap.dedent(
    """
    import json, sys
    from rehab_robot.launcher import ProcessGraph, ProcessSpec
    specs = [ProcessSpec(**s) for s in json.loads(sys.argv[1])]
    result = ProcessGraph(specs, sigint_timeout=1.0, sigterm_timeout=2.0).run(timeout=15)
    sys.exit(result.status)
    """
)


def test_ctrl_c_stops_nodes_one_by_one_in_stop_rank_order(stand_in, tmp_path):
    """A terminal Ctrl-C (SIGINT to the launcher's process group) reaches only the launcher,
    which stops the nodes in ascending stop_rank and escalates to SIGTERM for a node that
    ignores SIGINT; the launcher exits 130."""
    specs = [
        stand_in("b", 3),
        stand_in("d", 2, mode="ignore_sigint"),
        stand_in("c", 0),
        stand_in("a", 1),
    ]
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    payload = json.dumps([dict(name=s.name, command=s.command, stop_rank=s.stop_rank) for s in specs])
    proc = subprocess.Popen(
        [sys.executable, str(driver), payload],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # the test plays the terminal: its Ctrl-C hits this group
    )
    ready = [Path(f"{stand_in.order}.{s.name}.ready") for s in specs]
    deadline = time.monotonic() + 10
    while not all(r.exists() and r.read_text() for r in ready):
        assert time.monotonic() < deadline, "stand-in nodes did not start"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 128 + signal.SIGINT, err
    assert stop_order(stand_in.order) == ["c SIGINT", "a SIGINT", "d SIGTERM", "b SIGINT"]
    assert all(r.read_text() == "True" for r in ready), "each node leads its own process group"
    assert "received SIGINT; stopping the nodes" in err
    assert "node 'd' did not stop within 1 s of SIGINT; sending SIGTERM" in err
    assert "[a] hello from a" in out and "[a] warning from a" in err
    assert "Traceback" not in out + err


def test_node_killed_is_named_and_the_others_are_stopped_in_order(stand_in):
    """A node killed by SIGKILL: one clear line naming it, the rest stopped in order, status 1."""
    specs = [stand_in("late", 2), stand_in("victim", 1, mode="sigkill:0.3"), stand_in("early", 0)]
    result, out, err = run_graph(specs)
    assert result.status == 1 and result.reason == "died" and result.died == "victim"
    assert "rehab-robot: node 'victim' died (killed by SIGKILL); stopping the other nodes" in err
    assert stop_order(stand_in.order) == ["early SIGINT", "late SIGINT"]
    assert result.returncodes["victim"] == -signal.SIGKILL


def test_ends_graph_node_failing_is_a_death(stand_in):
    """The ends_graph node exiting with a non-zero status is not a normal end."""
    specs = [stand_in("session", 0, mode="exit:0.2:3", ends_graph=True), stand_in("driver", 1)]
    result, out, err = run_graph(specs)
    assert result.status == 1 and result.died == "session"
    assert "node 'session' exited unexpectedly (exit status 3)" in err
    assert stop_order(stand_in.order) == ["driver SIGINT"]


def test_ends_graph_node_exit_0_ends_the_graph_normally(stand_in):
    """Exit 0 of the ends_graph node stops the others in order; status 0."""
    specs = [
        stand_in("recorder", 4),
        stand_in("session", 0, mode="exit:0.3:0", ends_graph=True),
        stand_in("driver", 1),
    ]
    result, out, err = run_graph(specs)
    assert (result.status, result.reason, result.died) == (0, "ended", None)
    assert stop_order(stand_in.order) == ["driver SIGINT", "recorder SIGINT"]
    assert "node 'session' finished; stopping the other nodes" in err


def test_output_lines_are_prefixed_with_the_node_name(stand_in):
    """stdout lines go to out, stderr lines to err, each prefixed ``[name] ``."""
    specs = [stand_in("alpha", 0, mode="exit:0.3:0", ends_graph=True), stand_in("beta", 1)]
    result, out, err = run_graph(specs)
    assert "[alpha] hello from alpha\n" in out and "[beta] hello from beta\n" in out
    assert "[alpha] warning from alpha\n" in err and "[beta] warning from beta\n" in err


def test_timeout_stops_everything_and_fails(stand_in):
    """A run past its timeout stops every node and fails with a clear line."""
    result, out, err = run_graph([stand_in("a", 0), stand_in("b", 1)], timeout=0.5)
    assert (result.status, result.reason) == (1, "timeout")
    assert "timed out after 0.5 s; stopping the nodes" in err
    assert stop_order(stand_in.order) == ["a SIGINT", "b SIGINT"]


def test_a_node_that_cannot_start_stops_the_started_ones(stand_in, tmp_path):
    """A missing executable fails the start; nodes already started are stopped."""
    missing = ProcessSpec("ghost", [str(tmp_path / "no-such-program")], None, 0)
    result, out, err = run_graph([stand_in("a", 1), missing])
    assert (result.status, result.reason) == (1, "start_failed")
    assert f"cannot start node 'ghost' ({tmp_path / 'no-such-program'}): No such file or directory" in err
    # 'a' may get its SIGINT before it traps it: what matters is that it was stopped.
    assert result.returncodes["a"] is not None and result.returncodes["ghost"] is None


# --------------------------------------------------------------------------- parameters


def test_params_yaml_keeps_every_type():
    """Strings stay strings even when they look like YAML; floats stay doubles; bools typed."""
    params = {
        "hardware_options": "{}",
        "flag_text": "true",
        "number_text": "500",
        "loop_rate": 500.0,
        "tiny": 1e-5,
        "autostart": True,
        "count": 3,
        "topics": ["joint_states", "/diagnostics"],
        "gains": [1, 2.5],
    }
    loaded = yaml.safe_load(ros_params_yaml(params, "n"))["/**"]["ros__parameters"]
    assert loaded == {**params, "gains": [1.0, 2.5]}
    assert [type(loaded[k]) for k in params] == [str, str, str, float, float, bool, int, list, list]
    assert type(loaded["gains"][0]) is float


def test_params_yaml_of_the_graph_nodes():
    """Every graph node's parameters survive the file with their launch argument types."""
    arguments = {"hardware_options": "{}", "loop_rate": "250", "autostart": "False"}
    for spec in graph.nodes():
        params = graph.node_parameters(spec, arguments)
        loaded = yaml.safe_load(ros_params_yaml(params, spec.name))["/**"]["ros__parameters"]
        assert loaded == params
        assert {k: type(v) for k, v in loaded.items()} == {k: type(v) for k, v in params.items()}
    driver = graph.node_parameters(next(s for s in graph.nodes() if s.name == "hardware_driver"), arguments)
    assert driver["hardware_options"] == "{}" and driver["loop_rate"] == 250.0


def test_ft_sensor_argument_adds_the_sensor_node_and_silences_the_drivers_wrench():
    """ft_sensor:=netft starts ft_sensor_driver (with its address) and the driver stops
    publishing the backend's wrench; the default keeps today's graph; a bad value is refused."""
    names = [spec.name for spec in graph.active_nodes({})]
    assert "ft_sensor_driver" not in names and "hardware_driver" in names
    driver = next(s for s in graph.nodes() if s.name == "hardware_driver")
    assert graph.node_parameters(driver, {})["publish_wrench"] is True

    arguments = {"ft_sensor": "netft", "ft_sensor_address": "127.0.0.1"}
    active = {spec.name: spec for spec in graph.active_nodes(arguments)}
    assert "ft_sensor_driver" in active
    assert graph.node_parameters(driver, arguments)["publish_wrench"] is False
    assert graph.node_parameters(active["ft_sensor_driver"], arguments)["sensor_address"] == "127.0.0.1"

    with pytest.raises(ConfigError, match=r"ft_sensor:='ati'.*allowed values are none, netft"):
        graph.node_parameters(driver, {"ft_sensor": "ati"})


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_params_yaml_round_trips_any_string(text):
    """Any string, with quotes, backslashes, control or astral characters, comes back intact."""
    loaded = yaml.safe_load(ros_params_yaml({"value": text}))["/**"]["ros__parameters"]
    assert loaded["value"] == text


def test_params_yaml_refuses_values_ros_cannot_type():
    """Empty or mixed arrays and None have no ROS parameter type: refused, not guessed."""
    for bad in ([], ["a", 1], None, {"a": 1}):
        with pytest.raises(TypeError):
            ros_params_yaml({"p": bad})


RCL_READER = textwrap.dedent(
    """
    import sys, rclpy
    from rclpy.node import Node
    rclpy.init(args=sys.argv)
    node = Node("reader", automatically_declare_parameters_from_overrides=True)
    for name in ("hardware_options", "flag_text", "loop_rate", "autostart", "count", "topics"):
        p = node.get_parameter(name)
        print(name, p.type_.name, repr(p.value))
    node.destroy_node()
    rclpy.shutdown()
    """
)


def test_rcl_reads_the_params_file_with_the_intended_types(tmp_path, domain_id):
    """The real rcl YAML parser (rclpy) gives '{}' and 'true' as strings, 500.0 as a double."""
    params = {
        "hardware_options": "{}", "flag_text": "true", "loop_rate": 500.0,
        "autostart": True, "count": 3, "topics": ["joint_states", "ft_sensor/wrench"],
    }
    params_file = tmp_path / "p.yaml"
    params_file.write_text(ros_params_yaml(params, "reader"))
    reader = tmp_path / "reader.py"
    reader.write_text(RCL_READER)
    done = subprocess.run(
        [sys.executable, str(reader), "--ros-args", "--params-file", str(params_file), "-r", "__node:=reader"],
        env=localhost_env(domain_id), capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "hardware_options STRING '{}'",
        "flag_text STRING 'true'",
        "loop_rate DOUBLE 500.0",
        "autostart BOOL True",
        "count INTEGER 3",
        "topics STRING_ARRAY ['joint_states', 'ft_sensor/wrench']",
    ]


# --------------------------------------------------------------------------- commands


def test_node_command_runs_the_console_script_of_the_installed_package():
    """Executables resolve through the rehab_robot distribution's console_scripts."""
    command = launcher.node_command("hardware_driver")
    assert command[:2] == [sys.executable, "-c"]
    assert "rehab_robot.nodes.driver_node" in command[2] and "'main'" in command[2]
    with pytest.raises(ConfigError, match="no console script 'no_such_node'"):
        launcher.node_command("no_such_node")


def test_node_command_code_passes_arguments_and_exit_status(tmp_path, monkeypatch):
    """The generated command sets argv[0] to the executable, keeps the arguments, returns main()'s status."""
    (tmp_path / "fake_node.py").write_text("import sys\ndef main():\n    print(sys.argv)\n    return 7\n")
    entry = types.SimpleNamespace(group="console_scripts", name="fake_node", value="fake_node:main")
    monkeypatch.setattr(launcher, "distribution", lambda name: types.SimpleNamespace(entry_points=[entry]))
    command = launcher.node_command("fake_node") + ["--ros-args", "-r", "__node:=x"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert done.returncode == 7
    assert done.stdout.strip() == "['fake_node', '--ros-args', '-r', '__node:=x']"


ORPHAN_PARENT = textwrap.dedent(
    """
    import os, subprocess, sys, time
    from rehab_robot.child_process import entry_point_command
    # As the launcher does it: the node's own session, the launcher's pid in the bootstrap.
    subprocess.Popen(entry_point_command("orphan_node", "main", "orphan_node"), start_new_session=True)
    time.sleep(30)  # SIGKILLed by the test long before
    """
)


def test_nodes_get_sigint_when_the_launcher_is_killed(tmp_path):
    """If the launcher is SIGKILLed, its nodes (each in its own session) get SIGINT instead of
    running on headless: the driver still brings the arm to rest."""
    marker = tmp_path / "got_sigint"
    (tmp_path / "orphan_node.py").write_text(textwrap.dedent(
        f"""
        import signal, sys, time
        def main():
            signal.signal(signal.SIGINT, lambda s, f: (open({str(marker)!r}, "w").close(), sys.exit(0)))
            open({str(marker)!r} + ".ready", "w").close()
            time.sleep(30)
        """
    ))
    (tmp_path / "parent.py").write_text(ORPHAN_PARENT)
    parent = subprocess.Popen([sys.executable, str(tmp_path / "parent.py")], cwd=tmp_path)
    deadline = time.monotonic() + 10
    while not Path(f"{marker}.ready").exists():
        assert time.monotonic() < deadline, "stand-in node did not start"
        time.sleep(0.02)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5
    while not marker.exists():
        assert time.monotonic() < deadline, "the orphaned node was not told to stop"
        time.sleep(0.02)


# --------------------------------------------------------------------------- report summary


def test_report_summary_shows_degrees_rad_force_and_duration():
    """The summary has the end, repetitions, ROM per joint in deg and rad, force [N], duration [s]."""
    report = {
        "session_id": "20250101-100000", "patient_id": "P-007", "protocol": "passive_elbow_rom",
        "ended": "completed", "end_reason": "all repetitions done.",
        "repetitions_completed": 10, "repetitions_planned": 10,
        "rom_reached": {"elbow_flexion": {"min": 0.0, "max": 1.5707963, "range": 1.5707963}},
        "peak_interaction_force": 12.34, "duration": 61.0,
    }
    text = launcher.format_report_summary(report)
    assert "completed - all repetitions done." in text
    assert "repetitions: 10 / 10" in text
    assert "90.0 deg" in text and "1.571 rad" in text
    assert "12.3 N" in text and "61.0 s" in text
    assert "?" in launcher.format_report_summary({"ended": "aborted"})


# --------------------------------------------------------------------------- session runs with stand-in nodes

FAKE_NODE = textwrap.dedent(
    """
    import json, os, signal, sys, time, yaml
    executable, args = sys.argv[1], sys.argv[2:]
    params = yaml.safe_load(open(args[args.index("--params-file") + 1]))["/**"]["ros__parameters"]
    name = args[args.index("-r") + 1].split(":=")[1]
    order = os.environ["FAKE_ORDER"]

    def stopped(signum, frame):
        with open(order, "a") as f:
            f.write(name + "\\n")
        sys.exit(0)

    signal.signal(signal.SIGINT, stopped)
    print(f"{name} params {json.dumps(params, sort_keys=True)}", flush=True)
    if executable == "session_recorder":
        os.makedirs(params["bag_path"])
    open(f"{order}.{name}.ready", "w").close()

    def all_ready():  # act only once every node traps SIGINT
        while len([f for f in os.listdir(os.path.dirname(order)) if f.endswith(".ready")]) < 5:
            time.sleep(0.01)

    if executable == "session_recorder" and os.environ.get("FAKE_RECORDER_DIES"):
        all_ready()
        os.kill(os.getpid(), signal.SIGKILL)
    if executable == "session_manager":
        all_ready()
        time.sleep(0.3)
        report = {"ended": os.environ.get("FAKE_ENDED", "completed"), "end_reason": "all repetitions done.",
                  "repetitions_completed": 2, "repetitions_planned": 2,
                  "rom_reached": {"elbow_flexion": {"min": 0.1, "max": 1.2, "range": 1.1}},
                  "peak_interaction_force": 3.0, "duration": 0.5}
        with open(os.path.join(params["session_dir"], "report.json"), "w") as f:
            json.dump(report, f)
        sys.exit(0)
    while True:
        time.sleep(0.02)
    """
)


@pytest.fixture
def fake_nodes(tmp_path, monkeypatch):
    """Make `rehab-robot run` start stand-in nodes and skip the file/backend validators."""
    script = tmp_path / "fake_node.py"
    script.write_text(FAKE_NODE)
    monkeypatch.setattr(launcher, "node_command", lambda exe: [sys.executable, str(script), exe])
    monkeypatch.setattr(launcher, "check_session_files", lambda *a: None)
    monkeypatch.setattr(launcher, "check_hardware", lambda *a: None)
    monkeypatch.setenv("FAKE_ORDER", str(tmp_path / "order.txt"))
    monkeypatch.setenv("ROS_DOMAIN_ID", "57")
    return tmp_path


def test_run_starts_the_graph_and_prints_the_report_summary(fake_nodes, capsys):
    """`run`: params files per node, ordered stop after the session ends, summary printed, exit 0."""
    out_dir = fake_nodes / "out"
    status = launcher.main(["run", f"output_dir:={out_dir}", "session_id:=s1", "hardware_options:={}"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert stop_order(fake_nodes / "order.txt") == [
        "hardware_driver", "motion_controller", "safety_supervisor", "session_recorder",
    ]
    assert ('[hardware_driver] hardware_driver params {"control_domain": "auto", "hardware": "sim", '
            '"hardware_options": "{}"') in captured.out
    assert "ROS_DOMAIN_ID=57 (from the environment)" in captured.out
    assert "control chain on its own domain 157; its topics are mirrored on 57" in captured.out
    assert f"report: {out_dir / 's1' / 'report.json'}" in captured.out
    assert f"bag:    {out_dir / 's1' / 'bag'}" in captured.out
    assert "repetitions: 2 / 2" in captured.out and "68.8 deg" in captured.out
    saved = yaml.safe_load((out_dir / "s1" / "params" / "session_manager.yaml").read_text())
    assert saved["/**"]["ros__parameters"]["session_dir"] == str(out_dir / "s1")
    assert saved["/**"]["ros__parameters"]["autostart"] is True


def test_recorder_death_is_reported_and_the_bag_repaired(fake_nodes, capsys, monkeypatch):
    """The recorder dying: named, the rest stopped, repair_bag called on the bag, exit 1."""
    repaired = []
    # The stand-in recorder writes no real bag; test_bag.py covers repair_bag itself.
    monkeypatch.setattr(launcher, "repair_bag", lambda path: repaired.append(path) or "bag repaired: 12 messages")
    monkeypatch.setenv("FAKE_RECORDER_DIES", "1")
    out_dir = fake_nodes / "out"
    status = launcher.main(["run", f"output_dir:={out_dir}", "session_id:=s2"])
    captured = capsys.readouterr()
    assert status == 1
    assert "node 'session_recorder' died (killed by SIGKILL)" in captured.err
    assert repaired == [out_dir / "s2" / "bag"]
    assert "bag repaired: 12 messages" in captured.out


@pytest.mark.parametrize("ended, status", [("completed", 0), ("aborted", 1)])
def test_demo_succeeds_only_for_a_completed_session(fake_nodes, capsys, monkeypatch, ended, status):
    """`demo` exits 0 only when the session report says completed."""
    monkeypatch.setenv("FAKE_ENDED", ended)
    assert launcher.main(["demo", f"output_dir:={fake_nodes / 'out'}", "--timeout", "20"]) == status
    captured = capsys.readouterr()
    if status == 0:
        assert "rehab-robot: demo completed" in captured.out
    else:
        assert "rehab-robot: demo failed: session aborted: all repetitions done." in captured.err


def test_plan_refuses_a_folder_that_already_holds_a_session(fake_nodes):
    """A reused session_id must not overwrite an earlier session's report or bag."""
    (fake_nodes / "out" / "s3").mkdir(parents=True)
    (fake_nodes / "out" / "s3" / "report.json").write_text("{}")
    with pytest.raises(ConfigError, match="already holds a session"):
        launcher.plan_session({"output_dir": str(fake_nodes / "out"), "session_id": "s3"})


def test_plan_pins_one_session_id_for_every_node(fake_nodes):
    """Without session_id:=, every node still gets the same session folder."""
    plan = launcher.plan_session({"output_dir": str(fake_nodes / "out")})
    assert plan.parameters["session_manager"]["session_dir"] == str(plan.session_dir)
    assert plan.parameters["session_recorder"]["bag_path"] == str(plan.session_dir / "bag")


# --------------------------------------------------------------------------- CLI user errors


def cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "rehab_robot.launcher", *args],
        env=localhost_env(), capture_output=True, text=True, timeout=60, cwd=cwd,
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "bogus:=1"], "unknown launch argument(s) bogus"),
        (["run", "autostart:=maybe"], "autostart:='maybe': allowed values are true, false"),
        (["run", "--hardware", "no_such_drive"], "unknown hardware backend 'no_such_drive'"),
        (["run", "hardware_options:=[1, 2]"], "a YAML mapping is required"),
        (["run", "hardware_options:={rate_hz: 10}"], "hardware option 'rate_hz'"),
        (["run", "hardware_options:={initial_position: [0, 0, 0, .nan]}"], "initial_position"),
        (["run", "--hardware", "sim_faults", "hardware_options:={fault_socket: /no/such/dir/f.sock}"],
         "its folder does not exist"),
        (["run", "hardware:=sim", "--hardware", "other"], "launch argument hardware given twice"),
        (["run", "patient"], "expected a launch argument name:=value, got 'patient'"),
        (["run", "--no-such-option"], "unrecognized arguments: --no-such-option"),
        (["run", "--hardware", "sim", "loop_rate:=fast"], "loop_rate:='fast': a finite number is required"),
        (["run", "control_domain:=300"], "control_domain '300' is not allowed; allowed: auto, public, or a domain id"),
        (["run", "control_domain:=private"], "control_domain 'private' is not allowed"),
        (["demo", "exit_when_done:=false"], "the demo always runs with exit_when_done:=true"),
        (["check", "--patient", "nope.yaml", "--protocol", "nope.yaml"], "does not exist"),
        (["repair-bag", "no/such/bag"], "bag 'no/such/bag' does not exist"),
    ],
)
def test_user_errors_are_one_line_exit_2_without_traceback(args, message, tmp_path):
    """Bad arguments, values or backends: exit 2, one error line, no traceback, nothing started."""
    done = cli(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "error: " in lines[0] and message in lines[0], done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "sessions").exists(), "nothing may be created for a refused run"


def test_missing_patient_file_is_refused_before_anything_starts(tmp_path, monkeypatch, capsys):
    """A missing profile file is a one-line error and no session folder is created."""
    monkeypatch.setattr(launcher, "check_hardware", lambda *a: None)
    urdf = tmp_path / "arm.urdf"
    urdf.write_text("<robot name='arm'/>")
    status = launcher.main([
        "run", f"output_dir:={tmp_path / 'out'}", f"robot_description:={urdf}",
        "--patient", str(tmp_path / "missing.yaml"),
    ])
    err = capsys.readouterr().err
    assert status == 2
    assert err == f"rehab-robot: error: patient file '{tmp_path / 'missing.yaml'}' does not exist\n"
    assert not (tmp_path / "out").exists()


def test_graph_and_backends_commands():
    """`graph` documents nodes, parameters and arguments; `backends` lists the registry."""
    done = cli("graph")
    assert done.returncode == 0, done.stderr
    for spec in graph.nodes():
        assert spec.name in done.stdout
    for argument in graph.launch_arguments():
        assert f"  {argument.name} (" in done.stdout
    done = cli("backends")
    listed = [line.split()[0] for line in done.stdout.splitlines() if line.strip()]
    assert done.returncode == 0 and {"sim", "sim_faults"} <= set(listed) and listed == sorted(listed)


def test_history_dir_reaches_the_session_manager(fake_nodes):
    """``history_dir:=DIR`` is the session manager's history folder; empty (default) means <output_dir>/history."""
    plan = launcher.plan_session({"output_dir": str(fake_nodes / "out"), "history_dir": "/clinic/history"})
    assert plan.parameters["session_manager"]["history_dir"] == "/clinic/history"
    plan = launcher.plan_session({"output_dir": str(fake_nodes / "out2")})
    assert plan.parameters["session_manager"]["history_dir"] == ""
