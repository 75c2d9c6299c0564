"""Benchmark: do sessions start cleanly, back to back, whatever discovery does?

Runs ``--sessions`` short sessions one after another with ``rehab-robot run`` (every
node its own process, DDS on localhost, one ROS domain for all of them, as a clinic PC
would), optionally beside a CPU-bound process, and counts per session: completed or
not, stops (``quick stop``), automatic resumes, refused trajectories and the time from
launch to the first motion.

Run: ``.venv/bin/python bench/bench_startup.py [--sessions 20] [--load]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rehab_robot import resources
from rehab_robot.ros_env import localhost_env

PROTOCOL = """\
protocol:
  name: bench_startup_elbow
  type: passive_rom
  joint: elbow_flexion
  start_angle: 0.5
  end_angle: 1.2
  repetitions: 1
  movement_duration: 1.5
  hold_duration: 0.0
"""


def run_session(tmp: Path, index: int, env: dict) -> dict:
    """Run one session; return what happened."""
    protocol = tmp / "protocol.yaml"
    protocol.write_text(PROTOCOL)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "rehab_robot.launcher", "run", f"protocol:={protocol}",
         f"patient:={resources.example_patient()}", f"output_dir:={tmp}", f"session_id:=s{index}",
         "--timeout", "90"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    elapsed = time.monotonic() - started
    lines = (done.stdout + done.stderr).splitlines()
    report_path = tmp / f"s{index}" / "report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    events = [e["event"] for e in report.get("events", [])]
    start_line = next((line for line in lines if "session/start: session started" in line), None)
    return {
        "status": done.returncode,
        "ended": report.get("ended", "no report"),
        "stops": sum("quick stop" in line for line in lines),
        "auto_resumes": sum("resumed automatically" in e for e in events),
        "interruptions": sum(e.startswith("motion interrupted") for e in events),
        "refused": sum("trajectory refused" in line for line in lines),
        "warnings": [line for line in lines if "[WARN]" in line or "[ERROR]" in line],
        "elapsed": elapsed,
        "started": start_line is not None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--load", action="store_true", help="one CPU-bound process beside the graph")
    parser.add_argument("--verbose", action="store_true", help="print every warning")
    args = parser.parse_args()
    env = localhost_env(20 + os.getpid() % 70)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.load else None
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for index in range(args.sessions):
                result = run_session(Path(tmp), index, env)
                results.append(result)
                flags = [k for k in ("stops", "auto_resumes", "interruptions", "refused") if result[k]]
                print(f"session {index + 1:2d}: {result['ended']:<9} exit {result['status']}  "
                      f"{result['elapsed']:5.1f} s  {'clean' if not flags else ', '.join(f'{k} {result[k]}' for k in flags)}",
                      flush=True)
                if args.verbose or flags:
                    for line in result["warnings"][:8]:
                        print(f"    {line}")
    finally:
        if hog is not None:
            hog.kill()
    completed = sum(r["ended"] == "completed" and r["status"] == 0 for r in results)
    clean = sum(r["ended"] == "completed" and not (r["stops"] or r["auto_resumes"] or r["refused"]) for r in results)
    print(f"\n{completed}/{len(results)} sessions completed, {clean}/{len(results)} with no stop, no automatic "
          f"resume and no refused trajectory; session wall time median "
          f"{statistics.median(r['elapsed'] for r in results):.1f} s "
          f"(load: {'1 CPU-bound process' if args.load else 'none'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
