"""rosbag2 recording (MCAP storage, CDR messages) built on ``rosbags``, safe against crashes.

A bag is what ``ros2 bag record`` makes: a directory holding one MCAP file
``<dir name>.mcap`` and a ``metadata.yaml`` (rosbag2 metadata version 8, read by
``ros2 bag`` on Jazzy and later). Messages are stored as the CDR bytes rclpy
received, never re-serialised. This module does not import rclpy.

Crash safety, and why it is built this way:

* rosbags' MCAP writer keeps the current chunk in memory until it holds 1 MiB
  (about 3 s of this robot's 1700 messages/s) and writes the summary, the footer and
  ``metadata.yaml`` only in ``close()``. Killed, it would lose those seconds and
  leave a file no reader opens.
* :class:`BagRecorder` therefore closes the chunk and hands it to the OS every
  ``flush_period`` (0.5 s). Everything older is on disk as complete MCAP records,
  which survive SIGKILL (the kernel keeps written pages; ``fsync=True`` covers
  power loss too, at a few ms per flush).
* After a crash the file has no summary and there is no ``metadata.yaml``.
  :func:`repair_bag` reads the file's complete records with the ``mcap`` stream
  reader (it needs no index) and rewrites file and metadata with rosbags, like
  ``ros2 bag reindex``. The launcher runs it on the bag of a recorder that died.

This was chosen over rotating to a new file every second: one file per session
like ``ros2 bag record`` (not thousands of tiny files), ``metadata.yaml`` written
by rosbags itself, and a clean stop needs no extra step. The price is the repair
after a crash, and reliance on two internals of rosbags' MCAP writer
(``close_chunk()`` and the open file ``bio``), checked when a bag is opened;
requirements pin rosbags.
"""

from __future__ import annotations

import os
import shutil
import struct
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

from mcap.records import Channel, Footer, Message, Schema
from mcap.stream_reader import StreamReader
from rosbags.interfaces import Qos
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.rosbag2.errors import ReaderError
from rosbags.rosbag2.metadata import parse_qos
from rosbags.typesys import Stores, get_typestore, get_types_from_msg
from rosbags.typesys.store import Typestore

from rehab_robot.errors import ConfigError

#: rosbag2 metadata version written: 8 is what Jazzy reads and writes (Kilted reads it too;
#: version 9 stores QoS as a YAML list, which Jazzy's ``ros2 bag`` rejects).
METADATA_VERSION = 8

#: Default period between chunk flushes [s]: at most this much is lost on SIGKILL.
FLUSH_PERIOD = 0.5

#: Suffix given to the original files that :func:`repair_bag` replaced.
ORIGINAL_SUFFIX = ".orig"

_MAGIC = b"\x89MCAP0\r\n"
_FOOTER_OPCODE = 0x02
_RECORD_HEAD = struct.Struct("<BQ")  # MCAP record: opcode, length of the body
_REPAIR_TMP = ".repair"

_typestore: Optional[Typestore] = None


def typestore() -> Typestore:
    """Return the ROS 2 Jazzy message definitions used for the bag's schemas (built once)."""
    global _typestore
    if _typestore is None:
        _typestore = get_typestore(Stores.ROS2_JAZZY)
    return _typestore


PathLike = Union[str, os.PathLike]


