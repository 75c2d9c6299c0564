"""``rehab-robot``: start the session graph of :mod:`rehab_robot.graph` without launch_ros.

Every node runs as its own process, in its own process group, so a Ctrl-C in the
terminal reaches only this launcher; the launcher then stops the nodes one at a
time in ``NodeSpec.stop_rank`` order (session manager first, recorder last), which
``ros2 launch`` cannot do.

Subcommands::

    rehab-robot run [name:=value ...] [--hardware X] [--patient F] [--protocol F] [--timeout S]
    rehab-robot demo [--hardware sim|dynamixel|canopen] [--exercise TYPE] [name:=value ...] [--timeout S]
    rehab-robot history PATIENT_ID [--output-dir D | --history-dir D]
    rehab-robot backends
    rehab-robot check --patient F --protocol F [--robot-description U]
    rehab-robot repair-bag PATH
    rehab-robot graph
    rehab-robot emulate DEVICE [options]   (an emulated device: rehab_robot.emulators.DEVICE)
    rehab-robot estop|reset|pause|resume|stop [--namespace NS] [--domain N] [--timeout S]
    rehab-robot status [--once] [--namespace NS] [--domain N] [--timeout S] [--rate HZ]

User errors (bad argument, invalid file, unknown backend) print one line
``rehab-robot: error: ...`` and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, TextIO


from rehab_robot import emulated_rigs, graph
from rehab_robot import operator as operator_cli
from rehab_robot.child_process import entry_point_command
from rehab_robot.errors import ConfigError, RehabRobotError
from rehab_robot.hardware.registry import available_backends, backend_class, backend_options
from rehab_robot.model import ArmModel
from rehab_robot.recording.bag import repair_bag
from rehab_robot.ros_env import control_domain_id, localhost_env, public_domain_id
from rehab_robot.session.profiles import load_patient, load_protocol
from rehab_robot.session.report import write_report

PROG = "rehab-robot"

#: Seconds a node gets to exit after SIGINT (driver brings the arm to rest, report, bag flush).
SIGINT_TIMEOUT = 5.0
#: Seconds a node gets to exit after SIGTERM, before SIGKILL.
SIGTERM_TIMEOUT = 3.0
#: Hard limit of ``rehab-robot demo`` in [s].
DEMO_TIMEOUT = 120.0

#: Launch arguments ``demo`` always sets: the demo must end on its own.
DEMO_FIXED_ARGUMENTS = {"autostart": "true", "exit_when_done": "true"}


# --------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class ProcessSpec:
    """One process of a :class:`ProcessGraph`.

    Attributes:
        name: Name used in the output prefix ``[name]`` and in messages.
        command: argv of the process.
        env: Its environment (``None``: inherit the launcher's).
        stop_rank: Order of shutdown, lowest first.
        ends_graph: Exit status 0 of this process ends the whole graph normally.
    """

    name: str
    command: Sequence[str]
    env: Optional[Mapping[str, str]] = None
    stop_rank: int = 0
    ends_graph: bool = False


@dataclass
class GraphResult:
    """How a :class:`ProcessGraph` run ended.

    Attributes:
        status: Exit status for the launcher: 0 normal end, 1 node died / start failed /
            timeout, 128 + signal number when stopped by a signal.
        reason: ``ended``, ``died``, ``signal``, ``timeout`` or ``start_failed``.
        message: One line saying why the graph stopped.
        died: Name of the process that exited on its own (not ``ended``), if any.
        returncodes: name -> Popen return code (negative: killed by that signal;
            ``None``: never started).
    """

    status: int
    reason: str
    message: str
    died: Optional[str] = None
    returncodes: dict[str, Optional[int]] = field(default_factory=dict)


def describe_exit(returncode: int) -> str:
    """Return ``exit status N`` or ``killed by SIGNAME`` for a Popen return code."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


class ProcessGraph:
    """Start processes, relay their output with a ``[name] `` prefix, stop them in order.

    Processes start in descending ``stop_rank`` (the recorder is up before the session
    begins) and stop in ascending ``stop_rank``: SIGINT to the process group, up to
    ``sigint_timeout`` [s] to exit, then SIGTERM for ``sigterm_timeout`` [s], then SIGKILL.
    A further stop request while a process is being stopped (a second Ctrl-C) skips
    to the next signal for that process.

    Args:
        specs: The processes.
        sigint_timeout: Time a process gets to exit after SIGINT in [s].
        sigterm_timeout: Time a process gets to exit after SIGTERM in [s].
        poll_period: Supervision period in [s].
        out: Stream for the processes' stdout lines (default: ``sys.stdout`` at write time).
        err: Stream for their stderr lines and the launcher's messages (default: ``sys.stderr``).
        cwd: Working directory of the processes.
        companions: name -> a process started elsewhere that the graph needs (an emulated
            device): if it ends, the graph stops as for a node that died. Not stopped here.
    """

    KILL_WAIT = 2.0  # [s] to reap a process after SIGKILL

    def __init__(
        self,
        specs: Sequence[ProcessSpec],
        *,
        sigint_timeout: float = SIGINT_TIMEOUT,
        sigterm_timeout: float = SIGTERM_TIMEOUT,
        poll_period: float = 0.05,
        out: Optional[TextIO] = None,
        err: Optional[TextIO] = None,
        cwd: Optional[str] = None,
        companions: Optional[Mapping[str, subprocess.Popen]] = None,
    ) -> None:
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"process names must be unique: {names}")
        self.specs = list(specs)
        self.sigint_timeout = sigint_timeout
        self.sigterm_timeout = sigterm_timeout
        self.poll_period = poll_period
        self._out = out
        self._err = err
        self._cwd = cwd
        self._companions = dict(companions or {})
        self._procs: dict[str, subprocess.Popen] = {}
        self._readers: list[threading.Thread] = []
        self._write_lock = threading.Lock()
        # Written by the signal handler: plain attributes only (no locks, no I/O there).
        self._stop_signal: Optional[int] = None
        self._stop_requests = 0

    # -- output

    def _write(self, stream: Optional[TextIO], default: str, text: str) -> None:
        with self._write_lock:
            target = stream if stream is not None else getattr(sys, default)
            try:
                target.write(text + "\n")
                target.flush()
            except (OSError, ValueError):
                pass  # our own stdout is gone (e.g. `| head`): keep draining the pipes

    def log(self, message: str) -> None:
        """Print a launcher message, ``rehab-robot: <message>``, to the error stream."""
        self._write(self._err, "stderr", f"{PROG}: {message}")

    def _pump(self, name: str, pipe, stream: Optional[TextIO], default: str) -> None:
        prefix = f"[{name}] "
        with pipe:
            for raw in iter(pipe.readline, b""):
                self._write(stream, default, prefix + raw.decode(errors="replace").rstrip("\r\n"))

    # -- life cycle

    def request_stop(self, signum: int = signal.SIGINT) -> None:
        """Ask the graph to stop (safe to call from a signal handler or another thread)."""
        if self._stop_signal is None:
            self._stop_signal = signum
        self._stop_requests += 1

    def start(self) -> None:
        """Start every process, highest ``stop_rank`` first.

        Raises:
            OSError: if a process cannot be started (those already started keep running).
        """
        for spec in sorted(self.specs, key=lambda s: -s.stop_rank):
            try:
                proc = subprocess.Popen(
                    list(spec.command),
                    env=None if spec.env is None else dict(spec.env),
                    cwd=self._cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,  # own process group: terminal Ctrl-C reaches only us
                )
            except OSError as exc:
                problem = exc.strerror or exc
                raise OSError(f"cannot start node '{spec.name}' ({spec.command[0]}): {problem}") from exc
            self._procs[spec.name] = proc
            pipes = ((proc.stdout, self._out, "stdout"), (proc.stderr, self._err, "stderr"))
            for pipe, stream, default in pipes:
                reader = threading.Thread(
                    target=self._pump, args=(spec.name, pipe, stream, default), daemon=True
                )
                reader.start()
                self._readers.append(reader)

    def run(self, timeout: Optional[float] = None, handle_signals: bool = True) -> GraphResult:
        """Start the graph, supervise it until it must stop, stop it in order.

        Args:
            timeout: Stop everything and fail after this many [s] (``None``: no limit).
            handle_signals: Turn SIGINT, SIGTERM and SIGHUP into an ordered stop while
                running (only possible from the main thread).
        """
        previous = {}
        if handle_signals and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                previous[signum] = signal.signal(signum, lambda s, f: self.request_stop(s))
        try:
            try:
                self.start()
            except OSError as exc:
                result = GraphResult(1, "start_failed", str(exc))
                self.log(f"{result.message}; stopping the other nodes")
            else:
                result = self._supervise(timeout)
            self.stop_all()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        for reader in self._readers:
            reader.join(timeout=1.0)
        result.returncodes = {s.name: self._returncode(s.name) for s in self.specs}
        return result

    def _returncode(self, name: str) -> Optional[int]:
        proc = self._procs.get(name)
        return None if proc is None else proc.poll()

    def _supervise(self, timeout: Optional[float]) -> GraphResult:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._stop_signal is not None:
                name = signal.Signals(self._stop_signal).name
                result = GraphResult(128 + self._stop_signal, "signal", f"received {name}")
                self.log(f"{result.message}; stopping the nodes")
                return result
            for spec in self.specs:
                returncode = self._returncode(spec.name)
                if returncode is None:
                    continue
                if spec.ends_graph and returncode == 0:
                    result = GraphResult(0, "ended", f"node '{spec.name}' finished")
                elif returncode < 0:
                    result = GraphResult(
                        1, "died", f"node '{spec.name}' died ({describe_exit(returncode)})", spec.name
                    )
                else:
                    result = GraphResult(
                        1, "died", f"node '{spec.name}' exited unexpectedly ({describe_exit(returncode)})",
                        spec.name,
                    )
                self.log(f"{result.message}; stopping the other nodes")
                return result
            for name, proc in self._companions.items():
                returncode = proc.poll()
                if returncode is not None:
                    result = GraphResult(1, "died", f"{name} ended ({describe_exit(returncode)})", name)
                    self.log(f"{result.message}; stopping the nodes")
                    return result
            if deadline is not None and time.monotonic() > deadline:
                result = GraphResult(1, "timeout", f"timed out after {timeout:g} s")
                self.log(f"{result.message}; stopping the nodes")
                return result
            time.sleep(self.poll_period)

    def stop_all(self) -> None:
        """Stop every running process in ascending ``stop_rank``, one at a time."""
        order = sorted(enumerate(self.specs), key=lambda item: (item[1].stop_rank, item[0]))
        for _, spec in order:
            proc = self._procs.get(spec.name)
            if proc is not None and proc.poll() is None:
                self._stop_one(spec.name, proc)
        # A node's own children could hold its pipes open: clear out what is left of each group.
        for proc in self._procs.values():
            self._signal_group(proc, signal.SIGKILL)

    def _stop_one(self, name: str, proc: subprocess.Popen) -> None:
        steps = (
            (signal.SIGINT, self.sigint_timeout),
            (signal.SIGTERM, self.sigterm_timeout),
            (signal.SIGKILL, self.KILL_WAIT),
        )
        for index, (signum, wait) in enumerate(steps):
            self._signal_group(proc, signum)
            if self._wait(proc, wait):
                return
            if index + 1 < len(steps):
                self.log(
                    f"node '{name}' did not stop within {wait:g} s of {signum.name}; "
                    f"sending {steps[index + 1][0].name}"
                )
        self.log(f"node '{name}' (pid {proc.pid}) did not exit even after SIGKILL")

    def _wait(self, proc: subprocess.Popen, wait: float) -> bool:
        """Wait up to ``wait`` [s] for ``proc`` to exit; a new stop request cuts the wait short."""
        requests = self._stop_requests
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return True
            if self._stop_requests != requests:
                self.log("interrupted again: escalating")
                return False
            time.sleep(0.02)
        return proc.poll() is not None

    @staticmethod
    def _signal_group(proc: subprocess.Popen, signum: int) -> None:
        try:
            os.killpg(proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass  # the group is already gone


# --------------------------------------------------------------------------- ROS parameters


def _yaml_string(text: str) -> str:
    """Return ``text`` as a YAML double-quoted scalar (quoted: rcl keeps it a string)."""
    parts = ['"']
    for char in text:
        code = ord(char)
        if char in '"\\':
            parts.append("\\" + char)
        elif 0x20 <= code < 0x7F:
            parts.append(char)
        elif code < 0x10000:
            parts.append(f"\\u{code:04x}")
        else:
            parts.append(f"\\U{code:08x}")
    parts.append('"')
    return "".join(parts)


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):  # before int: bool is an int
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        # A dot in the mantissa keeps it a double for rcl and for YAML 1.1 readers alike.
        mantissa, e, exponent = repr(value).partition("e")
        if "." not in mantissa:
            mantissa += ".0"
        return mantissa + e + exponent
    if isinstance(value, str):
        return _yaml_string(value)
    raise TypeError(f"cannot pass {type(value).__name__} {value!r} as a ROS parameter")


