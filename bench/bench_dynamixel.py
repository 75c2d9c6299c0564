"""Benchmark of the dynamixel backend against its emulator over a pseudo-terminal.

Run: ``python bench/bench_dynamixel.py [--cycles N]`` (``--port DEV --config FILE``
measures a real arm instead: it moves each joint by up to 0.1 rad). It starts the emulator
(``rehab-robot emulate dynamixel``) in another process and prints, for the shipped arm
(4 Dynamixel-P servos) and a mixed bus (3 P + 1 X-series, two transactions each way):

* the time of one read() (Sync Read + 4 status packets) and one write() (Sync Write);
* the achievable loop rate when read() + write() run back to back;
* the nominal wire time of a real bus at the configured baud rate (from the backend's
  own model, for comparison: a pseudo-terminal has no baud rate nor USB latency).

It prints numbers and never fails on timing: the machine it runs on may be shared.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from rehab_robot.errors import RehabRobotError
from rehab_robot.hardware.dynamixel import DynamixelArm, default_config_path, load_config, transaction_time
from rehab_robot.hardware.interface import JointCommand


def start_emulator(folder: Path, *servos: str) -> tuple[subprocess.Popen, str]:
    """Start the emulator; return the process and the pty link path."""
    link = str(folder / "ttyDXL")
    args = [sys.executable, "-m", "rehab_robot.emulators.dynamixel", "--link", link]
    for spec in servos:
        args += ["--servo", spec]
    process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if not line.startswith("PTY "):
        raise SystemExit(f"emulator did not start: {line!r}")
    return process, link


def measure(config: str, link: str, cycles: int) -> dict:
    """Time read() and write() over ``cycles`` cycles while following a slow sine."""
    reads, writes, totals = [], [], []
    with DynamixelArm(config=config, port=link) as arm:
        start = arm.read().position
        arm.enable()
        for k in range(cycles):
            t0 = time.perf_counter()
            arm.read()
            t1 = time.perf_counter()
            target = start + 0.1 * np.sin(2 * np.pi * k / cycles)
            arm.write(JointCommand(target, np.zeros(4), np.zeros(4)))
            t2 = time.perf_counter()
            reads.append(t1 - t0)
            writes.append(t2 - t1)
            totals.append(t2 - t0)
        diagnostics = arm.diagnostics()
        budget = arm.cycle_budget
    return {"read": np.array(reads), "write": np.array(writes), "total": np.array(totals),
            "diagnostics": diagnostics, "budget": budget}


def report(name: str, config_path: str, result: dict) -> None:
    config = load_config(config_path)
    total = result["total"]
    print(f"{name}:")
    for key in ("read", "write", "total"):
        values = result[key] * 1e3
        print(f"  {key:6s} mean {values.mean():.3f} ms  median {np.median(values):.3f} ms  "
              f"p99 {np.percentile(values, 99):.3f} ms  max {values.max():.3f} ms")
    print(f"  achievable loop rate (read+write back to back): {1.0 / total.mean():.0f} Hz mean, "
          f"{1.0 / np.percentile(total, 99):.0f} Hz at p99")
    d = result["diagnostics"]
    print(f"  cycles {d['cycles']}, timeouts {d['timeouts']}, corrupt packets {d['corrupt_packets']}")
    print(f"  real bus at {config.baudrate} bit/s, latency timer {config.latency_timer * 1e3:g} ms: "
          f"nominal {transaction_time(config) * 1e3:.2f} ms per cycle; declared cycle_budget "
          f"{result['budget'] * 1e3:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=2000)
    parser.add_argument("--margin", type=float, default=0.02, help="response_margin [s] for the emulator")
    parser.add_argument("--port", help="measure a real bus on this port instead (the arm moves +-0.1 rad!)")
    parser.add_argument("--config", default=str(default_config_path()), help="arm configuration for --port")
    args = parser.parse_args()
    if args.port:
        try:
            report(f"real bus on {args.port}", args.config, measure(args.config, args.port, args.cycles))
        except RehabRobotError as exc:
            raise SystemExit(f"bench_dynamixel: {exc}") from None
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # The emulator is a Python process on a possibly shared machine: a wider response
        # margin than a real bus needs keeps a late reply from ending the run.
        data = yaml.safe_load(default_config_path().read_text())
        data["response_margin"] = args.margin
        shipped = str(folder / "shipped.yaml")
        Path(shipped).write_text(yaml.safe_dump(data))
        process, link = start_emulator(folder)
        try:
            report("shipped arm, 4 x Dynamixel-P (1 Sync Read + 1 Sync Write per cycle)", shipped,
                   measure(shipped, link, args.cycles))
        finally:
            process.communicate("quit\n", timeout=10)

        data["joints"]["elbow_flexion"].update(family="x", model="XM540-W270", counts_per_revolution=4096,
                                               zero_offset=2048, torque_constant=2.4)
        mixed = folder / "mixed.yaml"
        mixed.write_text(yaml.safe_dump(data))
        process, link = start_emulator(folder, "elbow_flexion:4:1120:4:1:2048")
        try:
            report("mixed bus, 3 x Dynamixel-P + 1 x XM540 (2 Sync Reads + 2 Sync Writes per cycle)",
                   str(mixed), measure(str(mixed), link, args.cycles))
        finally:
            process.communicate("quit\n", timeout=10)
        for baud in (1000000, 2000000, 4000000):
            config = load_config(default_config_path(), baudrate=baud)
            print(f"nominal real-bus cycle at {baud} bit/s (shipped arm): {transaction_time(config) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