class BagRecorder:
    """Writes one rosbag2 bag (MCAP, CDR); readable after close and repairable after a crash.

    Not thread-safe: call every method from one thread.

    Args:
        path: Bag directory to create. It must not exist or be an empty directory.
        topics: ``(topic, type)`` pairs, e.g. ``("/joint_states", "sensor_msgs/msg/JointState")``.
            Topic names are fully qualified (start with ``/``) and are recorded as given.
        flush_period: Longest time [s] a written message stays in memory before it is
            handed to the OS; bounds what a SIGKILL loses.
        fsync: Also force each flush to the disk (survives power loss; costs a few ms per flush).

    Raises:
        ConfigError: unknown message type, bad topic list, non-writable or non-empty path.
    """

    def __init__(
        self,
        path: PathLike,
        topics: Sequence[tuple[str, str]],
        *,
        flush_period: float = FLUSH_PERIOD,
        fsync: bool = False,
    ) -> None:
        self._path = Path(path)
        self._check_topics(topics)
        if not flush_period > 0:
            raise ConfigError(f"bag flush_period {flush_period!r}: allowed: a number of seconds > 0")
        self._flush_period = float(flush_period)
        self._fsync = fsync
        self._prepare_directory(self._path)
        writer = Writer(self._path, version=METADATA_VERSION, storage_plugin=StoragePlugin.MCAP)
        try:
            writer.open()
        except OSError as exc:
            raise ConfigError(
                f"bag path {str(self._path)!r}: cannot create it ({exc.strerror or exc}); "
                "allowed: a new path in a writable directory"
            ) from None
        self._writer: Optional[Writer] = writer
        storage = writer.storage
        if not (callable(getattr(storage, "close_chunk", None)) and hasattr(storage, "bio")):
            writer.abort()
            raise RuntimeError(
                "this rosbags version's MCAP writer has no close_chunk()/bio; "
                "rehab_robot needs the pinned rosbags (see requirements/common.txt)"
            )
        store = typestore()
        self._connections = {
            topic: writer.add_connection(topic, type_name, typestore=store)
            for topic, type_name in topics
        }
        self._types = dict(topics)
        self._counts: Counter[str] = Counter({topic: 0 for topic, _ in topics})
        self._last_flush = time.monotonic()
        # The MCAP header goes to disk now; schemas and channels ride in the first chunk.
        self.flush()

    @staticmethod
    def _check_topics(topics: Sequence[tuple[str, str]]) -> None:
        """Raise ConfigError unless ``topics`` is a non-empty list of unique, known (topic, type)."""
        if not topics:
            raise ConfigError("bag topics: empty; allowed: at least one (topic, type) pair")
        known = typestore().fielddefs
        seen = set()
        for item in topics:
            if not (isinstance(item, (tuple, list)) and len(item) == 2):
                raise ConfigError(f"bag topic entry {item!r}: allowed: a (topic, type) pair")
            topic, type_name = item
            if not (isinstance(topic, str) and topic.startswith("/") and topic.strip() == topic
                    and len(topic) > 1):
                raise ConfigError(
                    f"bag topic {topic!r}: allowed: a fully qualified topic name such as '/joint_states'"
                )
            if topic in seen:
                raise ConfigError(f"bag topic {topic!r} is listed twice; allowed: each topic once")
            seen.add(topic)
            if type_name not in known:
                raise ConfigError(
                    f"bag topic {topic!r}: unknown message type {type_name!r}; allowed: a ROS 2 Jazzy "
                    "message type written package/msg/Name, e.g. 'sensor_msgs/msg/JointState'"
                )

    @staticmethod
    def _prepare_directory(path: Path) -> None:
        """Make sure ``path`` can become a new bag: refuse to overwrite anything."""
        if path.exists() or path.is_symlink():
            if not path.is_dir():
                raise ConfigError(
                    f"bag path {str(path)!r} exists and is not a directory; "
                    "allowed: a new path or an empty directory"
                )
            if any(path.iterdir()):
                raise ConfigError(
                    f"bag path {str(path)!r} is a directory that is not empty (an earlier recording?); "
                    "allowed: a new path or an empty directory"
                )
            try:
                path.rmdir()  # rosbags' writer creates the directory itself
            except OSError as exc:
                raise ConfigError(
                    f"bag path {str(path)!r}: cannot use it ({exc.strerror or exc}); "
                    "allowed: a new path or an empty directory in a writable directory"
                ) from None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"bag path {str(path)!r}: cannot create its parent directory ({exc.strerror or exc}); "
                "allowed: a path in a writable directory"
            ) from None
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise ConfigError(
                f"bag path {str(path)!r}: directory {str(path.parent)!r} is not writable; "
                "allowed: a path in a writable directory"
            )

    @property
    def path(self) -> Path:
        """The bag directory."""
        return self._path

    @property
    def file_path(self) -> Path:
        """The MCAP file being written, ``<path>/<path name>.mcap``."""
        return self._path / f"{self._path.name}.mcap"

    @property
    def topics(self) -> dict[str, str]:
        """Recorded topics and their message types."""
        return dict(self._types)

    @property
    def counts(self) -> dict[str, int]:
        """Messages written so far, per topic."""
        return dict(self._counts)

    @property
    def message_count(self) -> int:
        """Messages written so far, all topics."""
        return sum(self._counts.values())

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._writer is None

    def write(self, topic: str, data: bytes, timestamp_ns: int) -> None:
        """Append one message.

        Args:
            topic: One of the recorded topics, as given to the constructor.
            data: The CDR-serialised message, exactly as received (stored unchanged).
            timestamp_ns: Receive time [ns since the epoch].

        Raises:
            ValueError: unknown topic or closed recorder.
            OSError: the disk refused the data (full, removed).
        """
        writer = self._writer
        if writer is None:
            raise ValueError(f"bag {str(self._path)!r} is closed")
        connection = self._connections.get(topic)
        if connection is None:
            raise ValueError(f"topic {topic!r} is not recorded in this bag; recorded: {sorted(self._types)}")
        writer.write(connection, timestamp_ns, data)
        self._counts[topic] += 1
        if time.monotonic() - self._last_flush >= self._flush_period:
            self.flush()

    def flush_if_due(self) -> bool:
        """Flush if the last flush is older than ``flush_period``; return True if it flushed.

        Call it periodically (e.g. from a 0.25 s timer) so the last messages reach the
        disk even when no new message arrives.
        """
        if self._writer is not None and time.monotonic() - self._last_flush >= self._flush_period:
            self.flush()
            return True
        return False

    def flush(self) -> None:
        """Write the pending messages to the file as a complete MCAP chunk, and hand it to the OS."""
        writer = self._writer
        if writer is None:
            return
        storage = writer.storage
        if storage.chunk.msgs:  # an empty chunk would carry no message, only odd times
            storage.close_chunk()
        storage.bio.flush()
        if self._fsync:
            os.fsync(storage.bio.fileno())
        self._last_flush = time.monotonic()

    def close(self) -> None:
        """Finish the bag: last chunk, MCAP summary and footer, then ``metadata.yaml``.

        Safe to call twice. If it fails (disk full), what was flushed stays on disk and
        :func:`repair_bag` recovers it.
        """
        writer, self._writer = self._writer, None
        if writer is None:
            return
        writer.close()
        if self._fsync:
            for name in (self.file_path, self._path / "metadata.yaml"):
                _fsync_path(name)

    def __enter__(self) -> "BagRecorder":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        # Close properly even on an exception: what was recorded must stay readable.
        self.close()