def _yaml_value(name: str, value: Any) -> str:
    if not isinstance(value, (list, tuple)):
        return _yaml_scalar(value)
    if not value:
        raise TypeError(f"parameter {name!r}: an empty list has no ROS type")
    kinds = {type(v) for v in value}
    if kinds == {int, float}:
        value, kinds = [float(v) for v in value], {float}  # ints among floats: one double array
    if len(kinds) != 1 or not kinds <= {bool, int, float, str}:
        raise TypeError(f"parameter {name!r}: a ROS array needs items of one type, got {value!r}")
    return "[" + ", ".join(_yaml_scalar(v) for v in value) + "]"


def ros_params_yaml(parameters: Mapping[str, Any], node_name: str = "") -> str:
    """Return a ROS 2 ``--params-file`` document giving ``parameters`` to one node.

    Types are explicit: strings are always quoted (``'{}'`` or ``'true'`` stay strings),
    floats always carry a decimal point (``500.0``, ``1.0e-05`` stay doubles), bools
    are ``true``/``false``. The node key is ``/**`` because each file serves one node.
    """
    lines = [f"# {PROG}: parameters of node {node_name!r} (generated)", "/**:", "  ros__parameters:"]
    for name, value in parameters.items():
        lines.append(f"    {name}: {_yaml_value(name, value)}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- commands


def node_command(executable: str) -> list[str]:
    """Return the argv that runs the ``rehab_robot`` console script ``executable``.

    The entry point is looked up in the installed distribution's metadata and run with
    this interpreter, so it works the same in a venv, an editable install and a colcon
    install (whose scripts live in ``lib/rehab_robot``, off ``PATH``).

    Raises:
        ConfigError: if rehab_robot is not installed or has no such console script.
    """
    try:
        entries = distribution(graph.PACKAGE).entry_points
    except PackageNotFoundError:
        raise ConfigError(
            f"{graph.PACKAGE} is not installed (no package metadata); run `pip install -e .` "
            "or `colcon build` and source the install"
        ) from None
    for entry in entries:
        if entry.group == "console_scripts" and entry.name == executable:
            module, _, attr = entry.value.partition(":")
            return entry_point_command(module.strip(), attr.strip(), executable)
    raise ConfigError(f"{graph.PACKAGE} has no console script {executable!r}; reinstall the package")


# --------------------------------------------------------------------------- validation


def check_session_files(patient: str, protocol: str, robot_description: str) -> None:
    """Validate the URDF, the patient profile and the protocol against the arm's limits.

    Raises:
        RehabRobotError: naming the file, the field and what is allowed.
    """
    files = (("robot_description", robot_description), ("patient", patient), ("protocol", protocol))
    for label, path in files:
        if not os.path.isfile(path):
            problem = "is not a file" if os.path.exists(path) else "does not exist"
            raise ConfigError(f"{label} file {path!r} {problem}")
    model = ArmModel.from_urdf(robot_description)
    joint_limits = model.limits_by_joint()
    velocity_limits = {name: float(v) for name, v in zip(model.joint_names, model.velocity_limit)}
    profile = load_patient(patient, joint_limits)
    load_protocol(protocol, profile, joint_limits, velocity_limits)


def check_hardware(name: str, options: str, robot_description: str = "", loop_rate: float | None = None) -> None:
    """Check that backend ``name`` exists and accepts the ``hardware_options`` YAML mapping at the
    driver's ``loop_rate`` [Hz] (which, e.g., sets a CAN bus's load).

    Raises:
        ConfigError: for an unknown or broken backend, or options it does not take.
    """
    backend_options(options, backend_class(name), robot_description, loop_rate)


@dataclass
class SessionPlan:
    """Everything needed to start one session, validated.

    Attributes:
        arguments: Launch argument texts, every argument present (``session_id`` pinned).
        parameters: node name -> its ROS parameters.
        session_dir: ``<output_dir>/<session_id>``.
        bag_path: Where the recorder writes the bag (``None`` if no node records).
        recorder: Name of the node writing ``bag_path``.
    """

    arguments: dict[str, str]
    parameters: dict[str, dict[str, Any]]
    session_dir: Path
    bag_path: Optional[Path]
    recorder: Optional[str]

    @property
    def report_path(self) -> Path:
        """``<session_dir>/report.json``, written by the session manager."""
        return self.session_dir / "report.json"

    def create_folder(self) -> None:
        """Create the session folder (``plan_session`` checked it holds no session yet).

        Raises:
            ConfigError: if it cannot be created (e.g. output_dir is not writable).
        """
        try:
            self.session_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the session folder {str(self.session_dir)!r}: "
                              f"{exc.strerror or exc}") from None


