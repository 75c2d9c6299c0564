"""What every rehab_robot node shares: start-up, parameters, diagnostics, quiet shutdown."""

from __future__ import annotations

import functools
import math
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from std_msgs.msg import Bool

from rehab_robot import graph
from rehab_robot.errors import ConfigError, RehabRobotError
from rehab_robot.nodes.nonblocking import LatestValuePublisher
from rehab_robot.safety.gate import HeartbeatMonitor

OK = DiagnosticStatus.OK
WARN = DiagnosticStatus.WARN
ERROR = DiagnosticStatus.ERROR


#: QoS of the publishers of high-rate state topics (see graph.TopicSpec.streaming): reliable,
#: newest samples, as ros2_control's joint_state_broadcaster does, so that a subscriber with
#: default QoS (rqt, MoveIt, a user's script) receives them and none of them sees an
#: incompatible-QoS event.
STREAMING_QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=10)
#: QoS of our own subscribers of streaming topics: best effort, so a lost sample is a gap
#: that the next one fills, never a stall while the reliable protocol repairs it.
STREAMING_SUBSCRIBER_QOS = QoSProfile(
    reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST, depth=10
)
#: QoS of event topics (status, diagnostics): reliable.
EVENT_QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=10)


def topic_qos(topic: str) -> QoSProfile:
    """Return the QoS of the publisher of graph topic ``topic``."""
    spec = graph.topic_spec(topic)
    if spec is not None and spec.streaming:
        return STREAMING_QOS
    if spec is not None and spec.keep_last_for_late_joiners:
        # Messages that must survive discovery (trajectories, status): kept for late joiners.
        return QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST,
                          depth=spec.depth, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    return EVENT_QOS


def subscriber_qos(topic: str) -> QoSProfile:
    """Return the QoS our own subscribers of graph topic ``topic`` use."""
    spec = graph.topic_spec(topic)
    if spec is not None and spec.streaming:
        return STREAMING_SUBSCRIBER_QOS
    return topic_qos(topic)


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter: its default (which fixes its type), meaning and allowed values.

    Attributes:
        name: Parameter name.
        default: Default value; its Python type is the parameter type.
        description: What it is, with units.
        allowed: Human text of the allowed values, used in error messages.
        check: Returns True when a value is allowed.
    """

    name: str
    default: Any
    description: str
    allowed: str = ""
    check: Optional[Callable[[Any], bool]] = None


def positive(value: float) -> bool:
    """True for a finite number > 0."""
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def non_empty(value: str) -> bool:
    """True for a non-blank string."""
    return isinstance(value, str) and value.strip() != ""


def declare_parameters(node: Node, specs: Sequence[ParamSpec]) -> dict[str, Any]:
    """Declare ``specs`` on ``node`` read-only and return their validated values.

    Raises:
        ConfigError: naming the node, the parameter, the value and what is allowed.
    """
    values = {}
    for spec in specs:
        descriptor = ParameterDescriptor(description=spec.description, read_only=True)
        try:
            value = node.declare_parameter(spec.name, spec.default, descriptor).value
        except Exception as exc:  # rclpy raises several types for a mistyped override
            raise ConfigError(
                f"parameter {spec.name!r}: {exc}; expected "
                f"{type(spec.default).__name__}{' ' + spec.allowed if spec.allowed else ''}"
            ) from None
        if isinstance(spec.default, float) and isinstance(value, int):
            value = float(value)
        if spec.check is not None and not spec.check(value):
            raise ConfigError(
                f"parameter {spec.name!r} = {value!r} is not allowed; "
                f"allowed: {spec.allowed or 'see the node documentation'}"
            )
        values[spec.name] = value
    node.add_on_set_parameters_callback(
        lambda params: SetParametersResult(
            successful=False, reason="rehab_robot parameters are fixed at start-up"
        )
    )
    return values


def watch_heartbeat_and_drives(subscribe: Callable[[type, str, Callable], Any], monitor: HeartbeatMonitor) -> None:
    """Feed ``monitor`` with the safety heartbeat and with the driver's stops.

    ``subscribe(msg_type, topic, callback)`` subscribes with the topic's graph QoS: a
    :class:`~rehab_robot.nodes.control_domain.ControlDomain`'s, or :func:`graph_subscriber`'s.

    A stop of the drives (``hardware/status`` counts them) is an interruption for every
    node, whatever made the driver stop, even a heartbeat gap only the driver saw: all
    parts then agree that the arm stopped, and no plan outlives the stop.
    """
    def on_heartbeat(msg: Bool) -> None:
        monitor.on_heartbeat(time.monotonic(), msg.data)

    stops_seen: list[int] = []

    def on_hardware_status(msg: DiagnosticStatus) -> None:
        values = {kv.key: kv.value for kv in msg.values}
        try:
            stops = int(values["quick_stops"])
        except (KeyError, ValueError):
            return
        if stops_seen and stops > stops_seen[0]:
            monitor.on_drives_stopped(msg.message)
        stops_seen[:] = [stops]

    subscribe(Bool, "safety/heartbeat", on_heartbeat)
    subscribe(DiagnosticStatus, "hardware/status", on_hardware_status)


def graph_subscriber(node: Node) -> Callable[[type, str, Callable], Any]:
    """Return ``subscribe(msg_type, topic, callback)`` on ``node`` with the topic's graph QoS."""
    return lambda msg_type, topic, callback: node.create_subscription(msg_type, topic, callback,
                                                                       subscriber_qos(topic))


