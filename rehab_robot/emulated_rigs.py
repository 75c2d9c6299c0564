"""Emulated hardware rigs: the arm's devices emulated, for ``rehab-robot demo --hardware NAME``.

A rig names the device emulators a demo starts (each ``rehab-robot emulate DEVICE`` in a
process of its own, behind a real OS channel: a pseudo-terminal, a UDP port), how to
learn where each one listens (a pattern over what it prints when it is ready) and which
launch arguments point the session graph at them. ``sim`` is the simulated arm alone (no
emulator); ``dynamixel`` is the arm on four emulated Dynamixel servos with the cuff force
from an emulated ATI Net F/T.

Adding a rig (e.g. CANopen drives) is one entry in :data:`RIGS`: its
:class:`EmulatorSpec` list and a ``setup`` function that turns the emulators' endpoints
into launch arguments. No rclpy here: :class:`RunningRig` only starts, watches and stops
processes.
"""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import yaml

from rehab_robot import resources
from rehab_robot.child_process import entry_point_command
from rehab_robot.errors import ConfigError, RehabRobotError

#: Seconds an emulator gets to say it is ready (the Dynamixel one loads pinocchio first).
START_TIMEOUT = 30.0
#: Seconds an emulator gets to exit after SIGINT, before SIGKILL.
STOP_TIMEOUT = 5.0
#: Lines of an emulator's output kept for error messages.
KEPT_LINES = 20


class EmulatorError(RehabRobotError):
    """An emulator of a rig did not start or stopped on its own; the message names it."""


@dataclass(frozen=True)
class RigFolders:
    """Where a running rig keeps its files.

    Attributes:
        run_dir: Temporary folder of this run (pseudo-terminal links); removed afterwards.
        record_dir: Folder kept with the session (configuration and profile files the
            graph and the emulators are given), so the session says what it ran against.
    """

    run_dir: Path
    record_dir: Path


@dataclass(frozen=True)
class EmulatorSpec:
    """One emulated device of a rig: ``rehab-robot emulate DEVICE OPTIONS``.

    Attributes:
        name: Process name in the output (``[name] ...``) and in messages.
        device: Emulator module, ``rehab_robot.emulators.DEVICE``.
        options: ``options(folders)`` returns its command-line options; it may write the
            files they name (a profile) into ``folders.record_dir``.
        ready: Pattern searched in each line the emulator prints; the first match means
            it serves, and its named groups are its endpoints (``port``, ``pty``, ...).
        realtime_priority: SCHED_FIFO priority given to its process once started (0: none).
            A device answers whatever the host does: an emulator at normal priority queues
            behind the control nodes (SCHED_FIFO 48-50) and everything else on a busy
            machine, and its late data would stop the arm for a reason real hardware has not.
            It must sleep between its messages (both emulators wait in ``select``).
    """

    name: str
    device: str
    options: Callable[[RigFolders], list[str]]
    ready: re.Pattern
    realtime_priority: int = 10


@dataclass(frozen=True)
class RigSetup:
    """What the session graph is given to run against a started rig.

    Attributes:
        arguments: Launch argument texts (``hardware``, ``hardware_options``, ``ft_sensor``, ...).
        defaults: Launch argument texts the user may override (``loop_rate``).
        node_parameters: node name -> parameters set on top of the graph's, for settings
            the graph has no launch argument for (the Net F/T node's UDP ``port`` and ``rate``,
            the session's ``ready_timeout``).
    """

    arguments: dict[str, str]
    defaults: dict[str, str] = field(default_factory=dict)
    node_parameters: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class EmulatedRig:
    """An emulated hardware setup.

    Attributes:
        name: ``--hardware`` value of ``rehab-robot demo``.
        description: One line for ``--help`` and messages.
        emulators: Started in this order, stopped in the reverse order.
        setup: ``setup(folders, endpoints)`` with ``endpoints[emulator name]`` the named
            groups of its ready line; returns the graph's launch arguments.
        sets: The launch arguments ``setup`` gives (the demo refuses them from the user).
    """

    name: str
    description: str
    emulators: tuple[EmulatorSpec, ...]
    setup: Callable[[RigFolders, Mapping[str, Mapping[str, str]]], RigSetup]
    sets: tuple[str, ...] = ()