def plan_session(user_arguments: Mapping[str, str]) -> SessionPlan:
    """Validate launch argument texts, backend and files; return the session plan.

    Nothing is started or created.

    Raises:
        RehabRobotError: for any invalid argument, file or backend.
    """
    declared = {a.name: a for a in graph.launch_arguments()}
    # Pin every default once, so that every node sees the same values.
    texts = {name: a.default for name, a in declared.items()}
    texts.update(user_arguments)
    parameters = {spec.name: graph.node_parameters(spec, texts) for spec in graph.active_nodes(texts)}
    typed = {name: graph.convert_argument(declared[name], text) for name, text in texts.items()}
    check_hardware(typed["hardware"], typed["hardware_options"], typed["robot_description"], typed["loop_rate"])
    check_session_files(typed["patient"], typed["protocol"], typed["robot_description"])
    control_domain_id(typed["control_domain"], public_domain_id())
    session_dir = Path(str(graph.resolve(graph.session_dir(), typed)))
    recorder = next((name for name, params in parameters.items() if "bag_path" in params), None)
    bag_path = Path(parameters[recorder]["bag_path"]) if recorder else None
    for existing in (session_dir / "report.json", bag_path):
        if existing is not None and existing.exists():
            raise ConfigError(
                f"session folder {str(session_dir)!r} already holds a session ({existing.name}); "
                "choose another session_id:=..."
            )
    return SessionPlan(texts, parameters, session_dir, bag_path, recorder)


