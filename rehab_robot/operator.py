"""The operator's command line: operate a running session from a second terminal.

Subcommands of ``rehab-robot`` (see docs/operator.md)::

    rehab-robot estop | reset | pause | resume | stop  [--namespace NS] [--domain N] [--timeout S]
    rehab-robot status [--once] [--namespace NS] [--domain N] [--timeout S] [--rate HZ]

The first five call the std_srvs/Trigger services ``safety/estop``, ``safety/reset``,
``session/pause``, ``session/resume`` and ``session/stop`` and print the answer in
one line. ``status`` shows one screen built from the graph's standard topics. Both use
only the graph's services and topics, so they need no ros2cli.

The screen is rendered by :func:`render_status`, a pure function of a plain state
dict (no rclpy), so it is unit-tested without a graph. rclpy is imported only by the
commands that talk to the graph.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import sys
import time
from typing import Any, Mapping, Optional, Sequence, TextIO

from rehab_robot.errors import ConfigError
from rehab_robot.ros_env import localhost_env

PROG = "rehab-robot"

#: Subcommand -> the std_srvs/Trigger service it calls (relative: resolved in --namespace).
COMMAND_SERVICES = {
    "estop": "safety/estop",
    "reset": "safety/reset",
    "pause": "session/pause",
    "resume": "session/resume",
    "stop": "session/stop",
}
COMMAND_HELP = {
    "estop": "latch a safety stop now: the arm stops and holds (safety/estop)",
    "reset": "clear a latched stop once its cause is gone (safety/reset)",
    "pause": "pause the exercise: a moving joint comes smoothly to rest (session/pause)",
    "resume": "resume a paused exercise (session/resume)",
    "stop": "end the session; its report is written (session/stop)",
}

#: Exit statuses of the operator commands.
EXIT_OK = 0
EXIT_REFUSED = 1  # the service answered success=false; ``status --once``: some topics gave no data
EXIT_UNAVAILABLE = 2  # the service did not answer in time; ``status --once``: no topic gave data

#: Topics the status screen is built from, in screen order.
STATUS_TOPICS = ("session/status", "joint_states", "ft_sensor/wrench", "safety/heartbeat", "safety/status",
                 "hardware/status")
#: Streaming data older than this [s] is shown as stale (the graph publishes them at >= 50 Hz).
STALE_AFTER = 1.0
#: Status topics sent on change only (repeated about once a second): older than this [s] is stale.
STALE_EVENT_AFTER = 5.0
#: Default service / data timeout [s].
DEFAULT_TIMEOUT = 5.0
#: Default refresh rate of the live screen [Hz].
DEFAULT_RATE = 5.0
#: Highest ROS_DOMAIN_ID Fast DDS can map to ports on Linux.
MAX_DOMAIN_ID = 232

CLEAR_SCREEN = "\033[H\033[2J"


# --------------------------------------------------------------------------- rendering (pure)


def _number(text: Any) -> Optional[float]:
    """Return ``text`` as a finite float, or None (missing, empty, not a number, NaN/inf)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def format_duration(seconds: Optional[float]) -> str:
    """Return ``seconds`` [s] as ``m:ss`` (``h:mm:ss`` from an hour), ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _age_note(age: Optional[float], limit: float) -> str:
    return f"  (stale: {age:.1f} s old)" if age is not None and age > limit else ""


def _no_data(topic: str) -> str:
    return f"(no data on {topic})"


def _session_lines(session: Optional[Mapping[str, Any]], age: Optional[float]) -> list[str]:
    if session is None:
        return [f"Session   {_no_data('session/status')}"]
    values = session.get("values", {})
    state = values.get("state", "?")
    message = session.get("message", "")
    lines = [f"Session   {state.upper()}{': ' + message if message and message != state else ''}"
             f"{_age_note(age, STALE_AFTER)}"]
    planned = values.get("repetitions_planned", "?")
    repetition = values.get("repetition", "?")
    completed = values.get("repetitions_completed", "?")
    progress = _number(values.get("progress"))
    progress_text = f"{100 * progress:.0f} %" if progress is not None else "?"
    lines.append(f"          repetition {repetition}/{planned}  ({completed} completed)   progress {progress_text}")
    elapsed = _number(values.get("elapsed_s"))
    remaining = _number(values.get("remaining_s"))
    lines.append(f"          elapsed {format_duration(elapsed)}   remaining ~{format_duration(remaining)}")
    target = _number(values.get("target_rad"))
    if target is not None:
        lines.append(f"          target    {values.get('joint', '?')} {math.degrees(target):7.1f} deg"
                     f"  {target:7.3f} rad")
    event = values.get("last_event", "")
    if event:
        when = _number(values.get("last_event_time_s"))
        lines.append(f"          last event {'[' + format_duration(when) + '] ' if when is not None else ''}{event}")
    else:
        lines.append("          last event (none yet)")
    return lines


def _joint_lines(joints: Optional[Sequence[tuple[str, Any]]], age: Optional[float]) -> list[str]:
    if joints is None:
        return [f"Joints    {_no_data('joint_states')}"]
    if not joints:
        return ["Joints    (joint_states carries no joints)"]
    width = max(len(name) for name, _ in joints)
    lines = []
    for index, (name, position) in enumerate(joints):
        head = "Joints    " if index == 0 else "          "
        value = _number(position)
        text = "?" if value is None else f"{math.degrees(value):7.1f} deg  {value:7.3f} rad"
        lines.append(f"{head}{name:<{width}}  {text}")
    lines[0] += _age_note(age, STALE_AFTER)
    return lines


def _force_line(force: Optional[float], age: Optional[float]) -> str:
    if force is None:
        return f"Cuff      {_no_data('ft_sensor/wrench')}"
    value = _number(force)
    text = "?" if value is None else f"{value:.1f} N"
    return f"Cuff      force {text}{_age_note(age, STALE_AFTER)}"


def _safety_lines(heartbeat: Optional[bool], heartbeat_age: Optional[float],
                  safety: Optional[Mapping[str, Any]], safety_age: Optional[float]) -> list[str]:
    if heartbeat is None:
        verdict = f"heartbeat: {_no_data('safety/heartbeat')}"
    elif heartbeat_age is not None and heartbeat_age > STALE_AFTER:
        verdict = f"HEARTBEAT LOST ({heartbeat_age:.1f} s without safety/heartbeat): the drives hold"
    else:
        verdict = "motion PERMITTED" if heartbeat else "motion STOPPED"
    lines = [f"Safety    {verdict}"]
    if safety is None:
        lines.append(f"          {_no_data('safety/status')}")
    else:
        values = safety.get("values", {})
        latched = "   LATCHED (needs reset)" if values.get("latched") == "True" else ""
        lines.append(f"          {safety.get('message', '')}{latched}{_age_note(safety_age, STALE_EVENT_AFTER)}")
    return lines


def _driver_line(hardware: Optional[Mapping[str, Any]], age: Optional[float]) -> str:
    if hardware is None:
        return f"Driver    {_no_data('hardware/status')}"
    values = hardware.get("values", {})
    state = values.get("state", "?")
    message = hardware.get("message", "")
    detail = f": {message}" if message and message != state else ""
    backend = f"  [{values['backend']}]" if values.get("backend") else ""
    return f"Driver    {state.upper()}{detail}{backend}{_age_note(age, STALE_EVENT_AFTER)}"


def render_status(state: Mapping[str, Any]) -> str:
    """Return the status screen (plain text, no escape codes) for a state snapshot.

    Args:
        state: A plain dict (see :func:`empty_state`):
            ``session``, ``safety``, ``hardware``: the latest DiagnosticStatus of
            session/status, safety/status, hardware/status as ``{"level": int,
            "message": str, "values": {key: str}}``, or None before the first one;
            ``joints``: ``[(name, position [rad]), ...]`` from joint_states, or None;
            ``force_n``: cuff force norm [N] from ft_sensor/wrench, or None;
            ``heartbeat``: the last safety/heartbeat, or None;
            ``age_s``: topic -> age [s] of its latest message (None: none yet);
            ``domain``, ``namespace``, ``clock``: shown in the title line.
    """
    ages = state.get("age_s", {})
    title = (f"rehab_robot status   ROS_DOMAIN_ID {state.get('domain', '?')}   "
             f"namespace {state.get('namespace') or '/'}   {state.get('clock', '')}").rstrip()
    lines = [title, ""]
    lines += _session_lines(state.get("session"), ages.get("session/status"))
    lines.append("")
    lines += _joint_lines(state.get("joints"), ages.get("joint_states"))
    lines.append(_force_line(state.get("force_n"), ages.get("ft_sensor/wrench")))
    lines.append("")
    lines += _safety_lines(state.get("heartbeat"), ages.get("safety/heartbeat"),
                           state.get("safety"), ages.get("safety/status"))
    lines.append(_driver_line(state.get("hardware"), ages.get("hardware/status")))
    silent = missing_topics(state)
    if silent:
        lines += ["", f"no data yet from: {', '.join(silent)}"]
    return "\n".join(lines)


def missing_topics(state: Mapping[str, Any]) -> list[str]:
    """Return the status topics that gave no message yet, in screen order."""
    ages = state.get("age_s", {})
    return [topic for topic in STATUS_TOPICS if ages.get(topic) is None]


def empty_state(domain: int, namespace: str) -> dict[str, Any]:
    """Return the state snapshot before any message arrived (see :func:`render_status`)."""
    return {
        "domain": domain, "namespace": namespace, "clock": "",
        "session": None, "safety": None, "hardware": None, "joints": None, "force_n": None, "heartbeat": None,
        "age_s": {topic: None for topic in STATUS_TOPICS},
    }


# --------------------------------------------------------------------------- environment


def resolve_domain(option: Optional[int], environ: Mapping[str, str]) -> int:
    """Return the ROS domain id: ``--domain``, else ROS_DOMAIN_ID, else 0 (the ROS default).

    Raises:
        ConfigError: for an id outside 0..232 or a ROS_DOMAIN_ID that is not a number.
    """
    if option is None:
        text = environ.get("ROS_DOMAIN_ID", "").strip()
        if not text:
            return 0
        try:
            option = int(text)
        except ValueError:
            raise ConfigError(f"ROS_DOMAIN_ID={text!r} is not a number; allowed: 0 to {MAX_DOMAIN_ID}") from None
        source = "ROS_DOMAIN_ID"
    else:
        source = "--domain"
    if not 0 <= option <= MAX_DOMAIN_ID:
        raise ConfigError(f"{source} {option} is out of range; allowed: 0 to {MAX_DOMAIN_ID}")
    return option


def keep_dds_local(domain: int) -> None:
    """Set this process's DDS environment as :func:`rehab_robot.ros_env.localhost_env` does (before rclpy.init).

    Discovery stays on localhost (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, plus
    ROS_LOCALHOST_ONLY=1 on the distros that ignore it), on ``domain``.
    """
    env = localhost_env(domain)
    for key in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY", "ROS_DOMAIN_ID", "RMW_IMPLEMENTATION"):
        if key in env:
            os.environ[key] = env[key]


def _check_timeout(value: float, option: str = "--timeout") -> float:
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{option} {value:g} is not allowed; allowed: a number of seconds > 0")
    return value


# --------------------------------------------------------------------------- ROS client


class _Client:
    """An rclpy context, node and executor of their own, on ``domain`` (a context manager)."""

    def __init__(self, domain: int, namespace: str) -> None:
        keep_dds_local(domain)
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        self.context = Context()
        # No rclpy signal handler: Ctrl-C is a plain KeyboardInterrupt that the commands handle.
        rclpy.init(context=self.context, domain_id=domain, signal_handler_options=SignalHandlerOptions.NO)
        try:
            self.node = rclpy.create_node(
                f"rehab_robot_operator_{os.getpid()}", namespace=namespace or "/", context=self.context,
                start_parameter_services=False, enable_rosout=False,
            )
        except Exception as exc:  # rclpy's name validation raises several types
            rclpy.shutdown(context=self.context)
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(f"--namespace {namespace!r} is not a valid ROS namespace: {first}") from None
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)

    def __enter__(self) -> "_Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _unavailable_hint(domain: int, namespace: str) -> str:
    return (f"is the session graph running (rehab-robot run), on ROS_DOMAIN_ID {domain} (the one `rehab-robot run` "
            f"printed; --domain N) and in namespace {namespace or '/'} (--namespace)?")


def call_service(command: str, namespace: str, domain: int, timeout: float, out: TextIO, err: TextIO) -> int:
    """Call the Trigger service of ``command`` and print its answer in one line.

    Returns:
        :data:`EXIT_OK` on success=true, :data:`EXIT_REFUSED` on success=false,
        :data:`EXIT_UNAVAILABLE` when the service did not answer within ``timeout`` [s].
    """
    from std_srvs.srv import Trigger

    deadline = time.monotonic() + timeout
    with _Client(domain, namespace) as ros:
        client = ros.node.create_client(Trigger, COMMAND_SERVICES[command])
        service = ros.node.resolve_service_name(COMMAND_SERVICES[command])
        # Polled finer than rclpy's wait_for_service (0.25 s steps): discovery on localhost takes about 0.5 s.
        while not client.service_is_ready() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not client.service_is_ready():
            err.write(f"{PROG}: service {service} not available within {timeout:g} s: {_unavailable_hint(domain, namespace)}\n")
            return EXIT_UNAVAILABLE
        future = client.call_async(Trigger.Request())
        ros.executor.spin_until_future_complete(future, timeout_sec=max(deadline - time.monotonic(), 0.5))
        if not future.done() or future.result() is None:
            err.write(f"{PROG}: service {service} did not answer within {timeout:g} s: {_unavailable_hint(domain, namespace)}\n")
            return EXIT_UNAVAILABLE
        response = future.result()
    try:
        out.write(f"{service}: {'success' if response.success else 'REFUSED'}: {response.message}\n")
        out.flush()
    except BrokenPipeError:
        _reader_gone()  # the answer still decides the exit status
    return EXIT_OK if response.success else EXIT_REFUSED


def _diagnostic(msg) -> dict[str, Any]:
    return {"level": int.from_bytes(msg.level, "little") if isinstance(msg.level, bytes) else int(msg.level),
            "message": msg.message, "values": {kv.key: kv.value for kv in msg.values}}


class StatusCollector:
    """Subscribes to :data:`STATUS_TOPICS` and turns the latest messages into a state snapshot.

    The streaming topics arrive serialized (``raw``) and only the latest one is decoded,
    when a screen is drawn: the view costs little even at the driver's 500 Hz.
    """

    def __init__(self, node, domain: int) -> None:
        from diagnostic_msgs.msg import DiagnosticStatus
        from geometry_msgs.msg import WrenchStamped
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Bool

        from rehab_robot.nodes.common import subscriber_qos

        self.namespace = node.get_namespace()
        self.domain = domain
        self._latest: dict[str, Any] = {}
        self._stamp: dict[str, float] = {}
        self._types = {"session/status": DiagnosticStatus, "joint_states": JointState,
                       "ft_sensor/wrench": WrenchStamped, "safety/heartbeat": Bool,
                       "safety/status": DiagnosticStatus, "hardware/status": DiagnosticStatus}
        for topic, msg_type in self._types.items():
            node.create_subscription(msg_type, topic, self._keeper(topic), subscriber_qos(topic), raw=True)

    def _keeper(self, topic: str):
        def keep(raw: bytes) -> None:
            self._latest[topic] = raw
            self._stamp[topic] = time.monotonic()
        return keep

    def silent(self) -> list[str]:
        """Return the topics that gave no message yet (cheap: nothing is decoded)."""
        return [topic for topic in STATUS_TOPICS if topic not in self._stamp]

    def snapshot(self) -> dict[str, Any]:
        """Return the state snapshot for :func:`render_status` now."""
        from rclpy.serialization import deserialize_message

        now = time.monotonic()
        state = empty_state(self.domain, self.namespace)
        state["clock"] = datetime.datetime.now().strftime("%H:%M:%S")
        decoded = {}
        for topic, raw in list(self._latest.items()):
            try:
                decoded[topic] = deserialize_message(raw, self._types[topic])
            except Exception:  # noqa: BLE001 - a bad message shows as missing rather than ending the view
                continue
            state["age_s"][topic] = now - self._stamp[topic]
        for topic, key in (("session/status", "session"), ("safety/status", "safety"),
                           ("hardware/status", "hardware")):
            if topic in decoded:
                state[key] = _diagnostic(decoded[topic])
        if "joint_states" in decoded:
            msg = decoded["joint_states"]
            positions = list(msg.position) + [None] * max(len(msg.name) - len(msg.position), 0)
            state["joints"] = list(zip(msg.name, positions))
        if "ft_sensor/wrench" in decoded:
            f = decoded["ft_sensor/wrench"].wrench.force
            state["force_n"] = math.sqrt(f.x * f.x + f.y * f.y + f.z * f.z)
        if "safety/heartbeat" in decoded:
            state["heartbeat"] = bool(decoded["safety/heartbeat"].data)
        return state


def show_status(namespace: str, domain: int, timeout: float, once: bool, rate: float,
                out: TextIO, err: TextIO) -> int:
    """Show the status screen: once (after up to ``timeout`` [s] for data), or live at ``rate`` [Hz] until Ctrl-C.

    Returns:
        Live: 0 (on Ctrl-C). Once: 0 when every topic gave data, :data:`EXIT_REFUSED` when
        some gave none, :data:`EXIT_UNAVAILABLE` when none did.
    """
    with _Client(domain, namespace) as ros:
        collector = StatusCollector(ros.node, domain)
        if once:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and collector.silent():
                ros.executor.spin_once(timeout_sec=0.05)
            # One more moment of spinning: every reading on the screen is fresh.
            end = time.monotonic() + 0.1
            while time.monotonic() < end:
                ros.executor.spin_once(timeout_sec=0.02)
            state = collector.snapshot()
            out.write(render_status(state) + "\n")
            out.flush()
            silent = missing_topics(state)
            if not silent:
                return EXIT_OK
            err.write(f"{PROG}: no data within {timeout:g} s on: {', '.join(silent)}"
                      f"{'; ' + _unavailable_hint(domain, namespace) if len(silent) == len(STATUS_TOPICS) else ''}\n")
            return EXIT_UNAVAILABLE if len(silent) == len(STATUS_TOPICS) else EXIT_REFUSED
        period = 1.0 / rate
        tty = out.isatty()
        next_draw = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= next_draw:
                next_draw = now + period
                screen = render_status(collector.snapshot()) + "\n\n(Ctrl-C to quit)\n"
                out.write(CLEAR_SCREEN + screen if tty else screen + "\n")
                out.flush()
            ros.executor.spin_once(timeout_sec=min(max(next_draw - time.monotonic(), 0.0), 0.05))


# --------------------------------------------------------------------------- subcommands


def _reader_gone() -> None:
    """Send the rest of stdout nowhere: its reader went away (``| head``), which ends the command, not an error."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def cmd_service(args: argparse.Namespace) -> int:
    """``rehab-robot estop|reset|pause|resume|stop``."""
    domain = resolve_domain(args.domain, os.environ)
    timeout = _check_timeout(args.timeout)
    try:
        return call_service(args.command, args.namespace, domain, timeout, sys.stdout, sys.stderr)
    except KeyboardInterrupt:
        return 130