def _fsync_path(path: Path) -> None:
    """Force the content of the file ``path`` to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class BagMessage:
    """One message read from a bag.

    Attributes:
        topic: Fully qualified topic name.
        type: Message type, ``package/msg/Name``.
        timestamp_ns: Receive time [ns since the epoch].
        data: CDR bytes as recorded (``rclpy.serialization.deserialize_message`` reads them).
    """

    topic: str
    type: str
    timestamp_ns: int
    data: bytes


def _bag_directory(path: PathLike) -> Path:
    """Return ``path`` as a Path, or raise ConfigError unless it is a directory."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(
            f"bag {str(path)!r}: not a directory; expected a bag directory holding "
            "metadata.yaml and *.mcap"
        )
    return path


def read_bag(path: PathLike) -> Iterator[BagMessage]:
    """Return an iterator over the messages of a closed bag, in time order.

    Raises:
        ConfigError: ``path`` is not a bag, or one that was not closed (run :func:`repair_bag`).
    """
    path = _bag_directory(path)
    if not (path / "metadata.yaml").is_file():
        raise ConfigError(
            f"bag {str(path)!r} has no metadata.yaml: its recorder did not close it; "
            f"run `rehab-robot repair-bag {path}` first"
        )
    reader = Reader(path)
    try:
        reader.open()
    except ReaderError as exc:
        raise ConfigError(
            f"bag {str(path)!r} cannot be read ({exc}); run `rehab-robot repair-bag {path}`"
        ) from None

    def messages() -> Iterator[BagMessage]:
        try:
            for connection, timestamp, data in reader.messages():
                yield BagMessage(connection.topic, connection.msgtype, timestamp, bytes(data))
        finally:
            reader.close()

    return messages()