# --------------------------------------------------------------------------- report


def format_report_summary(report: Mapping[str, Any]) -> str:
    """Return a short human summary of a session report (the ``report.json`` fields).

    Angles are shown in degrees and rad, force in N, duration in s. Missing fields
    show as ``?``.
    """

    def number(key: str, unit: str, digits: int = 1) -> str:
        value = report.get(key)
        return f"{value:.{digits}f} {unit}" if isinstance(value, (int, float)) else "?"

    lines = [
        f"session {report.get('session_id', '?')}: {report.get('ended', '?')}"
        f" - {report.get('end_reason', 'no reason given')}",
        f"  patient {report.get('patient_id', '?')}, protocol {report.get('protocol', '?')}",
        f"  repetitions: {report.get('repetitions_completed', '?')}"
        f" / {report.get('repetitions_planned', '?')}",
        f"  duration: {number('duration', 's')}",
        f"  peak interaction force: {number('peak_interaction_force', 'N')}",
    ]
    rom = report.get("rom_reached") or {}
    if isinstance(rom, Mapping) and rom:
        lines.append("  range of motion reached (min .. max, range):")
        width = max(len(str(joint)) for joint in rom)
        for joint, values in rom.items():
            try:
                low, high, span = (float(values[k]) for k in ("min", "max", "range"))
            except (KeyError, TypeError, ValueError):
                lines.append(f"    {joint:<{width}}  ?")
                continue
            lines.append(
                f"    {joint:<{width}}  {math.degrees(low):7.1f} .. {math.degrees(high):6.1f} deg"
                f" ({math.degrees(span):5.1f} deg)   {low:6.3f} .. {high:6.3f} rad ({span:.3f} rad)"
            )
    return "\n".join(lines)