def cmd_status(args: argparse.Namespace) -> int:
    """``rehab-robot status``."""
    domain = resolve_domain(args.domain, os.environ)
    timeout = _check_timeout(args.timeout)
    rate = _check_timeout(args.rate, "--rate")
    try:
        return show_status(args.namespace, domain, timeout, args.once, rate, sys.stdout, sys.stderr)
    except KeyboardInterrupt:
        return 0  # the way to leave the live view
    except BrokenPipeError:
        _reader_gone()
        return 0


def _connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--namespace", default="/", help="namespace the session graph runs in (default /)")
    parser.add_argument("--domain", type=int, default=None,
                        help="ROS_DOMAIN_ID of the session graph (default: $ROS_DOMAIN_ID, else 0)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"how long to wait for the service or the data [s] (default {DEFAULT_TIMEOUT:g})")


def add_subcommands(sub) -> None:
    """Add the operator subcommands to the ``rehab-robot`` subparsers ``sub``."""
    for command, service in COMMAND_SERVICES.items():
        parser = sub.add_parser(
            command, help=COMMAND_HELP[command],
            description=f"Call {service} (std_srvs/Trigger) and print its answer. Exit status: 0 success, "
                        f"1 refused (success=false), 2 not available within --timeout.",
        )
        _connection_options(parser)
        parser.set_defaults(func=cmd_service)
    status = sub.add_parser(
        "status", help="live view of the session, the arm, the safety state and the driver (Ctrl-C to quit)",
        description="Show session state, repetition, time elapsed and remaining, joint angles, cuff force, "
                    "safety and driver state; refreshes until Ctrl-C.",
    )
    _connection_options(status)
    status.add_argument("--once", action="store_true",
                        help="print one screen (after up to --timeout for data) and exit: 0 every topic gave data, "
                             "1 some gave none, 2 none did")
    status.add_argument("--rate", type=float, default=DEFAULT_RATE,
                        help=f"refresh rate of the live view [Hz] (default {DEFAULT_RATE:g})")
    status.set_defaults(func=cmd_status)
