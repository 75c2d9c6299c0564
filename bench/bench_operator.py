"""Benchmark of the operator's command line on a running graph. Prints numbers, never fails.

Starts the driver (sim), safety supervisor, motion controller and session manager as
processes on a ROS domain of their own (DDS on localhost) with a long exercise, then
measures, as a clinician would see them from a second terminal:

* the wall time of ``rehab-robot pause`` and ``rehab-robot resume`` (process start,
  discovery, call, answer, exit), over several trials;
* the wall time of ``rehab-robot status --once``;
* the CPU time [s per s] of the live ``rehab-robot status`` view at its default 5 Hz,
  while the driver publishes at 500 Hz.

Run: ``.venv/bin/python bench/bench_operator.py [--trials N] [--live-seconds S]``
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rehab_robot import resources
from rehab_robot.ros_env import localhost_env
from rehab_robot.testing import NodeProcess

PROTOCOL = """\
protocol:
  name: bench_elbow
  type: passive_rom
  joint: elbow_flexion
  start_angle: 0.4
  end_angle: 1.6
  repetitions: 50
  movement_duration: 2.5
  hold_duration: 0.3
"""


def cli(domain: int, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    """Run ``rehab-robot <args>``; return (wall time [s], result)."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "rehab_robot.launcher", *args], env=localhost_env(domain),
                            capture_output=True, text=True, timeout=120)
    return time.perf_counter() - start, result


def summary(name: str, times: list[float]) -> None:
    print(f"{name:<28} n={len(times):2d}  median {statistics.median(times):.2f} s  "
          f"min {min(times):.2f} s  max {max(times):.2f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--live-seconds", type=float, default=10.0)
    parser.add_argument("--domain", type=int, default=int(os.environ.get("REHAB_BENCH_DOMAIN", "150")))
    args = parser.parse_args()
    domain = args.domain
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        protocol = tmp_path / "bench.yaml"
        protocol.write_text(PROTOCOL)
        patient = str(resources.example_patient())
        nodes = [
            NodeProcess("driver_node", "hardware_driver", {"hardware": "sim"}, domain, tmp_path),
            NodeProcess("supervisor_node", "safety_supervisor", {"patient": patient}, domain, tmp_path),
            NodeProcess("controller_node", "motion_controller", {}, domain, tmp_path),
            NodeProcess("session_node", "session_manager", {"patient": patient, "protocol": str(protocol),
                        "session_dir": str(tmp_path / "session"), "autostart": True}, domain, tmp_path),
        ]
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                _, result = cli(domain, "status", "--once", "--timeout", "5")
                if "Session   RUNNING" in result.stdout:
                    break
                time.sleep(1.0)
            else:
                print("the session did not start within 90 s")
                return 1
            pause, resume, once = [], [], []
            for _ in range(args.trials):
                for command, times in (("pause", pause), ("resume", resume)):
                    elapsed, result = cli(domain, command, "--timeout", "20")
                    if result.returncode == 0:
                        times.append(elapsed)
                    else:
                        print(f"{command}: exit {result.returncode}: {result.stdout.strip()} {result.stderr.strip()}")
                    time.sleep(1.0)
                elapsed, result = cli(domain, "status", "--once", "--timeout", "20")
                if result.returncode == 0:
                    once.append(elapsed)
            for name, times in (("rehab-robot pause", pause), ("rehab-robot resume", resume),
                                ("rehab-robot status --once", once)):
                if times:
                    summary(name, times)

            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            live = subprocess.Popen([sys.executable, "-m", "rehab_robot.launcher", "status"],
                                    env=localhost_env(domain), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(args.live_seconds)
            live.send_signal(signal.SIGINT)
            live.wait(timeout=30)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            print(f"live status view (5 Hz)       CPU {cpu / args.live_seconds:.3f} s/s over {args.live_seconds:g} s "
                  f"(start-up included), exit {live.returncode}")
        finally:
            for node in reversed(nodes):
                node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