def load_report(path: Path) -> Optional[dict]:
    """Return the report at ``path``, or ``None`` if it is missing or unreadable."""
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) else None


# --------------------------------------------------------------------------- sub-commands


def _parse_launch_tokens(tokens: Sequence[str], options: Mapping[str, Optional[str]]) -> dict[str, str]:
    """Turn ``name:=value`` tokens and convenience options into launch argument texts.

    Raises:
        ConfigError: for a token that is not ``name:=value`` or a conflicting repeat.
    """
    texts: dict[str, str] = {}
    pairs = []
    for token in tokens:
        name, sep, value = token.partition(":=")
        if not sep or not name:
            raise ConfigError(f"expected a launch argument name:=value, got {token!r}")
        pairs.append((name, value))
    pairs += [(name, value) for name, value in options.items() if value is not None]
    for name, value in pairs:
        if name in texts and texts[name] != value:
            raise ConfigError(f"launch argument {name} given twice: {texts[name]!r} and {value!r}")
        texts[name] = value
    return texts


def _run_session(
    plan: SessionPlan, timeout: Optional[float], companions: Optional[Mapping[str, subprocess.Popen]] = None
) -> int:
    """Start the planned session, supervise it, print where its results are.

    Args:
        companions: Processes the graph needs that run already (emulated devices): one
            ending stops the session as a dead node does.
    """
    active = [spec for spec in graph.nodes() if spec.name in plan.parameters]
    commands = {spec.name: node_command(spec.executable) for spec in active}
    domain_given = bool(os.environ.get("ROS_DOMAIN_ID"))
    env = localhost_env()
    domain = env["ROS_DOMAIN_ID"]
    if domain_given:
        print(f"{PROG}: ROS_DOMAIN_ID={domain} (from the environment), DDS discovery on localhost",
              flush=True)
    else:
        print(
            f"{PROG}: ROS_DOMAIN_ID={domain}, DDS discovery on localhost; to watch from another terminal: "
            f"export ROS_DOMAIN_ID={domain} ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST",
            flush=True,
        )

    control = control_domain_id(plan.arguments["control_domain"], int(domain))
    print(f"{PROG}: " + ("control chain on the public domain (control_domain:=public)" if control is None else
                         f"control chain on its own domain {control}; its topics are mirrored on {domain}"),
          flush=True)
    plan.create_folder()
    # Kept in the session folder: they record exactly what each node was given.
    params_dir = plan.session_dir / "params"
    params_dir.mkdir(exist_ok=True)
    specs = []
    for spec in active:
        params_file = params_dir / f"{spec.name}.yaml"
        params_file.write_text(ros_params_yaml(plan.parameters[spec.name], spec.name), encoding="utf-8")
        command = commands[spec.name] + [
            "--ros-args", "--params-file", str(params_file), "-r", f"__node:={spec.name}",
        ]
        specs.append(ProcessSpec(spec.name, command, env, spec.stop_rank, spec.ends_graph))
    print(f"{PROG}: session folder {plan.session_dir.resolve()}", flush=True)

    result = ProcessGraph(specs, companions=companions).run(timeout=timeout)

    # The graph already said why it stopped; a normal end is not worth a second line.
    if result.status != 0:
        print(f"{PROG}: graph stopped: {result.message}", flush=True)
    died = result.died if result.reason == "died" else None
    for line in finish_session_record(plan, died, result.message, result.returncodes.get(plan.recorder)):
        print(f"{PROG}: {line}", flush=True)
    print(f"{PROG}: report: {plan.report_path.resolve()}"
          f"{'' if plan.report_path.exists() else ' (not written)'}", flush=True)
    if plan.bag_path is not None:
        print(f"{PROG}: bag:    {plan.bag_path.resolve()}"
              f"{'' if plan.bag_path.exists() else ' (not written)'}", flush=True)
    report = load_report(plan.report_path)
    if report is not None:
        print(format_report_summary(report), flush=True)
    return result.status