class DiagnosticsPublisher:
    """Publishes one DiagnosticStatus of a node on ``/diagnostics`` at a fixed rate.

    Args:
        node: The node that owns the publisher.
        report: Returns ``(level, message, values)`` describing the node now.
        period: Publication period in [s].
    """

    def __init__(
        self,
        node: Node,
        report: Callable[[], tuple[int, str, dict[str, Any]]],
        period: float = 1.0,
    ) -> None:
        self._node = node
        self._report = report
        # Written by a thread of its own, GIL released: a write that waits for DDS (a tool
        # joining) must hold up neither the node's loop thread nor its executor, which
        # also serves the control chain's subscriptions.
        self._publisher = LatestValuePublisher(
            node.create_publisher(DiagnosticArray, "/diagnostics", EVENT_QOS), "pub_diagnostics")
        self._timer = node.create_timer(period, self.publish)

    def publish(self) -> None:
        """Publish the node's status now."""
        level, message, values = self._report()
        took, name = getattr(self._node, "longest_callback", (0.0, ""))
        if name:
            values = {**values, "longest_callback": f"{name} {took * 1e3:.1f} ms"}
        status = DiagnosticStatus(
            level=level,
            name=f"rehab_robot: {self._node.get_name()}",
            message=message,
            hardware_id="rehab_arm",
            values=[KeyValue(key=str(k), value=str(v)) for k, v in values.items()],
        )
        array = DiagnosticArray(status=[status])
        array.header.stamp = self._node.get_clock().now().to_msg()
        self._publisher.offer(array)


