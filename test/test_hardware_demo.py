"""``rehab-robot demo --hardware NAME``: the session graph against emulated hardware rigs.

Unit part: the rig table (:mod:`rehab_robot.emulated_rigs`), what the Dynamixel rig hands
the graph, starting and stopping emulators (a failing one is named, none is left
behind), the launcher stopping the graph when an emulator ends, and the demo's
argument errors.

Integration part: the whole demo on the emulated Dynamixel arm with the emulated Net F/T,
as a user runs it (``python -m rehab_robot.launcher demo --hardware dynamixel``, every
node and emulator a process of its own, real DDS): the session completes, the bag reads
back, the cuff wrench in it is the Net F/T emulator's, and the emulators are gone.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from rehab_robot import emulated_rigs, launcher
from rehab_robot.emulated_rigs import CUFF_FORCE_PROFILE, EmulatedRig, EmulatorError, RigFolders, RunningRig
from rehab_robot.errors import ConfigError
from rehab_robot.ros_env import localhost_env

#: A short protocol: one elbow repetition (about 4 s of motion).
TINY_PROTOCOL = """\
protocol:
  name: tiny_elbow
  type: passive_rom
  joint: elbow_flexion
  start_angle: 0.5
  end_angle: 1.2
  repetitions: 1
  movement_duration: 1.5
  hold_duration: 0.2
"""

#: Safety bound [s] on the whole demo; it takes about 15 s, but on a machine shared with other
#: test runs seven processes importing pinocchio and rclpy at once have taken a minute.
DEMO_TIMEOUT = 180.0


def folders(tmp_path: Path) -> RigFolders:
    return RigFolders(tmp_path / "run", tmp_path / "record")


def lines_of(messages: list[str]):
    """A relay/say sink that keeps what it is given."""
    return messages.append


# --------------------------------------------------------------------------- the rig table


def test_the_rigs_are_listed_and_an_unknown_one_is_refused_by_name():
    assert emulated_rigs.available_rigs()[0] == "sim"
    assert {"sim", "dynamixel"} <= set(emulated_rigs.available_rigs())
    assert emulated_rigs.get_rig("sim").emulators == ()  # today's demo: nothing to start
    with pytest.raises(ConfigError, match=r"no emulated hardware setup 'ethercat'.*available: sim, canopen, dynamixel"):
        emulated_rigs.get_rig("ethercat")


def test_dynamixel_rig_points_the_graph_at_the_pty_link_and_the_netft_port(tmp_path):
    """The hardware YAML names the emulator's pty link; the options it gives pass the backend's own check."""
    f = folders(tmp_path)
    f.record_dir.mkdir(parents=True)
    rig = emulated_rigs.get_rig("dynamixel")
    endpoints = {"dynamixel_emulator": {"pty": "/dev/pts/77"},
                 "netft_emulator": {"host": "127.0.0.1", "port": "40123", "control_port": "40124"}}
    setup = rig.setup(f, endpoints)
    assert set(setup.arguments) == set(rig.sets)
    assert setup.arguments["hardware"] == "dynamixel"
    assert setup.arguments["ft_sensor"] == "netft" and setup.arguments["ft_sensor_address"] == "127.0.0.1"
    assert setup.node_parameters == {"ft_sensor_driver": {"port": 40123, "rate": emulated_rigs.NETFT_RDT_RATE},
                                     "session_manager": {"ready_timeout": emulated_rigs.READY_TIMEOUT}}
    assert setup.defaults == {"loop_rate": emulated_rigs.DYNAMIXEL_LOOP_RATE}  # loop_rate:= overrides it
    options = yaml.safe_load(setup.arguments["hardware_options"])
    config = yaml.safe_load(Path(options["config"]).read_text())
    assert Path(options["config"]).parent == f.record_dir  # kept with the session
    assert config["port"] == str(f.run_dir / "ttyDXL")  # the stable link, in the run's temp folder
    assert config["response_margin"] == emulated_rigs.DYNAMIXEL_RESPONSE_MARGIN
    assert config["max_missed_cycles"] == emulated_rigs.DYNAMIXEL_MAX_MISSED_CYCLES
    # The backend's own check of the options and the file (opens no port).
    launcher.check_hardware("dynamixel", setup.arguments["hardware_options"])
    # The launch arguments are valid for the graph, and the port override reaches the node.
    plan_texts = {**setup.arguments, "output_dir": str(tmp_path / "out")}
    plan = launcher.plan_session(plan_texts)
    assert "ft_sensor_driver" in plan.parameters and plan.parameters["hardware_driver"]["publish_wrench"] is False


def test_canopen_rig_puts_the_shipped_arm_on_the_emulated_slcan_adapter(tmp_path):
    """The CANopen YAML names the emulator's pty link as an slcan channel; it passes the backend's
    check, bus load included, at the rig's loop rate, and would not at 500 Hz (full PDO layout)."""
    f = folders(tmp_path)
    f.record_dir.mkdir(parents=True)
    rig = emulated_rigs.get_rig("canopen")
    endpoints = {"canopen_emulator": {"pty": "/dev/pts/78"},
                 "netft_emulator": {"host": "127.0.0.1", "port": "40125", "control_port": "40126"}}
    setup = rig.setup(f, endpoints)
    assert set(setup.arguments) == set(rig.sets) and setup.arguments["hardware"] == "canopen"
    assert setup.defaults == {"loop_rate": emulated_rigs.CANOPEN_LOOP_RATE}
    options = yaml.safe_load(setup.arguments["hardware_options"])
    config = yaml.safe_load(Path(options["config"]).read_text())
    assert config["interface"] == "slcan" and config["channel"] == str(f.run_dir / "ttyCAN")
    assert Path(config["eds"]).is_file()
    # The channel must exist for the check: the emulator's link, here to a stand-in device.
    f.run_dir.mkdir(parents=True, exist_ok=True)
    (f.run_dir / "ttyCAN").symlink_to("/dev/null")
    launcher.check_hardware("canopen", setup.arguments["hardware_options"],
                            loop_rate=float(emulated_rigs.CANOPEN_LOOP_RATE))
    with pytest.raises(ConfigError, match="bus load"):
        launcher.check_hardware("canopen", setup.arguments["hardware_options"], loop_rate=500.0)