@dataclass(frozen=True)
class RepairReport:
    """What :func:`repair_bag` found and did.

    Attributes:
        path: The bag directory.
        repaired: False when the bag was complete and left untouched.
        message_count: Messages in the bag now.
        topic_count: Topics in the bag now.
        duration: Time [s] from the first to the last message.
        dropped_bytes: Bytes of incomplete data at the end of the damaged file(s) that
            could not be read (the part of the recording that was lost).
        kept: Names of the original files kept beside the repaired one.
    """

    path: Path
    repaired: bool
    message_count: int
    topic_count: int
    duration: float
    dropped_bytes: int = 0
    kept: tuple[str, ...] = ()

    def __str__(self) -> str:
        """One line for the user."""
        content = (
            f"{self.message_count} message{'s' if self.message_count != 1 else ''} on "
            f"{self.topic_count} topic{'s' if self.topic_count != 1 else ''} over {self.duration:.1f} s"
        )
        if not self.repaired:
            return f"bag {self.path}: complete, {content}; nothing to repair"
        kept = f"; originals kept as {', '.join(self.kept)}" if self.kept else ""
        return (
            f"bag {self.path}: repaired, {content} recovered, "
            f"{self.dropped_bytes} bytes of incomplete data at the end dropped{kept}"
        )