# --------------------------------------------------------------------------- the rigs

#: The Dynamixel rig's answer timeout beyond the wire time [s], and how many cycles in a row
#: a servo may miss before it is a fault: the emulator is a Python process on a possibly
#: shared machine, where it stalls for 10-20 ms now and then (docs/hardware/dynamixel.md,
#: "The emulator"). 10 cycles at 250 Hz tolerate a 40 ms stall; a real bus keeps 3.
DYNAMIXEL_RESPONSE_MARGIN = 0.02
DYNAMIXEL_MAX_MISSED_CYCLES = 10
#: The Dynamixel rig's driver loop rate [Hz] unless the user gives ``loop_rate:=``: what
#: docs/hardware/dynamixel.md plans for a real bus, and half the CPU of 500 Hz for the
#: driver and the emulator, which share the machine with five more processes.
DYNAMIXEL_LOOP_RATE = "250.0"
#: RDT output rate of the rig's Net F/T [Hz] (set on a real sensor's web page; the node's
#: ``rate`` must match): 500 Hz, the wrench rate of the simulated demo. At 1000 Hz the
#: sensor node, the supervisor and the recorder, all Python, handle twice the messages.
NETFT_RDT_RATE = 500.0
#: How long the session waits for the arm to be ready (2 s of motion permission in a row)
#: [s]: twice the graph's default, for emulators and nodes starting on a busy machine.
#: Only the wait before the exercise; nothing moves before it ends.
READY_TIMEOUT = 60.0

#: The emulated patient's push on the cuff, as a Net F/T profile [N, N·m]: a slow sine
#: along the forearm (Fz) with a twist about it (Tz). Tz is the signature of the sensor:
#: the cuff's weight has no moment about the forearm axis (its centre lies on it), so the
#: driver's gravity compensation leaves Tz as the sensor sent it.
CUFF_FORCE_PROFILE = {
    "profile": "sine",
    "wrench": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    "amplitude": [0.0, 0.0, 3.0, 0.0, 0.0, 0.15],
    "frequency": 0.5,
}


