"""session_recorder: records the session topics to a rosbag2 bag (MCAP, CDR).

Parameters:
    bag_path (string): bag directory to create; must not exist or be empty.
    topics (string[]): topics to record; relative names honour the node namespace.
    types (string[]): message type of each topic, ``package/msg/Name``.

Messages are stored as the CDR bytes received (raw subscriptions), stamped with the
receive time of the node clock [ns]. The bag is flushed every 0.5 s, closed on
SIGINT/SIGTERM, and repairable with ``rehab-robot repair-bag`` after a crash
(see :mod:`rehab_robot.recording.bag`).
"""

from __future__ import annotations

import importlib
import sys
import time
from functools import partial
from typing import Any

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from rehab_robot import graph
from rehab_robot.errors import ConfigError
from rehab_robot.nodes.common import (
    ERROR,
    OK,
    DiagnosticsPublisher,
    GracefulNode,
    ParamSpec,
    declare_parameters,
    non_empty,
    run,
)
from rehab_robot.recording.bag import BagRecorder

#: Subscription queue per topic [messages]: 2 s of 500 Hz joint_states if the writer stalls.
QUEUE_DEPTH = 1000

#: How often the bag is offered a flush [s]; it flushes every FLUSH_PERIOD of bag.py.
FLUSH_CHECK_PERIOD = 0.25

#: On shutdown, keep taking in-flight messages until none came for DRAIN_QUIET [s],
#: for at most DRAIN_TIMEOUT [s].
DRAIN_QUIET = 0.1
DRAIN_TIMEOUT = 0.5


def _string_list(value: Any) -> bool:
    """True for a non-empty list of non-blank strings."""
    return isinstance(value, list) and len(value) > 0 and all(non_empty(v) for v in value)


PARAMETERS = (
    ParamSpec("bag_path", "", "bag directory to create (rosbag2, MCAP storage)",
              "a non-empty path that does not exist or is an empty directory", non_empty),
    ParamSpec("topics", [t.name for t in graph.RECORDED_TOPICS],
              "topics to record; relative names honour the node namespace",
              "a non-empty list of topic names", _string_list),
    ParamSpec("types", [t.type for t in graph.RECORDED_TOPICS],
              "message type of each topic, same order as topics",
              "a non-empty list of types written package/msg/Name", _string_list),
    ParamSpec("best_effort_topics", [t.name for t in graph.RECORDED_TOPICS if t.streaming],
              "topics published best effort (high-rate state); the others are subscribed reliably",
              "a list of topic names (names not in 'topics' have no effect)", lambda v: isinstance(v, list)),
)


def message_class(type_name: str) -> type:
    """Return the rclpy message class of ``type_name`` (``package/msg/Name``).

    Raises:
        ConfigError: naming the type and the allowed form.
    """
    parts = type_name.split("/")
    if len(parts) != 3 or parts[1] != "msg" or not all(parts):
        raise ConfigError(
            f"message type {type_name!r}: allowed: package/msg/Name, e.g. 'sensor_msgs/msg/JointState'"
        )
    try:  # rosidl_runtime_py is the usual way, but the PyPI ROS wheels do not ship it
        from rosidl_runtime_py.utilities import get_message
    except ImportError:
        get_message = None
    try:
        if get_message is not None:
            return get_message(type_name)
        return getattr(importlib.import_module(f"{parts[0]}.msg"), parts[2])
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(
            f"message type {type_name!r}: not installed; allowed: a message type of an installed "
            "ROS 2 package, e.g. 'sensor_msgs/msg/JointState'"
        ) from None


class RecorderNode(GracefulNode):
    """Subscribes raw to each topic and appends the bytes to a :class:`BagRecorder`."""

    node_name = "session_recorder"

    def __init__(self) -> None:
        super().__init__(self.node_name)
        params = declare_parameters(self, PARAMETERS)
        topics, types = params["topics"], params["types"]
        if len(topics) != len(types):
            raise ConfigError(
                f"parameters 'topics' ({len(topics)} entries) and 'types' "
                f"({len(types)} entries) differ in length; allowed: one type per topic"
            )
        resolved = []
        for topic in topics:
            try:
                resolved.append(self.resolve_topic_name(topic))
            except Exception as exc:  # rclpy raises several types for an invalid name
                raise ConfigError(
                    f"parameter 'topics': {topic!r} is not a valid topic name "
                    f"({exc}); allowed: ROS 2 topic names such as 'joint_states'"
                ) from None
        try:
            classes = [message_class(t) for t in types]
        except ConfigError as exc:
            raise ConfigError(f"parameter 'types': {exc}") from None
        self._error = ""
        best_effort = set(params["best_effort_topics"])
        for name, topic, cls in zip(topics, resolved, classes):
            # A best-effort subscription hears both kinds of publisher; a reliable one only
            # reliable publishers, so streaming topics must be subscribed best effort.
            reliability = ReliabilityPolicy.BEST_EFFORT if name in best_effort else ReliabilityPolicy.RELIABLE
            qos = QoSProfile(
                reliability=reliability,
                history=HistoryPolicy.KEEP_LAST,
                depth=QUEUE_DEPTH,
                durability=DurabilityPolicy.VOLATILE,
            )
            self.create_subscription(cls, topic, partial(self._on_message, topic), qos, raw=True)
        self.create_timer(FLUSH_CHECK_PERIOD, self._flush)
        self._diagnostics = DiagnosticsPublisher(self, self._report)
        # Last, so that nothing can fail after the bag exists (callbacks run only once spinning).
        self._bag = BagRecorder(params["bag_path"], list(zip(resolved, types)))
        self.get_logger().info(f"recording {len(resolved)} topics to {self._bag.path}")

    def _on_message(self, topic: str, data: bytes) -> None:
        if self._error:
            return
        try:
            self._bag.write(topic, data, self.get_clock().now().nanoseconds)
        except OSError as exc:  # disk full or removed: say so, keep the node (and the graph) up
            self._fail(exc)

    def _flush(self) -> None:
        if self._error:
            return
        try:
            self._bag.flush_if_due()
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        self._error = f"recording stopped: {exc}"
        self.get_logger().error(f"{self._error}; run `rehab-robot repair-bag {self._bag.path}`")

    def _report(self) -> tuple[int, str, dict[str, Any]]:
        counts = self._bag.counts
        values: dict[str, Any] = {"bag_path": str(self._bag.path), "messages": sum(counts.values())}
        values.update({f"messages {topic}": n for topic, n in counts.items()})
        if self._error:
            return ERROR, self._error, values
        return OK, f"recording {values['messages']} messages", values

    def on_shutdown_request(self, executor: Any) -> None:
        """Take the messages still in flight, then close the bag (summary and metadata.yaml).

        ``executor`` is the one :func:`run` spins (EventsExecutor or SingleThreadedExecutor).
        """
        start = last_change = time.monotonic()
        last = self._bag.message_count
        while not self._error and time.monotonic() - start < DRAIN_TIMEOUT:
            executor.spin_once(timeout_sec=0.02)
            now = time.monotonic()
            if self._bag.message_count != last:
                last, last_change = self._bag.message_count, now
            elif now - last_change >= DRAIN_QUIET:
                break
        try:
            self._bag.close()
        except OSError as exc:
            self._fail(exc)
            return
        self.get_logger().info(f"bag closed: {self._bag.message_count} messages in {self._bag.path}")


def main(args: list[str] | None = None) -> None:
    """Console entry point ``session_recorder``."""
    sys.exit(run(RecorderNode, args))


if __name__ == "__main__":
    main()