class GracefulNode(Node):
    """A node that gets a chance to finish its work on SIGINT/SIGTERM.

    Subclasses set :attr:`node_name` and override :meth:`on_shutdown_request`; it is
    called once, while the node can still publish, and returns when the node may be
    destroyed.
    """

    #: Default ROS name of the node, also used in start-up error messages.
    node_name = "rehab_robot_node"
    #: SCHED_FIFO priority of the whole process (every thread), set before DDS starts; 0: none.
    realtime_priority = 0
    #: Niceness used instead where SCHED_FIFO is not permitted; 0 keeps it.
    niceness = 0
    #: Traceback text of the first exception a callback raised (a bug): the node then exits.
    fatal_error: Optional[str] = None
    #: Duration [s] and name of the longest callback so far.
    longest_callback: tuple[float, str] = (0.0, "")
    #: The node's side on the control chain's private DDS domain
    #: (:class:`~rehab_robot.nodes.control_domain.ControlDomain`); set by the chain's nodes.
    control_domain = None

    def guarded(self, callback: Callable) -> Callable:
        """Return ``callback`` wrapped so that an exception in it ends the node (see below)."""
        # The events executor logs callback exceptions and carries on; a safety node with
        # a broken callback must stop instead (the launcher then stops the graph).
        # The longest callback is reported on /diagnostics: the executor thread holds the
        # GIL while a callback runs, so a slow one is what a loop thread would wait for.
        name = getattr(callback, "__name__", "callback")

        @functools.wraps(callback)
        def guarded(*args, **kwargs):
            started = time.monotonic()
            try:
                return callback(*args, **kwargs)
            except Exception:  # noqa: BLE001 - any exception here is a bug to report
                if self.fatal_error is None:
                    self.fatal_error = traceback.format_exc()
                raise
            finally:
                took = time.monotonic() - started
                if took > self.longest_callback[0]:
                    self.longest_callback = (took, name)

        return guarded

    def create_timer(self, timer_period_sec, callback, *args, **kwargs):
        """Like :meth:`rclpy.node.Node.create_timer`; an exception in ``callback`` ends the node."""
        return super().create_timer(timer_period_sec, self.guarded(callback), *args, **kwargs)

    def create_subscription(self, msg_type, topic, callback, *args, **kwargs):
        """Like :meth:`rclpy.node.Node.create_subscription`; an exception in ``callback`` ends the node."""
        return super().create_subscription(msg_type, topic, self.guarded(callback), *args, **kwargs)

    def create_service(self, srv_type, srv_name, callback, *args, **kwargs):
        """Like :meth:`rclpy.node.Node.create_service`; an exception in ``callback`` ends the node."""
        return super().create_service(srv_type, srv_name, self.guarded(callback), *args, **kwargs)

    def on_shutdown_request(self, executor: SingleThreadedExecutor) -> None:
        """Finish work before exit (default: nothing)."""

    def finished(self) -> bool:
        """Return True when the node wants to exit on its own (default: never)."""
        return False


def raise_priority(realtime_priority: int, niceness: int) -> Optional[str]:
    """Schedule this process's threads ahead of normal ones; return how, if not as asked.

    Every thread of the process gets ``SCHED_FIFO`` at ``realtime_priority`` (1..99), as
    ros2_control's realtime_tools gives its control thread; where that is not permitted (it
    needs CAP_SYS_NICE or an ``rtprio`` limit), the niceness ``niceness`` instead.

    Call it once the node is built. Linux applies both per thread, so each thread that
    exists is set (the DDS threads of ``rclpy.init()``, the loop's, the executor's), and
    threads created later inherit from their creator. If the DDS threads ran at normal
    priority, a CPU-bound neighbour could preempt one of them while it holds the GIL or a
    lock that the loop needs (priority inversion). Start-up itself (imports, the URDF
    model: seconds of CPU) stays at normal priority: at real-time priority, several nodes
    starting at once would starve every other process of the machine for that long (an
    emulated drive then missed its SYNCs).
    """
    def each_thread(apply) -> None:
        try:
            threads = [int(t) for t in os.listdir("/proc/self/task")]
        except OSError:
            threads = [0]
        for tid in threads:
            try:
                apply(tid)
            except ProcessLookupError:
                pass  # the thread ended meanwhile

    if realtime_priority > 0:
        try:
            each_thread(lambda tid: os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(realtime_priority)))
            return None
        except (PermissionError, OSError) as exc:
            fifo_problem = f"SCHED_FIFO {realtime_priority} not permitted ({exc})"
    else:
        fifo_problem = ""
    try:
        each_thread(lambda tid: os.setpriority(os.PRIO_PROCESS, tid, niceness))
    except (PermissionError, OSError) as exc:
        return f"running at normal priority: {fifo_problem}; nice {niceness} not permitted ({exc})"
    return f"running at nice {niceness}: {fifo_problem}" if fifo_problem else None