def test_a_path_with_spaces_and_colons_stays_one_option(tmp_path):
    odd = tmp_path / "a b: {c}"
    f = RigFolders(odd / "run", odd / "record")
    f.record_dir.mkdir(parents=True)
    setup = emulated_rigs.get_rig("dynamixel").setup(
        f, {"netft_emulator": {"host": "127.0.0.1", "port": "1"}, "dynamixel_emulator": {"pty": "/dev/pts/1"}})
    assert yaml.safe_load(setup.arguments["hardware_options"]) == {"config": str(f.record_dir / "dynamixel_arm.yaml")}


# --------------------------------------------------------------------------- emulator processes


NETFT_ONLY = EmulatedRig(
    "netft_only", "the Net F/T emulator alone", (emulated_rigs.NETFT_EMULATOR,),
    lambda folders, endpoints: emulated_rigs.RigSetup({"port": endpoints["netft_emulator"]["port"]}),
)


def test_running_rig_reports_the_endpoints_and_stops_its_emulators(tmp_path):
    """Ready line -> endpoints; stop() ends the emulator with SIGINT (exit 0) and frees its port."""
    relayed, said = [], []
    with RunningRig(NETFT_ONLY, folders(tmp_path), relay=lines_of(relayed), say=lines_of(said)) as rig:
        setup = rig.start()
        port = int(setup.arguments["port"])
        process = rig.processes["netft_emulator"]
        assert process.poll() is None and rig.ended() is None, relayed
        if os.geteuid() == 0:  # allowed to: the emulated device runs at real-time priority
            assert os.sched_getscheduler(process.pid) == os.SCHED_FIFO
        assert any(line.startswith("[netft_emulator] netft emulator: RDT on 127.0.0.1:") for line in relayed)
        # The profile file it was given is kept with the session.
        assert yaml.safe_load((tmp_path / "record" / "netft_cuff_force.yaml").read_text()) == CUFF_FORCE_PROFILE
    # 0, or 130 when the SIGINT came before its serving loop (the launcher's Ctrl-C status): no traceback.
    assert process.returncode in (0, 130), relayed
    assert said == [f"stopped netft_emulator (exit status {process.returncode})"], (said, relayed)
    assert not any("Traceback" in line for line in relayed), relayed
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))  # released
        except OSError as exc:
            pytest.fail(f"UDP port {port} still taken after the emulator stopped: {exc}")