def finish_session_record(
    plan: SessionPlan, died: Optional[str], reason: str, recorder_returncode: Optional[int]
) -> list[str]:
    """Complete the session folder after the graph stopped; return what to tell the user.

    Used by ``rehab-robot run`` and by the launch file alike:

    * a bag whose recorder did not close it (died, killed) is repaired;
    * the report of a session cut short by a dead node is marked ``aborted``, naming the
      node (the session manager itself only saw a shutdown request).

    Args:
        died: Name of the node that exited on its own (not the normal end), if any.
        reason: One line saying why the graph stopped.
        recorder_returncode: The recorder's exit status (negative: killed by that
            signal; None: it never ran or its status is unknown).
    """
    lines = []
    recorder_abnormal = died == plan.recorder or recorder_returncode not in (0, None)
    if plan.recorder is not None and plan.bag_path is not None and recorder_abnormal and plan.bag_path.exists():
        ended = "died" if recorder_returncode is None else describe_exit(recorder_returncode)
        lines.append(f"recorder '{plan.recorder}' ended abnormally ({ended}); checking the bag")
        try:
            summary = repair_bag(plan.bag_path)  # str() of its report is a one-line summary
        except RehabRobotError as exc:
            lines.append(f"bag repair failed: {exc}")
        else:
            if summary is not None:
                lines.append(str(summary))
    report = load_report(plan.report_path)
    if died is not None and report is not None and report.get("ended") != "completed":
        # The node died before the session manager's own stop: the report's last event time.
        events = report.get("events", [])
        when = events[-1]["time"] if events and "time" in events[-1] else report.get("duration", 0.0)
        report["events"] = events + [{"time": when, "event": reason}]
        report["ended"] = "aborted"
        report["end_reason"] = reason
        write_report(plan.report_path, report)
    return lines


def cmd_run(args: argparse.Namespace) -> int:
    """``rehab-robot run``: start a session with the given launch arguments."""
    texts = _parse_launch_tokens(
        args.arguments, {"hardware": args.hardware, "patient": args.patient, "protocol": args.protocol}
    )
    return _run_session(plan_session(texts), args.timeout)


def cmd_demo(args: argparse.Namespace) -> int:
    """``rehab-robot demo``: a complete session with the shipped examples, on the simulated
    arm or on an emulated hardware rig (:mod:`rehab_robot.emulated_rigs`)."""
    texts = _parse_launch_tokens(args.arguments, {})
    if getattr(args, "exercise", None):
        _demo_exercise(texts, args.exercise)
    for name, value in DEMO_FIXED_ARGUMENTS.items():
        if texts.setdefault(name, value).strip().lower() != value:
            raise ConfigError(f"the demo always runs with {name}:={value}")
    rig = emulated_rigs.get_rig(args.hardware)
    taken = [name for name in rig.sets if name in texts]
    if taken:
        raise ConfigError(f"the demo --hardware {rig.name} sets {', '.join(taken)} itself; "
                          f"leave {'it' if len(taken) == 1 else 'them'} out")
    # Everything the user gave is checked before any emulator starts.
    plan = plan_session(texts)
    if not rig.emulators:
        return _demo_outcome(plan, _run_session(plan, args.timeout), bool(getattr(args, "exercise", None)))

    print(f"{PROG}: emulated hardware '{rig.name}': {rig.description}", flush=True)
    plan.create_folder()
    with tempfile.TemporaryDirectory(prefix="rehab-robot-demo-") as run_dir:
        # The pty link lives in the temporary folder; the files the graph is given stay with the session.
        folders = emulated_rigs.RigFolders(Path(run_dir), plan.session_dir / "emulated_hardware")
        relay = functools.partial(print, file=sys.stderr, flush=True)

        def say(line: str) -> None:
            relay(f"{PROG}: {line}")

        with emulated_rigs.RunningRig(rig, folders, relay=relay, say=say) as running:
            try:
                setup = running.start()
            except KeyboardInterrupt:
                say("interrupted while starting the emulated hardware; stopped it")
                return 130
            except emulated_rigs.EmulatorError as exc:  # not the user's mistake: no exit status 2
                say(f"demo failed: {exc}")
                return 1
            plan = plan_session({**setup.defaults, **texts, **setup.arguments})
            for node, parameters in setup.node_parameters.items():
                if node in plan.parameters:
                    plan.parameters[node].update(parameters)
            status = _run_session(plan, args.timeout, companions=running.processes)
    return _demo_outcome(plan, status, bool(getattr(args, "exercise", None)))


