"""Benchmark: does the control loop stall on a busy PC while tools join the graph?

Starts a whole session with ``rehab-robot run`` (every node its own process, DDS on
localhost, a ROS domain of its own), one CPU-bound process of normal priority beside
it, and, once the arm moves, ``--clients`` ordinary client processes that join the
graph one after another: each subscribes to ``joint_states`` with default QoS, waits
for the ``session/pause`` service, lists the topics, spins a moment and leaves.

Prints, per trial:

* the driver's own loop statistics from its last ``/diagnostics`` (cycle period
  p99 / p99.9 / max, overruns), read from the session bag;
* the largest gap between consecutive ``joint_states`` stamps in the bag;
* the quick stops the driver logged and the interruptions in the session report.

Run: ``.venv/bin/python bench/bench_stall.py [--trials N] [--clients N] [--no-load] [--control-domain public]``
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from rehab_robot import resources
from rehab_robot.ros_env import localhost_env

PROTOCOL = """\
protocol:
  name: bench_stall_elbow
  type: passive_rom
  joint: elbow_flexion
  start_angle: 0.4
  end_angle: 1.5
  repetitions: {repetitions}
  movement_duration: 2.5
  hold_duration: 0.0
"""

#: One client of an operator: joins, subscribes, waits for a service, lists topics, leaves.
CLIENT = """\
import time, rclpy
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger
rclpy.init()
node = rclpy.create_node('bench_tool_client_{index}')
got = []
node.create_subscription(JointState, 'joint_states', lambda m: got.append(1), 10)
client = node.create_client(Trigger, 'session/pause')
client.wait_for_service(timeout_sec=10.0)
node.get_topic_names_and_types()
end = time.monotonic() + 1.5
while time.monotonic() < end:
    rclpy.spin_once(node, timeout_sec=0.05)
print('client {index}: %d joint_states' % len(got))
node.destroy_node()
rclpy.shutdown()
"""

CPU_HOG = "while True:\n    pass\n"
#: Nodes whose periodic loop reports its timing on /diagnostics.
LOOP_NODES = ("hardware_driver", "safety_supervisor", "motion_controller")


def bag_analysis(bag: Path) -> dict:
    """Return joint_states gap statistics and each loop node's last diagnostics from ``bag``."""
    from rosbags.highlevel import AnyReader

    stamps, loops = [], {}
    with AnyReader([bag]) as reader:
        connections = [c for c in reader.connections if c.topic in ("/joint_states", "/diagnostics")]
        for connection, _, raw in reader.messages(connections=connections):
            msg = reader.deserialize(raw, connection.msgtype)
            if connection.topic == "/joint_states":
                stamps.append(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)
            else:
                for status in msg.status:
                    name = status.name.rsplit(" ", 1)[-1]
                    if name in LOOP_NODES:
                        loops[name] = {kv.key: kv.value for kv in status.values}
    stamps = np.sort(np.array(stamps))
    gaps = np.diff(stamps) if len(stamps) > 1 else np.array([0.0])
    worst = int(np.argmax(gaps))
    return {"stamps": stamps, "samples": len(stamps), "max_gap_ms": 1e3 * gaps.max(), "loops": loops,
            "max_gap_at": (stamps[worst] - stamps[0], stamps[-1] - stamps[worst]) if len(stamps) > 1 else (0.0, 0.0),
            "max_gap_stamp": float(stamps[worst]) if len(stamps) > 1 else 0.0}


