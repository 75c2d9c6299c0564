"""Benchmark: how much CPU does each node of a running session use?

Starts a 10-repetition passive session with ``rehab-robot run`` (DDS on localhost, a ROS
domain of its own), waits until it moves, then reads every node process's user+system
time from ``/proc/PID/stat`` over ``--window`` seconds and prints it in % of one core.
``--control-domain`` compares the chain on its own domain (auto, the default) with the
chain on the public domain (public).

Run: ``.venv/bin/python bench/bench_cpu.py [--control-domain public] [--window 10]``
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rehab_robot import resources
from rehab_robot.ros_env import localhost_env

PROTOCOL = """\
protocol:
  name: bench_cpu_elbow
  type: passive_rom
  joint: elbow_flexion
  start_angle: 0.4
  end_angle: 1.5
  repetitions: 10
  movement_duration: 2.5
  hold_duration: 0.0
"""


def cpu_seconds(parent: int) -> dict[str, float]:
    """Return user+system CPU time [s] of each child process of ``parent``, by process name."""
    ticks = os.sysconf("SC_CLK_TCK")
    times = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name = (entry / "comm").read_text().strip()
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        if int(fields[1]) == parent:
            times[name] = (int(fields[11]) + int(fields[12])) / ticks
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--control-domain", default="auto")
    parser.add_argument("--window", type=float, default=10.0, help="measurement window [s]")
    parser.add_argument("--domain", type=int, default=20 + os.getpid() % 70, help="ROS_DOMAIN_ID of the graph")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        protocol = Path(tmp) / "protocol.yaml"
        protocol.write_text(PROTOCOL)
        command = [sys.executable, "-m", "rehab_robot.launcher", "run", f"protocol:={protocol}",
                   f"patient:={resources.example_patient()}", f"output_dir:={tmp}", "session_id:=cpu",
                   f"control_domain:={args.control_domain}", "--timeout", "120"]
        graph = subprocess.Popen(command, env=localhost_env(args.domain), stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
        try:
            for line in graph.stdout:
                if "session/start: session started" in line:
                    break
            else:
                print("the session never started")
                return 1
            time.sleep(2.0)
            before, started = cpu_seconds(graph.pid), time.monotonic()
            time.sleep(args.window)
            after, elapsed = cpu_seconds(graph.pid), time.monotonic() - started
        finally:
            graph.send_signal(signal.SIGINT)
            graph.communicate(timeout=60)
    total = 0.0
    print(f"control_domain:={args.control_domain}, CPU over {elapsed:.1f} s of a moving session "
          f"(% of one core; {os.cpu_count()} cores):")
    for name in sorted(after):
        if name in before:
            share = 100.0 * (after[name] - before[name]) / elapsed
            total += share
            print(f"  {name:<18} {share:6.1f} %")
    print(f"  {'all nodes':<18} {total:6.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
