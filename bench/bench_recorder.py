"""Throughput of the session bag: BagRecorder.write, close and repair_bag, without DDS.

Run: ``python bench/bench_recorder.py [seconds of session, default 60]``. It records a
synthetic session at this robot's rates (joint_states and joint_commands at 500 Hz,
wrench at 500 Hz, heartbeat at 200 Hz) with real CDR from rclpy, then prints
messages/s of write (flushes included), of close, and of repair_bag on a copy
truncated as a SIGKILL leaves it.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from geometry_msgs.msg import WrenchStamped
from rclpy.serialization import serialize_message
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool

from rehab_robot.recording import BagRecorder, repair_bag

JOINTS = ["shoulder_flexion", "shoulder_abduction", "shoulder_rotation", "elbow_flexion"]
TOPICS = [
    ("/joint_states", "sensor_msgs/msg/JointState"),
    ("/joint_commands", "sensor_msgs/msg/JointState"),
    ("/ft_sensor/wrench", "geometry_msgs/msg/WrenchStamped"),
    ("/safety/heartbeat", "std_msgs/msg/Bool"),
]


def session(seconds: float):
    """Yield ``(topic, cdr, timestamp_ns)`` of ``seconds`` of a session, in time order."""
    js = JointState(name=list(JOINTS), position=[0.1] * 4, velocity=[0.2] * 4, effort=[0.3] * 4)
    js.header.frame_id = "base_link"
    joint = serialize_message(js)
    wrench = serialize_message(WrenchStamped())
    beat = serialize_message(Bool(data=True))
    t0 = time.time_ns()
    for tick in range(int(seconds * 1000)):  # 1 kHz base tick
        t = t0 + tick * 1_000_000
        if tick % 2 == 0:
            yield "/joint_states", joint, t
            yield "/joint_commands", joint, t + 1
            yield "/ft_sensor/wrench", wrench, t + 2
        if tick % 5 == 0:
            yield "/safety/heartbeat", beat, t + 3


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    data = list(session(seconds))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bag"
        bag = BagRecorder(path, TOPICS, flush_period=3600)  # flushed below, at the real period
        start = time.perf_counter()
        flushes = 0
        for i, (topic, cdr, stamp) in enumerate(data):
            bag.write(topic, cdr, stamp)
            if i % 850 == 849:  # a flush per 0.5 s of session (1700 msg/s)
                bag.flush()
                flushes += 1
        write_time = time.perf_counter() - start
        crashed = Path(tmp) / "crashed"
        shutil.copytree(path, crashed)  # what SIGKILL would leave: flushed chunks, no summary
        start = time.perf_counter()
        bag.close()
        close_time = time.perf_counter() - start
        size = bag.file_path.stat().st_size
        start = time.perf_counter()
        report = repair_bag(crashed, keep_original=False)
        repair_time = time.perf_counter() - start

    n = len(data)
    print(f"session: {seconds:.0f} s, {n} messages ({n / seconds:.0f} msg/s), "
          f"{size / 1e6:.1f} MB, {flushes} flushes")
    print(f"BagRecorder.write: {n / write_time:,.0f} msg/s ({write_time / n * 1e6:.1f} us/msg, "
          f"{seconds / write_time:.0f}x real time)")
    print(f"BagRecorder.close: {close_time * 1e3:.0f} ms")
    print(f"repair_bag: {report.message_count / repair_time:,.0f} msg/s ({repair_time:.2f} s; "
          f"a 30 min session would take about {1800 * n / seconds / (report.message_count / repair_time):.0f} s)")


if __name__ == "__main__":
    main()