def _demo_outcome(plan: SessionPlan, status: int, exercise_metrics: bool = False) -> int:
    """Say whether the demo's session completed (with its exercise metrics if asked); return the exit status."""
    report = load_report(plan.report_path)
    if report is None:
        print(f"{PROG}: demo failed: no session report was written", file=sys.stderr, flush=True)
        return status or 1
    if status != 0 or report.get("ended") != "completed":
        print(
            f"{PROG}: demo failed: session {report.get('ended', '?')}: {report.get('end_reason', '?')}",
            file=sys.stderr,
            flush=True,
        )
        return status or 1
    if exercise_metrics:
        from rehab_robot.session.exercises import format_exercise_metrics
        print(format_exercise_metrics(report), flush=True)
    print(f"{PROG}: demo completed", flush=True)
    return 0


def _demo_exercise(texts: dict, exercise: str) -> None:
    """``demo --exercise TYPE``: the shipped protocol of that type, with the virtual patient of the sim."""
    from rehab_robot import resources
    from rehab_robot.session.exercises import DEMO_VIRTUAL_PATIENT, EXAMPLE_PROTOCOLS

    path = resources.share_dir() / "config" / "protocols" / EXAMPLE_PROTOCOLS[exercise]
    if texts.setdefault("protocol", str(path)) != str(path):
        raise ConfigError(f"demo --exercise {exercise} runs {path}; give either --exercise or protocol:=...")
    if exercise != "passive_rom" and texts.setdefault("hardware", "sim") in ("sim", "sim_faults"):
        texts.setdefault("hardware_options", json.dumps({"virtual_patient": DEMO_VIRTUAL_PATIENT}))


def cmd_history(args: argparse.Namespace) -> int:
    """``rehab-robot history PATIENT_ID``: the patient's progression, one session a row."""
    from rehab_robot.session.history import format_history, history_path, read_history

    directory = Path(args.history_dir) if args.history_dir else Path(args.output_dir) / "history"
    path = history_path(directory, args.patient_id)
    try:
        data = read_history(path)
    except FileNotFoundError:
        raise ConfigError(f"no history for patient {args.patient_id!r}: {path} does not exist "
                          f"(sessions of this patient write it; see --history-dir)") from None
    except OSError as exc:
        raise ConfigError(f"history file {path}: cannot be read: {exc.strerror or exc}") from None
    print(format_history(data), flush=True)
    return 0