def test_an_emulator_that_fails_to_start_is_named_with_its_output(tmp_path):
    bad = EmulatedRig("bad", "bad options", (emulated_rigs.EmulatorSpec(
        "netft_emulator", "netft", lambda f: ["--rate", "0"], emulated_rigs.NETFT_EMULATOR.ready),),
        lambda f, e: emulated_rigs.RigSetup({}))
    rig = RunningRig(bad, folders(tmp_path), relay=lines_of([]), say=lines_of([]))
    with pytest.raises(EmulatorError, match=r"netft_emulator \(netft\) exited \(exit status 2\); its output: .*--rate"):
        rig.start()
    assert rig.processes == {}


def test_demo_with_an_emulator_that_fails_says_so_and_starts_no_node(tmp_path, monkeypatch, capsys):
    """`demo --hardware X` whose emulator cannot start: exit 1, one line naming it, no graph."""
    broken = EmulatedRig("broken", "an emulator with a bad option", (emulated_rigs.EmulatorSpec(
        "netft_emulator", "netft", lambda f: ["--rate", "0"], emulated_rigs.NETFT_EMULATOR.ready),),
        lambda f, e: emulated_rigs.RigSetup({}))
    monkeypatch.setitem(emulated_rigs.RIGS, "broken", broken)
    assert launcher.main(["demo", "--hardware", "broken", f"output_dir:={tmp_path}"]) == 1
    captured = capsys.readouterr()
    assert "rehab-robot: demo failed: netft_emulator (netft) exited (exit status 2)" in captured.err
    assert "session folder" not in captured.out  # no node was started
    assert "Traceback" not in captured.err


def test_an_emulator_that_never_says_ready_is_stopped(tmp_path):
    mute = EmulatedRig("mute", "never ready", (emulated_rigs.EmulatorSpec(
        "netft_emulator", "netft", lambda f: ["--port", "0"], emulated_rigs.re.compile("no such line")),),
        lambda f, e: emulated_rigs.RigSetup({}))
    started = []
    relay = started.append
    rig = RunningRig(mute, folders(tmp_path), relay=relay, say=lines_of([]), start_timeout=3.0)
    t0 = time.monotonic()
    with pytest.raises(EmulatorError, match="said nothing that means ready within 3 s"):
        rig.start()
    # It gives up (a bound with a wide margin for a loaded machine): start() never hangs.
    assert time.monotonic() - t0 < 3.0 + emulated_rigs.STOP_TIMEOUT + 20.0
    assert started, "the emulator printed its line (relayed) but the pattern did not match"


def test_a_companion_that_ends_stops_the_graph_naming_it():
    """ProcessGraph(companions=...): an emulator exiting stops the nodes like a node dying."""
    node = launcher.ProcessSpec("node", [sys.executable, "-c", "import time; time.sleep(60)"])
    companion = subprocess.Popen([sys.executable, "-c", "import sys, time; time.sleep(0.5); sys.exit(3)"])
    try:
        out, err = [], []

        class Sink:
            def __init__(self, lines):
                self.lines = lines

            def write(self, text):
                self.lines.append(text)

            def flush(self):
                pass

        result = launcher.ProcessGraph([node], companions={"dynamixel_emulator": companion},
                                       out=Sink(out), err=Sink(err), sigint_timeout=2.0).run(timeout=30)
    finally:
        companion.kill()
        companion.wait()
    assert result.reason == "died" and result.died == "dynamixel_emulator"
    assert result.message == "dynamixel_emulator ended (exit status 3)"
    assert result.returncodes["node"] is not None  # the node was stopped


