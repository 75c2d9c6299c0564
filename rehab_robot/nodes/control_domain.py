"""The control chain's private DDS domain, and the public mirror of its topics.

The nodes of the control chain (hardware driver, F/T sensor driver, safety supervisor,
motion controller) exchange states, wrenches, commands, heartbeats and statuses on a DDS
domain of their own, which no tool joins. Every such topic is also published, unchanged,
on the graph's public domain (``ROS_DOMAIN_ID``), where the session manager, the
recorder and every tool (rqt, ``ros2 topic echo``, a user's script) receive it as before.

Why: under ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` Fast DDS talks over shared memory,
and a participant that starts talking to a newly joined one can sleep 333 ms opening its
port, on Jazzy with every write of that participant blocked (docs/architecture.md, "Why
the loop used to stall"). A participant that never meets a tool never opens a tool's port.
The public participant of each node still may; its writes run on threads of their own
with a queue of a second, so the bag and the tools get every sample, late at worst, and
the chain never waits for them.

With ``control_domain:=public`` (the nodes' own default, for a node started alone) every
topic stays on the public domain, as before.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import rclpy
from rclpy.context import Context
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from rehab_robot.nodes.common import ParamSpec, subscriber_qos, topic_qos
from rehab_robot.nodes.nonblocking import LatestValuePublisher
from rehab_robot.ros_env import control_domain_id

#: The parameter every node of the control chain declares.
CONTROL_DOMAIN_PARAMETER = ParamSpec(
    "control_domain", "public",
    "DDS domain of the control chain's own topics: auto (ROS_DOMAIN_ID ± 100), public (the chain on ROS_DOMAIN_ID) or an id",
    "auto, public, or a domain id 0..232 other than ROS_DOMAIN_ID",
)
#: Messages a public mirror keeps while a public write is held up [messages]: a second of
#: 500 Hz states, so a 333 ms DDS pause loses nothing of what the bag records.
PUBLIC_QUEUE = 1000
#: The public mirror's thread writes what is pending every this often [s]: tools and the
#: bag see a control message up to 10 ms later, and the mirror costs one thread wake-up
#: per 10 ms instead of one per message.
PUBLIC_BATCH_PERIOD = 0.01


class MirroredPublisher:
    """Publishes every message offered on the control domain and on the public domain.

    Each side has its own thread (:class:`LatestValuePublisher`): :meth:`offer` never
    blocks, and a write held up on the public side never delays the control side. The
    public side writes in batches every :data:`PUBLIC_BATCH_PERIOD`.

    Args:
        control: Publisher on the control domain, or None when the control domain is off.
        public: Publisher on the public domain.
        name: Thread name stem.
        keep: Pending messages kept on the control side (1: the newest only). The public
            side keeps :data:`PUBLIC_QUEUE` when mirroring, else ``keep``.
    """

    def __init__(self, control, public, name: str, keep: int = 1) -> None:
        self.control = LatestValuePublisher(control, f"{name}_ctl", keep) if control is not None else None
        if control is None:
            self.public = LatestValuePublisher(public, name, keep)
        else:
            self.public = LatestValuePublisher(public, name, PUBLIC_QUEUE, batch_period=PUBLIC_BATCH_PERIOD)
        self._chain = self.control or self.public

    def offer(self, msg: Any) -> None:
        """Hand ``msg`` to both sides (it must not be modified afterwards)."""
        if self.control is not None:
            self.control.offer(msg)
        self.public.offer(msg)

    @property
    def gil_free(self) -> bool:
        """True when writes release the GIL."""
        return self._chain.gil_free

    @property
    def published(self) -> int:
        """Messages written on the control chain's side."""
        return self._chain.published

    @property
    def skipped(self) -> int:
        """Messages skipped on the control chain's side (a newer one replaced them)."""
        return self._chain.skipped

    @property
    def longest_write(self) -> float:
        """Longest single DDS write on the control chain's side [s]."""
        return self._chain.longest_write

    @property
    def public_longest_write(self) -> float:
        """Longest single DDS write on the public side [s]."""
        return self.public.longest_write

    @property
    def error(self) -> Optional[str]:
        """The last write error of either side, or None."""
        return (self.control.error if self.control is not None else None) or self.public.error

    def stop(self, timeout: float = 1.0) -> None:
        """Publish what is pending on both sides, then end their threads."""
        if self.control is not None:
            self.control.stop(timeout)
        self.public.stop(timeout)


class ControlDomain:
    """The control chain's side of one node: a participant on the private domain.

    Args:
        node: The node (a :class:`~rehab_robot.nodes.common.GracefulNode`) on the public domain.
        setting: The ``control_domain`` parameter (see :func:`rehab_robot.ros_env.control_domain_id`).

    Raises:
        ConfigError: if ``setting`` is not allowed.
    """

    def __init__(self, node, setting: str) -> None:
        self._node = node
        self.public_domain = node.context.get_domain_id()
        self.domain_id = control_domain_id(setting, self.public_domain)
        #: The node's twin on the control domain (same name), or None when off. The node's
        #: executor spins it too, so its callbacks run on the same thread as the node's.
        self.node: Optional[Node] = None
        self._context: Optional[Context] = None
        if self.domain_id is not None:
            self._context = Context()
            rclpy.init(context=self._context, domain_id=self.domain_id,
                       signal_handler_options=SignalHandlerOptions.NO)
            self.node = Node(node.get_name(), namespace=node.get_namespace(), context=self._context,
                             enable_rosout=False, start_parameter_services=False)

    def describe(self) -> str:
        """Say where the control topics go, for the node's start-up line and diagnostics."""
        if self.domain_id is None:
            return f"control topics on the public domain {self.public_domain}"
        return f"control topics on the private domain {self.domain_id}, mirrored on {self.public_domain}"

    def publisher(self, msg_type, topic: str, name: str, keep: int = 1) -> MirroredPublisher:
        """Return a publisher of graph topic ``topic`` on both domains (its graph QoS on each)."""
        qos = topic_qos(topic)
        control = self.node.create_publisher(msg_type, topic, qos) if self.node is not None else None
        return MirroredPublisher(control, self._node.create_publisher(msg_type, topic, qos), name, keep)

    def subscribe(self, msg_type, topic: str, callback: Callable) -> None:
        """Subscribe ``callback`` to graph topic ``topic`` of the control chain.

        On the control domain when there is one (what a tool publishes on the public
        domain never reaches the chain), else on the public domain. An exception in the
        callback ends the node, as for its other callbacks.
        """
        if self.node is None:
            self._node.create_subscription(msg_type, topic, callback, subscriber_qos(topic))
        else:
            self.node.create_subscription(msg_type, topic, self._node.guarded(callback), subscriber_qos(topic))

    def close(self) -> None:
        """Leave the control domain (after the node's last message)."""
        if self.node is not None:
            self.node.destroy_node()
            self.node = None
        if self._context is not None:
            self._context.try_shutdown()
            self._context = None
