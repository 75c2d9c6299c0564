"""Unit tests of rehab_robot.recording.bag: rosbag2 (MCAP, CDR) writing, reading and repair."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from geometry_msgs.msg import WrenchStamped
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcap.reader import make_reader
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.highlevel import AnyReader
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool

from rehab_robot.errors import ConfigError
from rehab_robot.recording import BagRecorder, read_bag, repair_bag
from rehab_robot.recording.bag import typestore
from rehab_robot.ros_env import localhost_env

JOINTS = ["shoulder_flexion", "shoulder_abduction", "shoulder_rotation", "elbow_flexion"]
TOPICS = [
    ("/joint_states", "sensor_msgs/msg/JointState"),
    ("/ft_sensor/wrench", "geometry_msgs/msg/WrenchStamped"),
    ("/safety/heartbeat", "std_msgs/msg/Bool"),
]
T0 = 1_700_000_000_000_000_000  # [ns since the epoch]


def joint_state(seq: int) -> JointState:
    """A JointState whose content encodes ``seq``."""
    msg = JointState(name=list(JOINTS), position=[seq * 1e-3, 0.1, -0.2, 0.3],
                     velocity=[0.01] * 4, effort=[seq * 0.5, 1.0, 2.0, 3.0])
    msg.header.stamp.sec = seq // 1000
    msg.header.stamp.nanosec = (seq % 1000) * 1_000_000
    msg.header.frame_id = f"seq{seq}"
    return msg


def wrench(seq: int) -> WrenchStamped:
    msg = WrenchStamped()
    msg.header.frame_id = "ft_sensor_link"
    msg.wrench.force.x = float(seq)
    msg.wrench.torque.z = -0.5 * seq
    return msg


class Sample(tuple):
    """``(topic, message, timestamp_ns)`` plus ``data``, the message serialised once by rclpy.

    Serialise once: rclpy leaves CDR alignment padding uninitialised, so two
    serialisations of one message may differ in those bytes.
    """

    def __new__(cls, topic: str, msg, stamp: int):
        self = super().__new__(cls, (topic, msg, stamp))
        self.data = serialize_message(msg)
        return self


def sample_messages(n: int = 300) -> list[Sample]:
    """Messages at 500 Hz joint states, 100 Hz wrench, 50 Hz heartbeat, in time order."""
    out = []
    for i in range(n):
        t = T0 + i * 2_000_000
        out.append(Sample("/joint_states", joint_state(i), t))
        if i % 5 == 0:
            out.append(Sample("/ft_sensor/wrench", wrench(i), t + 1))
        if i % 10 == 0:
            out.append(Sample("/safety/heartbeat", Bool(data=i % 20 == 0), t + 2))
    return out


def record(path: Path, messages, **kwargs) -> BagRecorder:
    with BagRecorder(path, TOPICS, **kwargs) as bag:
        for sample in messages:
            bag.write(sample[0], sample.data, sample[2])
    return bag


MSG_CLASSES = {"/joint_states": JointState, "/ft_sensor/wrench": WrenchStamped, "/safety/heartbeat": Bool}


def test_written_bytes_read_back_identical_with_rosbags_anyreader(tmp_path):
    messages = sample_messages()
    record(tmp_path / "bag", messages)
    with AnyReader([tmp_path / "bag"], default_typestore=typestore()) as reader:
        read = [(c.topic, c.msgtype, t, bytes(raw)) for c, t, raw in reader.messages()]
        # rosbags can decode them too, with the definitions stored in the bag.
        first = next(reader.messages())
        decoded = reader.deserialize(first[2], first[0].msgtype)
        assert list(decoded.name) == JOINTS
    assert len(read) == len(messages)
    for sample, (rtopic, rtype, rt, raw) in zip(messages, read):
        topic, msg, t = sample
        assert (rtopic, rt) == (topic, t)
        assert rtype == dict(TOPICS)[topic]
        assert raw == bytes(sample.data)  # stored unchanged, never re-serialised
        assert deserialize_message(raw, MSG_CLASSES[topic]) == msg


def test_bag_reads_with_the_mcap_library(tmp_path):
    messages = sample_messages(100)
    record(tmp_path / "bag", messages)
    files = list((tmp_path / "bag").glob("*.mcap"))
    assert [f.name for f in files] == ["bag.mcap"]
    with files[0].open("rb") as stream:
        reader = make_reader(stream)
        assert reader.get_header().profile == "ros2"
        summary = reader.get_summary()
        assert summary.statistics.message_count == len(messages)
        read = [(ch.topic, sc.name, sc.encoding, ch.message_encoding, m.log_time, m.data)
                for sc, ch, m in reader.iter_messages()]
    assert [(r[0], r[4], r[5]) for r in read] == [(m[0], m[2], bytes(m.data)) for m in messages]
    assert {r[2] for r in read} == {"ros2msg"}
    assert {r[3] for r in read} == {"cdr"}


def test_metadata_yaml_is_rosbag2_version_8_with_counts_and_types(tmp_path):
    messages = sample_messages(250)
    record(tmp_path / "bag", messages)
    info = yaml.safe_load((tmp_path / "bag" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["version"] == 8
    assert info["storage_identifier"] == "mcap"
    assert info["relative_file_paths"] == ["bag.mcap"]
    assert info["message_count"] == len(messages)
    assert info["starting_time"]["nanoseconds_since_epoch"] == T0
    assert info["duration"]["nanoseconds"] == max(t for *_, t in messages) - T0
    assert info["files"][0]["path"] == "bag.mcap"
    assert info["files"][0]["message_count"] == len(messages)
    assert "ros_distro" in info
    assert info["compression_mode"] == "" and info["compression_format"] == ""
    topics = {t["topic_metadata"]["name"]: t for t in info["topics_with_message_count"]}
    assert set(topics) == {name for name, _ in TOPICS}
    for name, type_name in TOPICS:
        meta = topics[name]["topic_metadata"]
        assert meta["type"] == type_name
        assert meta["serialization_format"] == "cdr"
        assert isinstance(meta["offered_qos_profiles"], str)  # Jazzy reads a string, not a list
        assert meta["type_description_hash"] == typestore().hash_rihs01(type_name)
        assert topics[name]["message_count"] == sum(1 for m in messages if m[0] == name)


def test_counts_and_read_bag(tmp_path):
    messages = sample_messages(50)
    bag = record(tmp_path / "bag", messages)
    assert bag.closed
    assert bag.message_count == len(messages)
    assert bag.counts == {name: sum(1 for m in messages if m[0] == name) for name, _ in TOPICS}
    read = list(read_bag(tmp_path / "bag"))
    assert [(m.topic, m.timestamp_ns) for m in read] == [(t, s) for t, _, s in messages]
    assert read[0].type == "sensor_msgs/msg/JointState"
    assert deserialize_message(read[0].data, JointState) == joint_state(0)


def test_empty_bag_is_readable(tmp_path):
    BagRecorder(tmp_path / "bag", TOPICS).close()
    assert list(read_bag(tmp_path / "bag")) == []
    with AnyReader([tmp_path / "bag"], default_typestore=typestore()) as reader:
        assert {c.topic for c in reader.connections} == {name for name, _ in TOPICS}
    assert not repair_bag(tmp_path / "bag").repaired


def test_existing_empty_directory_is_accepted(tmp_path):
    (tmp_path / "bag").mkdir()
    record(tmp_path / "bag", sample_messages(3))
    assert len(list(read_bag(tmp_path / "bag"))) == 5


def test_context_manager_closes_on_exception(tmp_path):
    with pytest.raises(RuntimeError):
        with BagRecorder(tmp_path / "bag", TOPICS) as bag:
            bag.write("/safety/heartbeat", serialize_message(Bool(data=True)), T0)
            raise RuntimeError("node failed")
    assert [m.topic for m in read_bag(tmp_path / "bag")] == ["/safety/heartbeat"]


def test_write_unknown_topic_or_after_close(tmp_path):
    bag = BagRecorder(tmp_path / "bag", TOPICS)
    with pytest.raises(ValueError, match="/nope.*recorded"):
        bag.write("/nope", b"\x00\x01\x00\x00", T0)
    bag.close()
    bag.close()  # twice is fine
    with pytest.raises(ValueError, match="closed"):
        bag.write("/joint_states", b"\x00\x01\x00\x00", T0)


# ---- crash safety -------------------------------------------------------------------------


def snapshot(bag: BagRecorder, dest: Path) -> Path:
    """Copy what is on disk now: what a SIGKILL of the recorder would leave behind."""
    shutil.copytree(bag.path, dest)
    return dest


def test_flush_puts_messages_on_disk_before_close(tmp_path):
    messages = sample_messages(200)
    bag = BagRecorder(tmp_path / "bag", TOPICS, flush_period=3600)
    for topic, msg, t in messages[:100]:
        bag.write(topic, serialize_message(msg), t)
    bag.flush()
    for topic, msg, t in messages[100:]:
        bag.write(topic, serialize_message(msg), t)  # not flushed: lost in a crash
    crashed = snapshot(bag, tmp_path / "crashed")
    bag.close()
    assert not (crashed / "metadata.yaml").exists()
    with pytest.raises(ConfigError, match="repair-bag"):
        read_bag(crashed)
    report = repair_bag(crashed)
    assert report.repaired and report.message_count == 100
    assert [(m.topic, m.timestamp_ns) for m in read_bag(crashed)] == [(t, s) for t, _, s in messages[:100]]
    assert "repaired" in str(report) and "\n" not in str(report)


def test_flush_if_due_follows_the_period(tmp_path):
    bag = BagRecorder(tmp_path / "bag", TOPICS, flush_period=0.05)
    bag.write("/safety/heartbeat", serialize_message(Bool()), T0)
    assert not bag.flush_if_due()
    time.sleep(0.06)  # waits out the flush period under test, not a synchronisation
    assert bag.flush_if_due()
    crashed = snapshot(bag, tmp_path / "crashed")
    bag.close()
    assert repair_bag(crashed).message_count == 1


def test_write_flushes_by_itself_when_the_period_is_over(tmp_path):
    bag = BagRecorder(tmp_path / "bag", TOPICS, flush_period=0.02)
    size = bag.file_path.stat().st_size
    bag.write("/safety/heartbeat", serialize_message(Bool()), T0)
    time.sleep(0.03)
    bag.write("/safety/heartbeat", serialize_message(Bool()), T0 + 1)
    assert bag.file_path.stat().st_size > size
    bag.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(min_value=0.0, max_value=1.0), keep=st.booleans())
def test_repair_of_a_truncated_file_recovers_every_complete_chunk(tmp_path, cut, keep):
    with tempfile.TemporaryDirectory(dir=tmp_path) as work:
        path = Path(work) / "bag"
        messages = sample_messages(120)
        bag = BagRecorder(path, TOPICS, flush_period=3600)
        flushed = []  # message counts on disk after each flush
        for i, (topic, msg, t) in enumerate(messages, 1):
            bag.write(topic, serialize_message(msg), t)
            if i % 37 == 0:
                bag.flush()
                flushed.append((i, bag.file_path.stat().st_size))
        crashed = snapshot(bag, Path(work) / "crashed")
        bag.close()
        mcap = crashed / "crashed.mcap"
        os.rename(crashed / "bag.mcap", mcap)
        size = int(mcap.stat().st_size * cut)
        os.truncate(mcap, size)

        report = repair_bag(crashed, keep_original=keep)

        expected = max([n for n, end in flushed if end <= size], default=0)
        read = list(read_bag(crashed))
        # Every chunk complete on disk is recovered, in order; at most the chunk being cut is lost.
        assert [(m.topic, m.timestamp_ns) for m in read] == [(t, s) for t, _, s in messages[: len(read)]]
        assert expected <= len(read) <= min([n for n, _ in flushed if n > expected], default=expected)
        assert report.repaired and report.message_count == len(read)
        assert (crashed / "crashed.mcap.orig").exists() == keep
        with AnyReader([crashed], default_typestore=typestore()) as reader:
            assert reader.message_count == len(read)
        assert not repair_bag(crashed).repaired  # idempotent


def test_repair_of_a_complete_file_without_metadata(tmp_path):
    """Killed between closing the file and writing metadata.yaml: nothing is lost."""
    messages = sample_messages(30)
    record(tmp_path / "bag", messages)
    os.unlink(tmp_path / "bag" / "metadata.yaml")
    report = repair_bag(tmp_path / "bag", keep_original=False)
    assert report.repaired and report.dropped_bytes == 0 and report.message_count == len(messages)
    assert sorted(p.name for p in (tmp_path / "bag").iterdir()) == ["bag.mcap", "metadata.yaml"]


def test_repair_leaves_a_complete_bag_untouched(tmp_path):
    messages = sample_messages(30)
    record(tmp_path / "bag", messages)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "bag").iterdir()}
    report = repair_bag(tmp_path / "bag")
    assert not report.repaired and report.message_count == len(messages) and report.topic_count == 3
    assert str(report).endswith("nothing to repair")
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "bag").iterdir()} == before


def test_repair_resumes_after_an_interrupted_repair(tmp_path):
    messages = sample_messages(30)
    bag = BagRecorder(tmp_path / "bag", TOPICS)
    for topic, msg, t in messages:
        bag.write(topic, serialize_message(msg), t)
    bag.flush()
    crashed = snapshot(bag, tmp_path / "crashed")
    bag.close()
    os.rename(crashed / "bag.mcap", crashed / "bag.mcap.orig")  # as if stopped mid-swap
    (crashed / ".repair").mkdir()
    report = repair_bag(crashed)
    assert report.message_count == len(messages) and not (crashed / ".repair").exists()


def test_repair_of_a_header_only_file(tmp_path):
    bag = BagRecorder(tmp_path / "bag", TOPICS)
    crashed = snapshot(bag, tmp_path / "crashed")
    bag.close()
    report = repair_bag(crashed)
    assert report.repaired and report.message_count == 0
    assert list(read_bag(crashed)) == []


def test_sigkill_of_a_writing_process_loses_at_most_the_flush_period(tmp_path):
    """A real SIGKILL (no DDS): the recovered messages are a prefix ending < ~1 s before the kill."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from rehab_robot.recording import BagRecorder
        bag = BagRecorder({str(tmp_path / 'bag')!r}, [("/count", "std_msgs/msg/UInt32")])
        i = 0
        while True:
            t = time.time_ns()
            bag.write("/count", b"\\x00\\x01\\x00\\x00" + i.to_bytes(4, "little"), t)
            if i % 50 == 0:
                print(i, t, flush=True)
            i += 1
            time.sleep(0.001)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env=localhost_env(41))
    last = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        i, t = map(int, line.split())
        if last is None:
            last = (i, t)
        elif t - last[1] > 1.5e9:  # 1.5 s of recording, as the writer reported it
            last = (i, t)
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(5)
    report = repair_bag(tmp_path / "bag")
    values = [int.from_bytes(m.data[4:8], "little") for m in read_bag(tmp_path / "bag")]
    assert values == list(range(len(values)))
    stamps = [m.timestamp_ns for m in read_bag(tmp_path / "bag")]
    assert last[1] - stamps[-1] < 1.0e9, str(report)


