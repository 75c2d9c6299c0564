"""Integration tests of the session_recorder node: a real process, real DDS on localhost.

The test process publishes JointState at 500 Hz plus WrenchStamped and Bool; the
recorder runs as ``python -m rehab_robot.nodes.recorder_node`` in a namespace, so
the bag must hold the fully resolved topic names.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import rclpy
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import WrenchStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rosbags.highlevel import AnyReader
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool

from rehab_robot.recording import repair_bag
from rehab_robot.recording.bag import typestore
from rehab_robot.ros_env import localhost_env

pytestmark = pytest.mark.integration

JOINTS = ["shoulder_flexion", "shoulder_abduction", "shoulder_rotation", "elbow_flexion"]
RATE = 500.0  # joint_states [Hz]
TOPICS = {  # relative name -> (type name, class)
    "joint_states": ("sensor_msgs/msg/JointState", JointState),
    "ft_sensor/wrench": ("geometry_msgs/msg/WrenchStamped", WrenchStamped),
    "safety/heartbeat": ("std_msgs/msg/Bool", Bool),
}


@pytest.fixture
def ros(request):
    """An rclpy context and node of the test process on a localhost-only domain of its own."""
    domain = request.param
    saved = dict(os.environ)
    os.environ.update(localhost_env(domain))  # before rclpy.init: rmw reads it there
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node("recorder_test_publisher", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        yield domain, node, executor
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        os.environ.clear()
        os.environ.update(saved)


def start_recorder(domain: int, bag: Path, namespace: str) -> subprocess.Popen:
    names = list(TOPICS)
    types = [TOPICS[n][0] for n in names]
    cmd = [
        sys.executable, "-m", "rehab_robot.nodes.recorder_node", "--ros-args",
        "-r", f"__ns:={namespace}",
        "-p", f"bag_path:={bag}",
        "-p", f"topics:=[{','.join(names)}]",
        "-p", f"types:=[{','.join(types)}]",
        # joint_states stay reliable here so the test can demand every message; the wrench
        # exercises a best-effort subscription to a reliable publisher.
        "-p", "best_effort_topics:=[ft_sensor/wrench]",
    ]
    return subprocess.Popen(cmd, env=localhost_env(domain), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def publishers(node, namespace: str) -> dict:
    qos = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST,
                     depth=1000, durability=DurabilityPolicy.VOLATILE)
    return {name: node.create_publisher(cls, f"{namespace}/{name}", qos)
            for name, (_, cls) in TOPICS.items()}


def wait_for_recorder(pubs: dict, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """Poll until the recorder subscribes to every topic (discovery), or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        if all(p.get_subscription_count() >= 1 for p in pubs.values()):
            return
        time.sleep(0.02)
    pytest.fail("the recorder did not subscribe within 15 s")


def publish(pubs: dict, duration: float, stop: threading.Event | None = None) -> int:
    """Publish for ``duration`` [s] or until ``stop`` is set; return the ticks sent.

    Per tick: joint_states (500 Hz) with ``position[0]`` = sequence number, wrench every
    5th tick with ``force.x`` = sequence, heartbeat every 10th.
    """
    period = 1.0 / RATE
    start = time.perf_counter()
    seq = 0
    while seq < int(duration * RATE) and not (stop is not None and stop.is_set()):
        js = JointState(name=list(JOINTS), position=[float(seq), 0.0, 0.0, 0.0],
                        velocity=[0.0] * 4, effort=[0.0] * 4)
        js.header.frame_id = str(seq)
        pubs["joint_states"].publish(js)
        if seq % 5 == 0:
            w = WrenchStamped()
            w.wrench.force.x = float(seq)
            pubs["ft_sensor/wrench"].publish(w)
        if seq % 10 == 0:
            pubs["safety/heartbeat"].publish(Bool(data=seq % 20 == 0))
        seq += 1
        # Pace the publication; this sleep is the data rate, not a synchronisation.
        delay = start + seq * period - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    return seq


def messages_sent(ticks: int) -> int:
    """Messages on all topics for ``ticks`` ticks of :func:`publish`."""
    return ticks + (ticks + 4) // 5 + (ticks + 9) // 10