def _complete_prefix(path: Path) -> int:
    """Return the byte length of the MCAP records in ``path`` that are complete (0: not MCAP)."""
    with path.open("rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        if stream.read(len(_MAGIC)) != _MAGIC:
            return 0
        end = len(_MAGIC)
        while end + _RECORD_HEAD.size <= size:
            stream.seek(end)
            opcode, length = _RECORD_HEAD.unpack(stream.read(_RECORD_HEAD.size))
            if end + _RECORD_HEAD.size + length > size:
                break
            end += _RECORD_HEAD.size + length
            if opcode == _FOOTER_OPCODE:
                end = min(size, end + len(_MAGIC))
                break
    return end


class _Prefix:
    """A read-only view of the first ``limit`` bytes of a binary file."""

    def __init__(self, stream, limit: int) -> None:
        self._stream = stream
        self._left = limit

    def read(self, size: int = -1) -> bytes:
        if size < 0 or size > self._left:
            size = self._left
        data = self._stream.read(size)
        self._left -= len(data)
        return data


def _rihs01(schema: Schema) -> str:
    """Return the type hash of ``schema``, computed from its recorded definition if possible."""
    if schema.encoding == "ros2msg":
        try:
            store = get_typestore(Stores.EMPTY)
            store.register(get_types_from_msg(schema.data.decode(), schema.name))
            return store.hash_rihs01(schema.name)
        except Exception:  # noqa: BLE001 - any parse failure: fall back to the known definition
            pass
    if schema.name in typestore().fielddefs:
        return typestore().hash_rihs01(schema.name)
    raise ConfigError(
        f"cannot repair: message type {schema.name!r} has neither a readable definition in the "
        "file nor a known ROS 2 Jazzy definition"
    )


def _copy_records(source: Path, writer: Writer, state: dict) -> tuple[int, int]:
    """Copy the readable messages of MCAP file ``source`` into ``writer``.

    Returns ``(messages copied, bytes dropped at the end)``.
    """
    schemas: dict[int, Schema] = {}
    channels: dict[int, object] = {}  # file channel id -> writer connection (None: skipped)
    size = source.stat().st_size
    limit = _complete_prefix(source)
    if limit == 0:
        return 0, size
    copied = 0
    good_end = len(_MAGIC)
    with source.open("rb") as stream:
        prefix = _Prefix(stream, limit)
        records = StreamReader(prefix, record_size_limit=None).records
        while True:
            try:
                record = next(records)
            except StopIteration:
                break
            except Exception:  # noqa: BLE001 - truncated or corrupt data: the readable part ends here
                break
            good_end = limit - prefix._left
            if isinstance(record, Schema):
                schemas.setdefault(record.id, record)
            elif isinstance(record, Channel):
                if record.id in channels:
                    continue  # the summary section repeats schemas and channels
                channels[record.id] = _add_connection(writer, record, schemas.get(record.schema_id), state)
            elif isinstance(record, Message):
                connection = channels.get(record.channel_id)
                if connection is not None:
                    writer.write(connection, record.log_time, record.data)
                    copied += 1
            elif isinstance(record, Footer):
                good_end = size
    return copied, size - good_end


def _add_connection(writer: Writer, channel: Channel, schema: Optional[Schema], state: dict):
    """Add the connection of ``channel`` to ``writer`` (once per topic and type); return it."""
    if schema is None:
        return None
    key = (channel.topic, schema.name)
    if key not in state:
        qos: list[Qos] = []
        profiles = channel.metadata.get("offered_qos_profiles", "")
        if profiles:
            try:
                qos = parse_qos(profiles)
            except Exception:  # noqa: BLE001 - QoS is informative only; playback falls back to defaults
                qos = []
        state[key] = writer.add_connection(
            channel.topic,
            schema.name,
            msgdef=schema.data.decode(),
            rihs01=_rihs01(schema),
            serialization_format=channel.message_encoding or "cdr",
            offered_qos_profiles=qos,
        )
    return state[key]


def _bag_summary(path: Path) -> tuple[int, int, float]:
    """Return ``(messages, topics, duration [s])`` of a closed bag; raise ReaderError if unreadable."""
    with Reader(path) as reader:
        count = reader.message_count
        duration = (reader.duration - 1) / 1e9 if count else 0.0
        return count, len(reader.topics), duration


def repair_bag(path: PathLike, *, keep_original: bool = True) -> RepairReport:
    """Make the bag at ``path`` readable after its recorder died, like ``ros2 bag reindex``.

    A complete bag is left untouched. Otherwise every complete record of its MCAP
    file(s) is copied into a new ``<dir name>.mcap`` and ``metadata.yaml`` is written;
    only the incomplete record(s) at the very end are dropped. Run it only on a bag
    whose recorder has stopped. ``str(report)`` is a one-line summary.

    Args:
        path: The bag directory.
        keep_original: Keep the damaged file(s) beside the repaired one, renamed
            ``<name>.mcap.orig``.

    Raises:
        ConfigError: ``path`` is not a bag directory, holds no MCAP file, or is not writable.
    """
    path = _bag_directory(path)
    tmp_root = path / _REPAIR_TMP
    if tmp_root.exists():
        shutil.rmtree(tmp_root)  # left by an interrupted repair; the originals are untouched
    if (path / "metadata.yaml").exists():
        try:
            count, topics, duration = _bag_summary(path)
            return RepairReport(path, False, count, topics, duration)
        except (ReaderError, OSError, ValueError):
            pass  # the bag needs rebuilding
    # Originals renamed by an interrupted repair take precedence over a half-moved new file.
    sources = sorted(path.glob(f"*.mcap{ORIGINAL_SUFFIX}")) or sorted(path.glob("*.mcap"))
    if not sources:
        raise ConfigError(
            f"bag {str(path)!r}: no MCAP file (*.mcap) in it; nothing to repair "
            "(allowed: a bag directory written by the session recorder)"
        )
    name = path.resolve().name
    try:
        writer = Writer(tmp_root / name, version=METADATA_VERSION, storage_plugin=StoragePlugin.MCAP)
        writer.open()
        state: dict = {}
        copied = dropped = 0
        try:
            for source in sources:
                n, lost = _copy_records(source, writer, state)
                copied += n
                dropped += lost
            writer.set_custom_data(
                "rehab_robot.repaired",
                f"recovered {copied} messages from {', '.join(s.name for s in sources)}; "
                f"{dropped} bytes of incomplete data dropped",
            )
            writer.close()
        except BaseException:
            writer.abort()
            raise
        count, topics, duration = _bag_summary(tmp_root / name)  # the new bag reads back
        if count != copied:
            raise RuntimeError(f"repair of {path} wrote {count} messages instead of {copied}")
        kept = []
        for source in sources:
            if not source.name.endswith(ORIGINAL_SUFFIX):
                source = source.rename(source.with_name(source.name + ORIGINAL_SUFFIX))
            kept.append(source)
        (tmp_root / name / f"{name}.mcap").replace(path / f"{name}.mcap")
        (tmp_root / name / "metadata.yaml").replace(path / "metadata.yaml")  # commits the repair
        shutil.rmtree(tmp_root)
        if not keep_original:
            for source in kept:
                source.unlink()
            kept = []
    except PermissionError as exc:
        raise ConfigError(
            f"bag {str(path)!r}: cannot repair it ({exc.strerror or exc}); "
            "allowed: a bag directory you can write to"
        ) from None
    return RepairReport(path, True, count, topics, duration, dropped, tuple(s.name for s in kept))