def lock_memory() -> Optional[str]:
    """Lock every page of this process in RAM (``mlockall``); return why not, or None.

    The control loops must never wait for the disk. Without this, a busy machine (a tool
    starting up reads hundreds of MB of libraries) evicts pages of our own code and
    libraries from the page cache, and the loop thread that next runs them stalls in a
    page fault for tens of milliseconds. Real-time control stacks do the same (ros2_control's
    ``realtime_tools::lock_memory``). It needs CAP_IPC_LOCK or a large enough
    ``ulimit -l``; without it the node runs unlocked and says so.
    """
    import ctypes

    mcl_current, mcl_future = 1, 2
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.mlockall(mcl_current | mcl_future) != 0:
            return f"memory not locked (mlockall: {os.strerror(ctypes.get_errno())}); page faults may delay the loop"
    except (OSError, AttributeError) as exc:
        return f"memory not locked ({exc}); page faults may delay the loop"
    return None


def name_process(node: Node) -> None:
    """Show the node's name as the process's name in ``ps``, ``top`` and ``pgrep``.

    The command line becomes the node's (namespaced) name and the kernel's 15-character
    ``comm`` its first 15 characters, so ``pgrep hardware_driver`` and
    ``pgrep -f safety_supervisor`` find the node, under ``rehab-robot`` and ``ros2 launch`` alike.
    """
    namespace = node.get_namespace().rstrip("/")
    title = f"{namespace}/{node.get_name()}" if namespace else node.get_name()
    try:
        import setproctitle
    except ImportError:  # the name is a convenience: a node runs without it
        return
    setproctitle.setproctitle(title)
    setproctitle.setthreadtitle(node.get_name()[:15])


def make_executor(context=None):
    """Return the executor for a node: rclpy's EventsExecutor where it exists.

    At 500 Hz state traffic the EventsExecutor (C++ event queue) costs a fraction of the
    CPU of the default wait-set executor, which matters on a small machine running the
    whole graph.
    """
    try:
        from rclpy.experimental import EventsExecutor
    except ImportError:
        return SingleThreadedExecutor(context=context)
    return EventsExecutor(context=context)


def run(node_factory: Callable[[], GracefulNode], args: Optional[list[str]] = None) -> int:
    """Start rclpy, build the node, spin until a signal or the node finishes, and exit quietly.

    User errors (:class:`RehabRobotError`) are printed as one line; the exit status is 2.
    Returns the process exit status.
    """
    problems = []
    realtime = bool(getattr(node_factory, "realtime_priority", 0) or getattr(node_factory, "niceness", 0))
    if realtime:
        problems.append(lock_memory())
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop_requested = []

    def request_stop(signum, frame):  # noqa: ARG001 - signal handler signature
        stop_requested.append(signum)

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    node = None
    status = 0
    try:
        node = node_factory()
        name_process(node)
        if realtime:
            problems.append(raise_priority(node_factory.realtime_priority, node_factory.niceness))
        for problem in filter(None, problems):
            if problem.startswith("running at nice"):
                # Still ahead of normal processes: worth knowing, not a warning.
                node.get_logger().info(problem)
            else:
                node.get_logger().warning(problem)
        executor = make_executor()
        executor.add_node(node)
        if node.control_domain is not None and node.control_domain.node is not None:
            # One executor, one thread for both domains: callbacks keep running one at a time.
            executor.add_node(node.control_domain.node)
        while rclpy.ok() and not stop_requested and not node.finished() and node.fatal_error is None:
            try:
                executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - the wait-set executor re-raises callback errors
                if node.fatal_error is None:
                    node.fatal_error = traceback.format_exc()
        if node.fatal_error is not None:
            print(f"{node.get_name()}: internal error, stopping:\n{node.fatal_error}", file=sys.stderr, flush=True)
            status = 1
        node.on_shutdown_request(executor)
    except RehabRobotError as exc:
        name = getattr(node_factory, "node_name", sys.argv[0].rsplit("/", 1)[-1])
        print(f"{name}: error: {exc}", file=sys.stderr, flush=True)
        status = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            if node.control_domain is not None:
                node.control_domain.close()
            node.destroy_node()
        rclpy.try_shutdown()
    return status
