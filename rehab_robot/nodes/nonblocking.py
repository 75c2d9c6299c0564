"""Publishing that never holds up a control loop.

rclpy's ``Publisher.publish`` keeps the GIL for the whole DDS write
(``rclpy/src/rclpy/publisher.cpp``: ``rcl_publish`` is called without releasing it).
A write that blocks inside the middleware (a lock taken by discovery, a full socket)
would then stop every Python thread of the process, the control loop included.

:class:`GilFreePublisher` serializes the message with rclpy (fast, in memory) and hands
the bytes to ``rcl_publish_serialized_message`` through ctypes, which releases the GIL
for the call. :class:`LatestValuePublisher` runs that in a thread of its own and
publishes only the newest message offered, so the loop that offers it never waits
and a slow write costs at most skipped samples, never a late cycle.
"""

from __future__ import annotations

import collections
import ctypes
import threading
import time
from typing import Any, Optional

from rclpy.serialization import serialize_message


class _Allocator(ctypes.Structure):
    """``rcutils_allocator_t`` (unused by publishing, present for the layout)."""

    _fields_ = [(name, ctypes.c_void_p) for name in
                ("allocate", "deallocate", "reallocate", "zero_allocate", "state")]


class _SerializedMessage(ctypes.Structure):
    """``rmw_serialized_message_t`` (``rcutils_uint8_array_t``)."""

    _fields_ = [
        ("buffer", ctypes.POINTER(ctypes.c_uint8)),
        ("buffer_length", ctypes.c_size_t),
        ("buffer_capacity", ctypes.c_size_t),
        ("allocator", _Allocator),
    ]


_librcl: Optional[ctypes.CDLL] = None


def _rcl_library() -> Optional[ctypes.CDLL]:
    """Return the ``librcl`` that rclpy has loaded (None where it cannot be found)."""
    global _librcl
    if _librcl is None:
        try:
            with open("/proc/self/maps", encoding="utf-8") as maps:
                path = next(line.split()[-1] for line in maps if line.rstrip().endswith("/librcl.so"))
            library = ctypes.CDLL(path)
            function = library.rcl_publish_serialized_message
        except (OSError, StopIteration, AttributeError):
            return None
        function.argtypes = [ctypes.c_void_p, ctypes.POINTER(_SerializedMessage), ctypes.c_void_p]
        function.restype = ctypes.c_int
        _librcl = library
    return _librcl


class GilFreePublisher:
    """Publishes through ``rcl`` with the GIL released during the DDS write.

    Args:
        publisher: An rclpy publisher; its topic, type and QoS are used unchanged.

    Where ``librcl`` cannot be reached through ctypes (not Linux), it falls back to
    ``publisher.publish`` and says so in :attr:`gil_free`.
    """

    def __init__(self, publisher) -> None:
        self.publisher = publisher
        self._rcl = _rcl_library()
        self.gil_free = self._rcl is not None

    def publish(self, msg: Any) -> None:
        """Publish ``msg`` (a message of the publisher's type).

        Raises:
            RuntimeError: if rcl refuses the message.
        """
        if not self.gil_free:
            self.publisher.publish(msg)
            return
        data = serialize_message(msg)
        buffer = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        serialized = _SerializedMessage(
            ctypes.cast(buffer, ctypes.POINTER(ctypes.c_uint8)), len(data), len(data), _Allocator()
        )
        handle = self.publisher.handle
        with handle:  # keeps the rcl publisher alive for the duration of the call
            status = self._rcl.rcl_publish_serialized_message(handle.pointer, ctypes.byref(serialized), None)
        if status != 0:
            raise RuntimeError(f"rcl_publish_serialized_message failed on {self.publisher.topic_name} ({status})")


class LatestValuePublisher:
    """A thread that publishes the newest message offered to it.

    :meth:`offer` never blocks: it replaces the pending message and wakes the thread.
    Messages offered while a write is under way are skipped except the newest, which
    suits a stream (states, commands, heartbeats). For events, where every message
    counts (a status that says why motion stopped), give ``keep`` > 1: up to that many
    pending messages are kept in order, and only beyond it are the oldest skipped.

    With ``batch_period``, the thread is not woken for each message: it wakes every
    ``batch_period`` and writes what is pending, in order. That costs a few ms of
    latency and saves a thread hand-over per message, for streams that nothing waits on
    (the public mirror of a control topic, read by tools and the bag).

    Args:
        publisher: An rclpy publisher.
        name: Thread name, for ``top -H`` and debuggers.
        keep: Pending messages kept (1: the newest only).
        batch_period: Wake-up period [s] of a batching publisher; None: woken per message.
    """

    def __init__(self, publisher, name: str, keep: int = 1, batch_period: Optional[float] = None) -> None:
        self._publisher = GilFreePublisher(publisher)
        self._pending: collections.deque = collections.deque(maxlen=keep)
        self._wake = threading.Condition()
        self._batch_period = batch_period
        self._stopped = False
        self.published = 0
        self.skipped = 0
        self.error: Optional[str] = None
        #: Longest single DDS write so far [s] (the loop never waits for it).
        self.longest_write = 0.0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def gil_free(self) -> bool:
        """True when writes release the GIL (see :class:`GilFreePublisher`)."""
        return self._publisher.gil_free

    def offer(self, msg: Any) -> None:
        """Hand ``msg`` over for publication (it must not be modified afterwards)."""
        with self._wake:
            if len(self._pending) == self._pending.maxlen:
                self.skipped += 1
            self._pending.append(msg)
            if self._batch_period is None:
                self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                if self._batch_period is None:
                    while not self._pending and not self._stopped:
                        self._wake.wait()
                elif not self._stopped:
                    self._wake.wait(self._batch_period)
                if not self._pending and self._stopped:
                    return
                if self._batch_period is None:
                    batch = [self._pending.popleft()]
                else:
                    batch = list(self._pending)
                    self._pending.clear()
            for msg in batch:
                started = time.monotonic()
                try:
                    self._publisher.publish(msg)
                    self.published += 1
                except Exception as exc:  # noqa: BLE001 - reported on diagnostics, never fatal to the loop
                    self.error = str(exc)
                self.longest_write = max(self.longest_write, time.monotonic() - started)

    def stop(self, timeout: float = 1.0) -> None:
        """Publish what is pending, then end the thread."""
        with self._wake:
            self._stopped = True
            self._wake.notify()
        self._thread.join(timeout)