def dynamixel_arm_config(folders: RigFolders, pty_link: Path) -> Path:
    """Write the shipped Dynamixel arm configuration with ``port`` = the emulator's pty link.

    Returns:
        The path of the file written to ``folders.record_dir``.
    """
    shipped = resources.share_dir() / "config" / "hardware" / "dynamixel_arm.yaml"
    config = yaml.safe_load(shipped.read_text(encoding="utf-8"))
    config["port"] = str(pty_link)
    config["response_margin"] = DYNAMIXEL_RESPONSE_MARGIN
    config["max_missed_cycles"] = DYNAMIXEL_MAX_MISSED_CYCLES
    path = folders.record_dir / "dynamixel_arm.yaml"
    header = (f"# The shipped arm ({shipped}) on the emulated servos of `rehab-robot demo --hardware dynamixel`:\n"
              f"# port = the emulator's pseudo-terminal link; response_margin and max_missed_cycles widened for an emulator.\n")
    path.write_text(header + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


#: The emulated CANopen bus, like the servos, shares the machine with the graph: the driver
#: runs at 250 Hz, where the full PDO layout fits (47.9 % bus load): the drives report their
#: velocity and take the velocity feed-forward, instead of both being derived from positions
#: timed by this host's jittery SYNC. A drive is lost only after 25 missed SYNC cycles or
#: 0.5 s without its heartbeat (a real bus keeps the shipped 3 and 0.15 s); 25 cycles at
#: 250 Hz ride out a 100 ms stall of the emulator on a machine busy with the graph.
CANOPEN_LOOP_RATE = "250.0"
CANOPEN_SLACK = {"pdo_layout": "full", "max_missed_cycles": 25, "heartbeat_timeout": 0.5, "sdo_timeout": 1.0}


def canopen_arm_config(folders: RigFolders, pty_link: Path) -> Path:
    """Write the shipped CANopen arm configuration on the emulator's SLCAN adapter (``pty_link``).

    Returns:
        The path of the file written to ``folders.record_dir``.
    """
    shipped = resources.share_dir() / "config" / "hardware" / "canopen_arm.yaml"
    config = yaml.safe_load(shipped.read_text(encoding="utf-8"))
    config.update(interface="slcan", channel=str(pty_link), bus_options={"sleep_after_open": 0},
                  eds=str(shipped.parent / config["eds"]), **CANOPEN_SLACK)
    path = folders.record_dir / "canopen_arm.yaml"
    header = (f"# The shipped arm ({shipped}) on the emulated drives of `rehab-robot demo --hardware canopen`:\n"
              f"# an SLCAN adapter on the emulator's pseudo-terminal link; timeouts widened for an emulator.\n")
    path.write_text(header + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _canopen_link(folders: RigFolders) -> Path:
    return folders.run_dir / "ttyCAN"


def _dynamixel_link(folders: RigFolders) -> Path:
    return folders.run_dir / "ttyDXL"


def _netft_options(folders: RigFolders) -> list[str]:
    profile = folders.record_dir / "netft_cuff_force.yaml"
    profile.write_text(yaml.safe_dump(CUFF_FORCE_PROFILE, sort_keys=False), encoding="utf-8")
    # Any free ports: two demos (or a demo and a test) on one machine never collide.
    return ["--port", "0", "--control-port", "0", "--rate", f"{NETFT_RDT_RATE:g}", "--profile", str(profile)]


DYNAMIXEL_EMULATOR = EmulatorSpec(
    name="dynamixel_emulator",
    device="dynamixel",
    options=lambda folders: ["--link", str(_dynamixel_link(folders))],
    ready=re.compile(r"^PTY (?P<pty>/\S+)"),
)

CANOPEN_EMULATOR = EmulatorSpec(
    name="canopen_emulator",
    device="canopen",
    options=lambda folders: ["--link", str(_canopen_link(folders))],
    ready=re.compile(r"^PTY (?P<pty>/\S+)"),
)

NETFT_EMULATOR = EmulatorSpec(
    name="netft_emulator",
    device="netft",
    options=_netft_options,
    ready=re.compile(r"RDT on (?P<host>[0-9.]+):(?P<port>\d+)(?:, control on [0-9.]+:(?P<control_port>\d+))?"),
)


def _sim_setup(folders: RigFolders, endpoints: Mapping[str, Mapping[str, str]]) -> RigSetup:  # noqa: ARG001
    return RigSetup({})  # today's demo: the graph's defaults, or whatever the user gave


def _dynamixel_setup(folders: RigFolders, endpoints: Mapping[str, Mapping[str, str]]) -> RigSetup:
    # The link, not the /dev/pts/N it points to: a stable name, as /dev/serial/by-id is.
    config = dynamixel_arm_config(folders, _dynamixel_link(folders))
    return _drives_with_netft("dynamixel", config, DYNAMIXEL_LOOP_RATE, endpoints)


def _canopen_setup(folders: RigFolders, endpoints: Mapping[str, Mapping[str, str]]) -> RigSetup:
    config = canopen_arm_config(folders, _canopen_link(folders))
    return _drives_with_netft("canopen", config, CANOPEN_LOOP_RATE, endpoints)


def _drives_with_netft(backend: str, config: Path, loop_rate: str,
                       endpoints: Mapping[str, Mapping[str, str]]) -> RigSetup:
    """The graph's arguments for ``backend`` configured by ``config``, the cuff force from the Net F/T emulator."""
    netft = endpoints[NETFT_EMULATOR.name]
    return RigSetup(
        arguments={
            "hardware": backend,
            "hardware_options": "{config: " + _flow_string(str(config)) + "}",
            "ft_sensor": "netft",
            "ft_sensor_address": netft["host"],
        },
        defaults={"loop_rate": loop_rate},
        node_parameters={"ft_sensor_driver": {"port": int(netft["port"]), "rate": NETFT_RDT_RATE},
                         "session_manager": {"ready_timeout": READY_TIMEOUT}},
    )


def _flow_string(text: str) -> str:
    """``text`` as a YAML double-quoted scalar (JSON's string syntax is one): a path with
    spaces, colons or braces stays one string."""
    return json.dumps(text)


#: Every emulated rig by ``--hardware`` name.
RIGS: dict[str, EmulatedRig] = {
    rig.name: rig
    for rig in (
        EmulatedRig("sim", "the simulated arm (pinocchio, passive patient); no emulated device", (), _sim_setup),
        EmulatedRig(
            "dynamixel",
            "four emulated Dynamixel Protocol 2.0 servos on a pseudo-terminal, cuff force from an emulated "
            "ATI Net F/T (RDT over UDP on localhost)",
            (DYNAMIXEL_EMULATOR, NETFT_EMULATOR),
            _dynamixel_setup,
            sets=("hardware", "hardware_options", "ft_sensor", "ft_sensor_address"),
        ),
        EmulatedRig(
            "canopen",
            "four emulated CiA 402 drives on a CANopen bus behind an SLCAN USB-CAN adapter (a pseudo-terminal), "
            "cuff force from an emulated ATI Net F/T (RDT over UDP on localhost)",
            (CANOPEN_EMULATOR, NETFT_EMULATOR),
            _canopen_setup,
            sets=("hardware", "hardware_options", "ft_sensor", "ft_sensor_address"),
        ),
    )
}


def available_rigs() -> list[str]:
    """Return the names of the emulated rigs, ``sim`` first."""
    return sorted(RIGS, key=lambda name: (name != "sim", name))


def get_rig(name: str) -> EmulatedRig:
    """Return the rig called ``name``.

    Raises:
        ConfigError: naming the rigs there are, for an unknown name.
    """
    try:
        return RIGS[name]
    except KeyError:
        raise ConfigError(f"no emulated hardware setup {name!r} for the demo; available: "
                          f"{', '.join(available_rigs())}") from None


# --------------------------------------------------------------------------- processes


def emulator_command(device: str, options: Sequence[str]) -> list[str]:
    """Return the argv that runs ``rehab-robot emulate DEVICE OPTIONS`` with this interpreter."""
    # The parent is the thread that calls Popen: RunningRig.start runs in the launcher's main thread.
    return entry_point_command("rehab_robot.launcher", "main", "rehab-robot", ["emulate", device, *options])


class _Emulator:
    """One started emulator: its process, its relayed output, its ready line's endpoints."""

    def __init__(self, spec: EmulatorSpec, command: list[str], relay: Callable[[str], None]) -> None:
        self.spec = spec
        self.lines: collections.deque[str] = collections.deque(maxlen=KEPT_LINES)
        self.endpoints: Optional[dict[str, str]] = None
        self.ready = threading.Event()
        self._relay = relay
        try:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal reaches only the launcher
            )
        except OSError as exc:
            raise EmulatorError(f"cannot start {spec.name}: {exc.strerror or exc}") from None
        self._reader = threading.Thread(target=self._read, name=f"{spec.name}-output", daemon=True)
        self._reader.start()

    def raise_priority(self) -> Optional[str]:
        """Give the process its real-time priority (once it serves: its start-up, imports
        included, stays at normal priority); return why not, if it could not be done."""
        if not self.spec.realtime_priority:
            return None
        try:
            os.sched_setscheduler(self.process.pid, os.SCHED_FIFO, os.sched_param(self.spec.realtime_priority))
        except (OSError, AttributeError) as exc:
            return f"{self.spec.name} runs at normal priority ({exc}); its data may be late on a busy machine"
        return None

    def _read(self) -> None:
        with self.process.stdout as pipe:
            for raw in iter(pipe.readline, b""):
                line = raw.decode(errors="replace").rstrip("\r\n")
                self.lines.append(line)
                self._relay(f"[{self.spec.name}] {line}")
                if self.endpoints is None:
                    match = self.spec.ready.search(line)
                    if match:
                        self.endpoints = {k: v for k, v in match.groupdict().items() if v is not None}
                        self.ready.set()
        self.ready.set()  # end of output: wake a waiter, who sees no endpoints

    def last_output(self) -> str:
        """The last lines it printed, for an error message."""
        return " | ".join(self.lines) if self.lines else "no output"

    def stop(self, timeout: float) -> Optional[int]:
        """SIGINT once it serves (the emulators release their port on it), SIGTERM before (it ends
        quietly while still starting), SIGKILL after ``timeout`` [s]; return the exit status."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGINT if self.endpoints is not None else signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                self.process.wait()
        self._reader.join(timeout=1.0)
        return self.process.returncode


class RunningRig:
    """Start a rig's emulators, hand out the graph's setup, stop them at the end.

    Use as a context manager: the emulators are stopped on leaving it, also on an
    exception or a KeyboardInterrupt.

    Args:
        rig: The rig.
        folders: Where its files go.
        relay: Receives each line the emulators print, as ``[name] line``; default: stderr.
        say: Receives the rig's own messages (which emulator stopped, how); default: stderr.
        start_timeout: How long each emulator gets to print its ready line [s].
    """

    def __init__(self, rig: EmulatedRig, folders: RigFolders, relay: Optional[Callable[[str], None]] = None,
                 say: Optional[Callable[[str], None]] = None, start_timeout: float = START_TIMEOUT) -> None:
        self.rig = rig
        self.folders = folders
        self.start_timeout = start_timeout
        self._relay = relay or _stderr_line
        self._say = say or _stderr_line
        self._emulators: list[_Emulator] = []

    def __enter__(self) -> "RunningRig":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def processes(self) -> dict[str, subprocess.Popen]:
        """Emulator name -> its process (the launcher stops the graph if one ends)."""
        return {e.spec.name: e.process for e in self._emulators}

    def start(self) -> RigSetup:
        """Start every emulator in turn, wait for each to be ready, return the graph's setup.

        Raises:
            EmulatorError: naming the emulator that did not start and what it printed; the
                emulators already started are stopped.
        """
        self.folders.run_dir.mkdir(parents=True, exist_ok=True)
        self.folders.record_dir.mkdir(parents=True, exist_ok=True)
        endpoints: dict[str, dict[str, str]] = {}
        try:
            for spec in self.rig.emulators:
                command = emulator_command(spec.device, spec.options(self.folders))
                emulator = _Emulator(spec, command, self._relay)
                self._emulators.append(emulator)
                ready = emulator.ready.wait(self.start_timeout)
                if emulator.endpoints is None:
                    emulator.stop(STOP_TIMEOUT)
                    if not ready:
                        problem = f"said nothing that means ready within {self.start_timeout:g} s"
                    else:
                        problem = f"exited ({_describe_status(emulator.process.returncode)})"
                    raise EmulatorError(f"{spec.name} ({spec.device}) {problem}; its output: {emulator.last_output()}")
                endpoints[spec.name] = emulator.endpoints
                note = emulator.raise_priority()
                if note:
                    self._say(note)
            return self.rig.setup(self.folders, endpoints)
        except BaseException:
            self.stop()
            raise

    def ended(self) -> Optional[str]:
        """Return a line naming the first emulator that exited on its own, or None."""
        for emulator in self._emulators:
            code = emulator.process.poll()
            if code is not None:
                return f"{emulator.spec.name} exited ({_describe_status(code)}); last output: {emulator.last_output()}"
        return None

    def stop(self) -> None:
        """Stop every emulator, the last started first; each says how it ended. Idempotent."""
        while self._emulators:
            emulator = self._emulators.pop()
            running = emulator.process.poll() is None
            code = emulator.stop(STOP_TIMEOUT)
            if running:
                self._say(f"stopped {emulator.spec.name} ({_describe_status(code)})")


def _describe_status(code: Optional[int]) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _stderr_line(text: str) -> None:
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # our own output is gone: the emulators still have to be stopped