class RecorderStatus:
    """The message counts the recorder reports on /diagnostics (1 Hz), as they arrive."""

    def __init__(self, node) -> None:
        self.reports: list[int] = []  # messages written so far, per report
        self.received: list[float] = []  # when each report arrived [s, time.monotonic()]
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.endswith("session_recorder"):
                values = {kv.key: kv.value for kv in status.values}
                self.reports.append(int(values["messages"]))
                self.received.append(time.monotonic())

    def wait(self, executor, until, timeout: float) -> bool:
        """Spin until ``until(self)`` is true; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if until(self):
                return True
            executor.spin_once(timeout_sec=0.05)
        return until(self)

    def count_before(self, moment: float) -> int:
        """Messages the recorder had written by the last report received before ``moment``."""
        return max([n for n, t in zip(self.reports, self.received) if t <= moment], default=0)


def read(bag: Path, namespace: str) -> dict[str, list]:
    """Return ``{relative topic: [(timestamp_ns, message), ...]}`` read with rosbags AnyReader."""
    out = {name: [] for name in TOPICS}
    with AnyReader([bag], default_typestore=typestore()) as reader:
        assert {c.topic for c in reader.connections} == {f"{namespace}/{n}" for n in TOPICS}
        for connection, timestamp, raw in reader.messages():
            name = connection.topic[len(namespace) + 1:]
            assert connection.msgtype == TOPICS[name][0]
            out[name].append((timestamp, deserialize_message(bytes(raw), TOPICS[name][1])))
    return out


def sequence(messages: dict) -> list[int]:
    return [int(m.position[0]) for _, m in messages["joint_states"]]


def check_contents(messages: dict, sent: int) -> None:
    """Joint states form one gap-free run in publication order; the others match it."""
    seqs = sequence(messages)
    assert seqs, "no joint_states recorded"
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "gap or reordering in joint_states"
    for _, msg in messages["joint_states"]:
        assert list(msg.name) == JOINTS and msg.header.frame_id == str(int(msg.position[0]))
    stamps = [t for t, _ in messages["joint_states"]]
    assert stamps == sorted(stamps)  # receive time, in arrival order
    first = seqs[0]
    wrench = [int(m.wrench.force.x) for _, m in messages["ft_sensor/wrench"]]
    # Subscribed best effort: in order and from the same stream, but samples may be missed
    # when the machine is loaded (that is what best effort means).
    expected = [s for s in range(sent) if s % 5 == 0 and s >= first]
    assert wrench == sorted(set(wrench)) and set(wrench) <= set(expected)
    assert len(wrench) >= 0.5 * len(expected)
    beats = [m.data for _, m in messages["safety/heartbeat"]]
    assert beats == [s % 20 == 0 for s in range(sent) if s % 10 == 0 and s >= first][: len(beats)]


@pytest.mark.parametrize("ros", [43], indirect=True)
def test_sigint_closes_a_complete_bag(ros, tmp_path):
    domain, node, executor = ros
    bag = tmp_path / "session" / "bag"
    status = RecorderStatus(node)
    proc = start_recorder(domain, bag, "/rig")
    try:
        pubs = publishers(node, "/rig")
        wait_for_recorder(pubs, proc)
        sent = publish(pubs, 2.0)
        # Let DDS deliver everything (a busy machine can delay it), as the recorder reports it.
        status.wait(executor, lambda s: s.reports and s.reports[-1] >= messages_sent(sent), timeout=10.0)
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    assert (bag / "metadata.yaml").is_file()
    messages = read(bag, "/rig")
    check_contents(messages, sent)
    seqs = sequence(messages)
    # Reliable QoS: everything after the first received message is in the bag.
    assert seqs[-1] == sent - 1, f"recorded up to {seqs[-1]} of {sent - 1}"
    assert len(seqs) >= sent - RATE * 0.5  # discovery may miss at most the very start
    wrench = messages["ft_sensor/wrench"]
    assert int(wrench[-1][1].wrench.force.x) == (sent - 1) // 5 * 5
    assert not repair_bag(bag).repaired
    # The bag's type hashes are those of the installed message packages.
    info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    for topic in info["topics_with_message_count"]:
        meta = topic["topic_metadata"]
        (endpoint,) = node.get_publishers_info_by_topic(meta["name"])
        assert meta["type_description_hash"] == str(endpoint.topic_type_hash)


@pytest.mark.parametrize("ros", [44], indirect=True)
def test_sigkill_loses_at_most_about_one_second(ros, tmp_path):
    domain, node, executor = ros
    bag = tmp_path / "bag"
    status = RecorderStatus(node)
    proc = start_recorder(domain, bag, "/rig2")
    stop = threading.Event()
    sent = []
    try:
        pubs = publishers(node, "/rig2")
        wait_for_recorder(pubs, proc)
        publisher = threading.Thread(target=lambda: sent.append(publish(pubs, 20.0, stop)))
        publisher.start()
        # Kill while recording, once a report with data is over 1 s old: what the recorder
        # had written by then must be in the bag.
        assert status.wait(
            executor, lambda s: s.count_before(time.monotonic() - 1.2) > 0, timeout=15.0
        )
        killed_at = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        stop.set()
        publisher.join()
        proc.wait(timeout=10)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (bag / "metadata.yaml").exists()  # the recorder had no chance to close it
    must_hold = status.count_before(killed_at - 1.0)

    report = repair_bag(bag)

    assert report.repaired, str(report)
    messages = read(bag, "/rig2")
    check_contents(messages, sent[0])
    assert report.message_count == sum(len(v) for v in messages.values())
    assert report.message_count >= must_hold, (
        f"the recorder reported {status.reports} (1 Hz); the bag holds {report}"
    )


@pytest.mark.parametrize(
    "extra, existing, match",
    [
        (["-p", "types:=[std_msgs/msg/Bool]"], False,
         r"'topics' \(\d+ entries\) and 'types' \(1 entries\) differ"),
        (["-p", "topics:=[a]", "-p", "types:=[nope_msgs/msg/Nope]"], False,
         r"parameter 'types': message type 'nope_msgs/msg/Nope': not installed"),
        (["-p", "topics:=[a]", "-p", "types:=[std_msgs/Bool]"], False,
         r"'std_msgs/Bool': allowed: package/msg/Name"),
        ([], True, r"not empty.*allowed: a new path or an empty directory"),
    ],
    ids=["length-mismatch", "type-not-installed", "short-type-name", "non-empty-bag-dir"],
)
def test_bad_parameters_exit_2_with_one_line(tmp_path, extra, existing, match):
    bag = tmp_path / "bag"
    if existing:
        bag.mkdir()
        (bag / "bag.mcap").write_bytes(b"earlier session")
    proc = subprocess.run(
        [sys.executable, "-m", "rehab_robot.nodes.recorder_node", "--ros-args",
         "-p", f"bag_path:={bag}", *extra],
        env=localhost_env(45), capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert re.search(match, lines[0]), lines[0]
    if existing:
        assert (bag / "bag.mcap").read_bytes() == b"earlier session"