def cmd_backends(args: argparse.Namespace) -> int:  # noqa: ARG001 - uniform signature
    """``rehab-robot backends``: list the registered hardware backends."""
    default = next(a.default for a in graph.launch_arguments() if a.name == "hardware")
    for name, target in sorted(available_backends().items()):
        print(f"{name:<12} {target}{'  (default)' if name == default else ''}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """``rehab-robot check``: validate a patient profile and a protocol."""
    urdf = args.robot_description or next(
        a.default for a in graph.launch_arguments() if a.name == "robot_description"
    )
    check_session_files(args.patient, args.protocol, urdf)
    print(f"OK: patient {args.patient} and protocol {args.protocol} are valid for {urdf}")
    return 0


def cmd_repair_bag(args: argparse.Namespace) -> int:
    """``rehab-robot repair-bag``: make an interrupted bag readable."""
    if not os.path.exists(args.path):
        raise ConfigError(f"bag {args.path!r} does not exist")
    summary = repair_bag(Path(args.path))
    if summary is not None:
        print(summary)
    return 0


def available_emulators() -> list[str]:
    """Return the device emulators of :mod:`rehab_robot.emulators` by name."""
    import pkgutil

    import rehab_robot.emulators

    return sorted(m.name for m in pkgutil.iter_modules(rehab_robot.emulators.__path__) if not m.name.startswith("_"))


def cmd_emulate(args: argparse.Namespace) -> int:
    """``rehab-robot emulate DEVICE ...``: run an emulated device until Ctrl-C."""
    import importlib

    emulators = available_emulators()
    if args.device not in emulators:
        raise ConfigError(f"unknown device {args.device!r} to emulate; available: {', '.join(emulators) or 'none'}")
    module = importlib.import_module(f"rehab_robot.emulators.{args.device}")
    return module.main(list(args.options))


def _describe_value(value: Any) -> str:
    if isinstance(value, graph.Arg):
        return f"$({value.name})"
    if isinstance(value, graph.PathJoin):
        return "/".join(part if isinstance(part, str) else _describe_value(part) for part in value.parts)
    if isinstance(value, graph.ArgEquals):
        return f"$({value.name}) == {value.value!r}"
    return repr(value)


def cmd_graph(args: argparse.Namespace) -> int:  # noqa: ARG001 - uniform signature
    """``rehab-robot graph``: print the nodes, their parameters and the launch arguments."""
    print("launch arguments (name:=value):")
    for argument in graph.launch_arguments():
        print(f"  {argument.name} ({argument.type.__name__}, default {argument.default!r})")
        print(f"      {argument.description}")
    print("\nnodes (stop order: lowest stop_rank first):")
    for spec in sorted(graph.nodes(), key=lambda s: s.stop_rank):
        flags = ", ends the graph on exit 0" if spec.ends_graph else ""
        if spec.only_if is not None:
            flags += f", only with {spec.only_if.name}:={spec.only_if.value}"
        print(f"  {spec.name} (executable {spec.executable}, stop_rank {spec.stop_rank}{flags})")
        for name, value in spec.parameters.items():
            print(f"      {name} = {_describe_value(value)}")
    print("\nrecorded topics:")
    for topic in graph.RECORDED_TOPICS:
        print(f"  {topic.name} [{topic.type}]: {topic.description}")
    return 0


# --------------------------------------------------------------------------- main


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2), like every other user error here."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _exercise_types() -> tuple[str, ...]:
    from rehab_robot.session.profiles import EXERCISE_TYPES
    return EXERCISE_TYPES


def build_parser() -> argparse.ArgumentParser:
    """Return the ``rehab-robot`` argument parser."""
    parser = _Parser(prog=PROG, description="Start and inspect rehab_robot sessions.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    launch_help = "launch arguments name:=value (see `rehab-robot graph`)"
    run = sub.add_parser("run", help="start a session: every node as its own process")
    run.add_argument("arguments", nargs="*", metavar="name:=value", help=launch_help)
    run.add_argument("--hardware", help="same as hardware:=X")
    run.add_argument("--patient", help="same as patient:=FILE")
    run.add_argument("--protocol", help="same as protocol:=FILE")
    run.add_argument("--timeout", type=float, default=None, help="stop and fail after this many [s]")
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser("demo", help="a complete session with the shipped examples, simulated or on emulated hardware")
    demo.add_argument("arguments", nargs="*", metavar="name:=value", help=launch_help)
    rigs = "; ".join(f"{name}: {emulated_rigs.RIGS[name].description}" for name in emulated_rigs.available_rigs())
    demo.add_argument("--hardware", default="sim", metavar="NAME",
                      help=f"the arm to run on (default sim). {rigs}")
    demo.add_argument("--timeout", type=float, default=DEMO_TIMEOUT,
                      help=f"stop and fail after this many [s] (default {DEMO_TIMEOUT:g})")
    demo.add_argument("--exercise", choices=list(_exercise_types()),
                      help="run the shipped example of this exercise type with a virtual patient")
    demo.set_defaults(func=cmd_demo)

    history = sub.add_parser("history", help="print a patient's progression over their sessions")
    history.add_argument("patient_id", help="the patient's pseudonymous id")
    history.add_argument("--output-dir", default="sessions", help="the sessions folder (default: sessions); "
                         "the history is in its history/ folder")
    history.add_argument("--history-dir", help="the history folder itself (default: OUTPUT_DIR/history)")
    history.set_defaults(func=cmd_history)

    backends = sub.add_parser("backends", help="list the hardware backends")
    backends.set_defaults(func=cmd_backends)

    check = sub.add_parser("check", help="validate a patient profile and a protocol")
    check.add_argument("--patient", required=True, help="patient profile YAML file")
    check.add_argument("--protocol", required=True, help="exercise protocol YAML file")
    check.add_argument("--robot-description", help="URDF of the arm (default: the shipped one)")
    check.set_defaults(func=cmd_check)

    repair = sub.add_parser("repair-bag", help="make an interrupted session bag readable")
    repair.add_argument("path", help="the bag folder")
    repair.set_defaults(func=cmd_repair_bag)

    graph_cmd = sub.add_parser("graph", help="print the nodes, parameters and launch arguments")
    graph_cmd.set_defaults(func=cmd_graph)

    emulate = sub.add_parser("emulate", help="run an emulated device (for tests and demos without hardware)")
    emulate.add_argument("device", help="the device to emulate (rehab_robot.emulators.DEVICE)")
    emulate.add_argument("options", nargs=argparse.REMAINDER, help="the emulator's own options (DEVICE --help)")
    emulate.set_defaults(func=cmd_emulate)

    # The operator's commands (a second terminal, a running graph): rehab_robot.operator.
    operator_cli.add_subcommands(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``rehab-robot``; returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse takes one run of positionals; name:=value tokens after an option land here.
    if extra and hasattr(args, "arguments") and not any(t.startswith("-") for t in extra):
        args.arguments += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
    except RehabRobotError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:  # Ctrl-C outside the supervised run (e.g. while validating)
        return 130


if __name__ == "__main__":
    sys.exit(main())