# ---- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "topics, match",
    [
        ([("/a", "sensor_msgs/msg/NoSuchThing")],
         r"unknown message type 'sensor_msgs/msg/NoSuchThing'.*package/msg/Name"),
        ([("/a", "sensor_msgs/JointState")],
         r"unknown message type 'sensor_msgs/JointState'.*package/msg/Name"),
        ([("joint_states", "sensor_msgs/msg/JointState")], r"'joint_states'.*fully qualified"),
        ([("/a", "std_msgs/msg/Bool"), ("/a", "std_msgs/msg/Bool")], r"'/a' is listed twice"),
        ([], r"at least one"),
    ],
    ids=["unknown-type", "short-type-name", "relative-topic", "duplicate-topic", "no-topics"],
)
def test_bad_topics_are_config_errors(tmp_path, topics, match):
    with pytest.raises(ConfigError, match=match):
        BagRecorder(tmp_path / "bag", topics)
    assert not (tmp_path / "bag").exists()


def test_non_empty_directory_is_refused_and_left_alone(tmp_path):
    (tmp_path / "bag").mkdir()
    (tmp_path / "bag" / "old.mcap").write_bytes(b"earlier recording")
    with pytest.raises(ConfigError, match=r"not empty.*allowed: a new path or an empty directory"):
        BagRecorder(tmp_path / "bag", TOPICS)
    assert (tmp_path / "bag" / "old.mcap").read_bytes() == b"earlier recording"


def test_path_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "bag").write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        BagRecorder(tmp_path / "bag", TOPICS)


def test_path_under_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"cannot create.*writable"):
        BagRecorder(tmp_path / "file" / "bag", TOPICS)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes everywhere")
def test_read_only_directory_is_refused(tmp_path):
    (tmp_path / "ro").mkdir(mode=0o500)
    with pytest.raises(ConfigError, match="writable"):
        BagRecorder(tmp_path / "ro" / "bag", TOPICS)


def test_repair_and_read_of_something_that_is_not_a_bag(tmp_path):
    with pytest.raises(ConfigError, match="not a directory"):
        repair_bag(tmp_path / "missing")
    with pytest.raises(ConfigError, match="not a directory"):
        read_bag(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"no MCAP file"):
        repair_bag(tmp_path / "empty")


def test_bad_flush_period(tmp_path):
    with pytest.raises(ConfigError, match="flush_period"):
        BagRecorder(tmp_path / "bag", TOPICS, flush_period=0)
