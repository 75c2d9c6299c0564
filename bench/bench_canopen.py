"""Benchmark of the canopen backend against its emulator (CiA 402 drives behind an SLCAN
adapter on a pseudo-terminal), at the driver's loop rate.

Run: ``python bench/bench_canopen.py [--rate HZ] [--seconds S] [--layout compact|full]``.
It starts ``rehab-robot emulate canopen`` in another process, runs the backend on the
driver's own periodic loop (``rehab_robot.periodic.PeriodicLoop``) following a slow sine,
and prints:

* read()+write() time per cycle (mean, p99, max) and the loop period jitter (p99, max);
* the computed bus load of the configuration (worst-case bit stuffing) and the bus load
  measured on the emulated bus: frames/s and bits/s counted with each frame's actual
  stuff bits (the pty carries the frames at its own speed; the bits are what a 1 Mbit/s
  bus would carry).

It prints numbers and never fails on timing: the machine it runs on may be shared.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml

from rehab_robot.hardware.canopen import CanopenArm
from rehab_robot.hardware.canopen.bus_load import layout_bus_load
from rehab_robot.hardware.canopen.config import default_config_path
from rehab_robot.hardware.interface import JointCommand
from rehab_robot.periodic import PeriodicLoop


def start_emulator(folder: Path) -> tuple[subprocess.Popen, str]:
    """Start the emulator; return the process and the pty link path."""
    link = str(folder / "ttyCAN")
    process = subprocess.Popen([sys.executable, "-m", "rehab_robot.emulators.canopen", "--link", link],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    line = process.stdout.readline()
    if not line.startswith("PTY "):
        raise SystemExit(f"emulator did not start: {line!r}")
    return process, link


def stats(process: subprocess.Popen) -> tuple[int, int, int]:
    """(frames to the drives, frames from the drives, bits) counted by the emulated bus."""
    process.stdin.write("stats\n")
    process.stdin.flush()
    line = process.stdout.readline().split()
    return int(line[1]), int(line[2]), int(line[3])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0, help="loop and SYNC rate [Hz]")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--layout", default="compact", choices=("compact", "full"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        process, link = start_emulator(folder)
        try:
            data = yaml.safe_load(default_config_path().read_text())
            data.update(interface="slcan", channel=link, bus_options={"sleep_after_open": 0},
                        eds=str(default_config_path().parent / data["eds"]), pdo_layout=args.layout,
                        max_missed_cycles=50, heartbeat_timeout=1.0, sdo_timeout=1.0)
            if args.layout == "full":
                data["max_bus_load"] = 0.6
            config = folder / "arm.yaml"
            config.write_text(yaml.safe_dump(data))
            run(str(config), process, args)
        finally:
            process.stdin.write("quit\n")
            process.stdin.flush()
            process.wait(5)
    return 0


def run(config: str, process: subprocess.Popen, args) -> None:
    try:
        # As the hardware_driver node runs (rehab_robot.nodes.common.raise_priority).
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(50))
        print("priority: SCHED_FIFO 50, as the driver node")
    except (OSError, AttributeError) as exc:
        print(f"priority: normal ({exc}); the driver node would run at SCHED_FIFO 50 or nice -10")
    t0 = time.monotonic()
    arm = CanopenArm(config=config, loop_rate=args.rate)
    print(f"start-up (NMT reset, SDO configuration of 4 drives, holding): {time.monotonic() - t0:.2f} s")
    with arm:
        start = arm.read().position
        arm.enable()
        durations, errors = [], []
        lock = threading.Lock()

        def cycle(now: float) -> None:
            began = time.perf_counter()
            try:
                arm.read()
                target = start + 0.1 * np.sin(2 * np.pi * 0.5 * (now - t_start))
                arm.write(JointCommand(target, np.zeros(4), np.zeros(4)))
            except Exception as exc:  # a benchmark reports, it does not stop at the first fault
                with lock:
                    errors.append(str(exc))
            durations.append(time.perf_counter() - began)

        t_start = time.monotonic()
        before = stats(process)
        loop = PeriodicLoop(1.0 / args.rate, cycle, "bench_canopen")
        loop.start()
        time.sleep(args.seconds)
        loop.stop()
        elapsed = time.monotonic() - t_start
        after = stats(process)
        timing = loop.stats.timing()
    d = np.array(durations) * 1e3
    computed = layout_bus_load(arm.layout, 4, args.rate, arm.config.bitrate, arm.config.heartbeat_time)
    frames = (after[0] - before[0] + after[1] - before[1]) / elapsed
    bits = (after[2] - before[2]) / elapsed
    print(f"layout {arm.layout.name}: {arm.layout.description}")
    print(f"loop {args.rate:g} Hz for {elapsed:.1f} s: {timing.cycles} cycles, rate {timing.rate:.1f} Hz, "
          f"{timing.overruns} overruns")
    print(f"read()+write() [ms]: mean {d.mean():.3f}, p99 {np.percentile(d, 99):.3f}, max {d.max():.3f} "
          f"(budget {arm.cycle_budget * 1e3:.2f})")
    print(f"loop period [ms]: p99 {timing.period_p99 * 1e3:.2f}, p99.9 {timing.period_p999 * 1e3:.2f}, "
          f"max {timing.period_max * 1e3:.2f} (nominal {1e3 / args.rate:.2f})")
    print(f"bus load computed (worst-case stuffing): {computed.frames_per_second:.0f} frames/s, "
          f"{computed.bits_per_second:.0f} bit/s = {100 * computed.load:.1f} % of {arm.config.bitrate} bit/s")
    print(f"bus load measured on the emulated bus (actual stuffing): {frames:.0f} frames/s, {bits:.0f} bit/s "
          f"= {100 * bits / arm.config.bitrate:.1f} %")
    print(f"faults during the run: {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))


if __name__ == "__main__":
    sys.exit(main())