def run_trial(args, tmp: Path, trial: int) -> dict:
    """Run one session under load; return its numbers."""
    protocol = tmp / "protocol.yaml"
    protocol.write_text(PROTOCOL.format(repetitions=args.repetitions))
    domain = args.domain if args.domain is not None else 20 + (os.getpid() + trial) % 70
    env = localhost_env(domain)
    session_id = f"stall-{trial}"
    command = [sys.executable, "-m", "rehab_robot.launcher", "run", f"protocol:={protocol}",
               f"patient:={resources.example_patient()}", f"output_dir:={tmp}", f"session_id:={session_id}",
               f"control_domain:={args.control_domain}", "--timeout", "180"]
    hog = None if args.no_load else subprocess.Popen([sys.executable, "-c", CPU_HOG], env=env)
    graph = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    moving = threading.Event()

    def pump():
        for line in graph.stdout:
            lines.append(line.rstrip())
            if "session/start: session started" in line:
                moving.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not moving.wait(0.2) and graph.poll() is None and time.monotonic() < deadline:
            pass
        if not moving.is_set():
            graph.terminate()
            graph.wait(30)
            return {"error": "the session never started:\n" + "\n".join(lines[-30:])}
        time.sleep(2.0)
        for index in range(args.clients):
            try:
                subprocess.run([sys.executable, "-c", CLIENT.format(index=index)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=False)
            except subprocess.TimeoutExpired:  # subprocess.run has killed it: a machine far too busy
                lines.append(f"bench: WARN client {index} did not finish within 60 s and was killed")
        graph.wait(240)
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    reader.join(5)
    folder = tmp / session_id
    report = json.loads((folder / "report.json").read_text()) if (folder / "report.json").exists() else {}
    result = bag_analysis(folder / "bag") if (folder / "bag").exists() else {}
    if report.get("started_at") and result.get("stamps") is not None:
        # The report's start has 1 s resolution: the window starts 1 s later to stay inside.
        start = datetime.datetime.fromisoformat(report["started_at"]).timestamp() + 1.0
        end = start - 1.0 + float(report.get("duration", 0.0))
        inside = result["stamps"][(result["stamps"] >= start) & (result["stamps"] <= end)]
        result["session_gap_ms"] = 1e3 * float(np.diff(inside).max()) if len(inside) > 1 else float("nan")
    result["quick_stops"] = sum("quick stop" in line for line in lines)
    result["warnings"] = [line for line in lines if "WARN" in line or "ERROR" in line or "started" in line][:12]
    result["ended"] = report.get("ended", "?")
    result["interruptions"] = [e["event"] for e in report.get("events", [])
                               if "interrupt" in e["event"] or "stop" in e["event"] or "resumed" in e["event"]]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--repetitions", type=int, default=6)
    parser.add_argument("--verbose", action="store_true", help="print the graph's warnings")
    parser.add_argument("--no-load", action="store_true", help="no CPU-bound neighbour (a quiet machine)")
    parser.add_argument("--keep", metavar="DIR", help="copy the session folder of a trial with a stop to DIR")
    parser.add_argument("--domain", type=int, help="ROS_DOMAIN_ID of the graph (default: one drawn per trial)")
    parser.add_argument("--control-domain", default="auto",
                        help="the graph's control_domain: auto (the chain on its own domain, the default) or public "
                             "(everything on the public domain, where the clients join)")
    args = parser.parse_args()
    print(f"load: {'none' if args.no_load else '1 CPU-bound process, normal priority'}; "
          f"{args.clients} client processes joining during the session; control_domain:={args.control_domain}")
    for trial in range(args.trials):
        with tempfile.TemporaryDirectory() as tmp:
            result = run_trial(args, Path(tmp), trial)
            if args.keep and result.get("quick_stops"):
                kept = Path(args.keep) / f"trial-{trial}"
                shutil.copytree(tmp, kept, dirs_exist_ok=True)
                print(f"trial {trial}: session folder kept in {kept}")
        if "error" in result:
            print(f"trial {trial}: {result['error']}")
            continue
        print(f"trial {trial}: session {result['ended']}; quick stops {result['quick_stops']}; "
              f"largest joint_states gap during the session {result.get('session_gap_ms', float('nan')):.1f} ms; "
              f"joint_states in bag {result.get('samples', 0)}, largest gap {result.get('max_gap_ms', float('nan')):.1f} ms "
              "(%.1f s after the first sample, %.1f s before the last)" % result.get("max_gap_at", (0, 0)))
        for name in LOOP_NODES:
            values = result.get("loops", {}).get(name, {})
            loop = ", ".join(f"{k} {values[k]}" for k in sorted(values) if re.match(r"(period|overrun|cycle|states_|wrench_|heartbeat_|commands_|longest)", k))
            print(f"  {name} loop: {loop or 'no loop statistics in /diagnostics'}")
        for event in result["interruptions"]:
            print(f"  event: {event}")
        if args.verbose:
            print(f"  largest gap starts at {result.get('max_gap_stamp', 0.0):.3f} (ROS time)")
            for line in result["warnings"]:
                print(f"  log: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