@pytest.mark.parametrize("args, message", [
    (["demo", "--hardware", "ethercat"],
     "no emulated hardware setup 'ethercat' for the demo; available: sim, canopen, dynamixel"),
    (["demo", "--hardware", "dynamixel", "hardware:=sim"], "the demo --hardware dynamixel sets hardware itself"),
    (["demo", "--hardware", "dynamixel", "ft_sensor_address:=10.0.0.1", "ft_sensor:=none"],
     "sets ft_sensor, ft_sensor_address itself; leave them out"),
    (["demo", "--hardware", "dynamixel", "protocol:=/no/such.yaml"], "protocol file '/no/such.yaml' does not exist"),
])
def test_demo_user_errors_are_one_line_before_any_emulator_starts(args, message, tmp_path):
    done = subprocess.run([sys.executable, "-m", "rehab_robot.launcher", *args], env=localhost_env(),
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert "emulator" not in done.stdout  # nothing was started


# --------------------------------------------------------------------------- the whole demo


class Demo:
    """``rehab-robot demo ARGS`` as a user runs it, its output kept in files (read while it runs)."""

    def __init__(self, tmp_path: Path, domain_id: int, *arguments: str) -> None:
        self.stdout_path, self.stderr_path = tmp_path / "demo.out", tmp_path / "demo.err"
        with open(self.stdout_path, "w") as out, open(self.stderr_path, "w") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "rehab_robot.launcher", "demo", *arguments],
                env=localhost_env(domain_id), stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=tmp_path,
            )

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def output(self, tail: int = 6000) -> str:
        return (self.stdout + "\n--- stderr ---\n" + self.stderr)[-tail:]

    def wait(self, timeout: float) -> int:
        """Wait for the end; on timeout Ctrl-C it (the launcher stops everything) and fail."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            pytest.fail(f"the demo did not end within {timeout} s:\n{self.output()}")


class Operator:
    """Presses ``session/resume`` once a second while the demo runs, as an operator would.

    On a machine loaded by other test runs a late ``ft_sensor/wrench`` (the Net F/T node
    runs at normal priority) interrupts the exercise for longer than an automatic resume
    allows; the session then waits for the operator. A resume is refused (harmlessly)
    unless the session is paused and motion is permitted.
    """

    def __init__(self, node) -> None:
        from std_srvs.srv import Trigger

        self.client = node.create_client(Trigger, "session/resume")
        self.request = Trigger.Request()
        self.resumes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            if not self.client.service_is_ready():
                continue
            future = self.client.call_async(self.request)
            deadline = time.monotonic() + 2.0
            while not future.done() and time.monotonic() < deadline:
                time.sleep(0.01)
            if future.done() and future.result().success:
                self.resumes += 1

    def stop(self) -> int:
        """Stop pressing; return how many resumes were accepted."""
        self._stop.set()
        self._thread.join(5)
        return self.resumes


#: Per rig: the emulator that drives the arm, and the key of the device path in its YAML.
RIG_DEVICES = {"dynamixel": ("dynamixel_emulator", "port"), "canopen": ("canopen_emulator", "channel")}


@pytest.mark.integration
@pytest.mark.parametrize("hardware", sorted(RIG_DEVICES))
def test_demo_on_emulated_drives_completes_with_the_netft_wrench(hardware, tmp_path, domain_id, ros_client):
    """Session completed, bag readable, wrench from ft_sensor_driver (the emulator's Tz sine), emulators stopped."""
    from geometry_msgs.msg import WrenchStamped
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import JointState

    from rehab_robot.recording.bag import read_bag

    protocol = tmp_path / "tiny.yaml"
    protocol.write_text(TINY_PROTOCOL)
    demo = Demo(tmp_path, domain_id, "--hardware", hardware, f"protocol:={protocol}",
                f"output_dir:={tmp_path / 'out'}", "session_id:=hw")
    operator = Operator(ros_client)
    try:
        status = demo.wait(DEMO_TIMEOUT)
    finally:
        resumes = operator.stop()
    print(f"session resumed {resumes} times by the test's operator")
    assert status == 0, demo.output()
    assert "rehab-robot: demo completed" in demo.stdout
    assert "Traceback" not in demo.stdout + demo.stderr
    emulator, device_key = RIG_DEVICES[hardware]
    for name in (emulator, "netft_emulator"):
        assert f"rehab-robot: stopped {name} (exit status 0)" in demo.stderr, demo.output()
    assert "loop 250 Hz" in demo.stderr  # the rig's default loop_rate

    session = tmp_path / "out" / "hw"
    report = json.loads((session / "report.json").read_text())
    assert report["ended"] == "completed" and report["repetitions_completed"] == 1
    assert report["hardware"]["backend"] == hardware
    config = yaml.safe_load(Path(report["hardware"]["options"]["config"]).read_text())
    assert not Path(config[device_key]).parent.exists(), "the run's temporary folder (pty link) was not removed"
    elbow = report["rom_reached"]["elbow_flexion"]
    assert elbow["min"] < 0.55 and elbow["max"] > 1.15  # the emulated servos moved the elbow

    wrenches, states, sources = [], [], set()
    for message in read_bag(session / "bag"):
        if message.topic == "/ft_sensor/wrench":
            msg = deserialize_message(message.data, WrenchStamped)
            assert msg.header.frame_id == "ft_sensor_link"
            wrenches.append((message.timestamp_ns * 1e-9, msg.wrench.force.z, msg.wrench.torque.z))
        elif message.topic == "/joint_states":
            states.append(deserialize_message(message.data, JointState).position[3])
        elif message.topic == "/diagnostics":
            for status in deserialize_message(message.data, DiagnosticArray).status:
                values = {kv.key: kv.value for kv in status.values}
                if status.name.endswith("ft_sensor_driver"):
                    sources.add(("ft_sensor_driver", values.get("state")))
                elif status.name.endswith("hardware_driver"):
                    sources.add(("hardware_driver", values.get("backend")))
    assert ("hardware_driver", hardware) in sources and ("ft_sensor_driver", "ok") in sources, sources
    times = np.array([w[0] for w in wrenches])
    assert times[-1] - times[0] > 2 / CUFF_FORCE_PROFILE["frequency"]  # at least two periods of the sine
    # The Net F/T streams at 500 Hz and the recorder takes it best effort (a loaded machine drops
    # some; bench/bench_netft.py measures the rate): a generous bound that a stream there all along meets.
    assert len(wrenches) / (times[-1] - times[0]) > 0.2 * emulated_rigs.NETFT_RDT_RATE, len(wrenches)
    # Tz is the emulator's sine (gravity compensation leaves it alone, the tare shifts it):
    # peak to peak twice the amplitude. The sim backend's wrench would have no such torque.
    tz = np.array([w[2] for w in wrenches])
    amplitude = CUFF_FORCE_PROFILE["amplitude"][5]
    assert 2 * amplitude * 0.9 < tz.max() - tz.min() < 2 * amplitude * 1.1, (tz.min(), tz.max())
    assert max(states) > 1.15 and min(states) < 0.55
    assert all(math.isfinite(x) for x in states)


@pytest.mark.integration
def test_ctrl_c_while_the_emulators_start_stops_them_without_a_traceback(tmp_path, domain_id):
    """A Ctrl-C right after the first emulator is up: exit 130, every started emulator stopped, no traceback."""
    demo = Demo(tmp_path, domain_id, "--hardware", "dynamixel", f"output_dir:={tmp_path / 'out'}")
    deadline = time.monotonic() + DEMO_TIMEOUT
    while "[dynamixel_emulator] PTY " not in demo.stderr:
        assert demo.process.poll() is None and time.monotonic() < deadline, demo.output()
        time.sleep(0.02)
    demo.process.send_signal(signal.SIGINT)
    assert demo.wait(60) == 130, demo.output()
    assert "Traceback" not in demo.stdout + demo.stderr, demo.output()
    assert "rehab-robot: stopped dynamixel_emulator" in demo.stderr, demo.output()
    assert "demo completed" not in demo.stdout
