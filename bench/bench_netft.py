"""Benchmark of the Net F/T path: stream rate and latency. Prints numbers, never fails.

Starts the emulated Net F/T (``rehab-robot emulate netft --clock-probe``: each record's Fx
holds its send time on CLOCK_MONOTONIC in µs) and the ``ft_sensor_driver`` node (with 1 count
per N, so the published Fx is that time), each its own process, on a ROS domain of its own
(DDS on localhost). A subscriber in this process measures, for every wrench it receives:

* latency = receive time - emulator send time: UDP, parsing, the node's publish and DDS;
* the rate of ft_sensor/wrench, and the node's own counts of lost packets and skipped publishes.

All three processes share CLOCK_MONOTONIC (one machine), so the latency needs no clock sync.

Run: ``.venv/bin/python bench/bench_netft.py [--rate 1000] [--seconds 10]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import WrenchStamped  # noqa: E402
from rclpy.context import Context  # noqa: E402

from rehab_robot.nodes.common import subscriber_qos  # noqa: E402
from rehab_robot.testing import BackgroundSpinner, NodeProcess  # noqa: E402
from rehab_robot.testing_emulators import EmulatorProcess  # noqa: E402

#: Must match the emulator's --clock-probe modulus (µs).
CLOCK_MODULUS = 10**9


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_domain() -> int:
    """ROS_DOMAIN_ID if set, else one from REHAB_TEST_DOMAINS=LO-HI if set, else one of 100..149."""
    if os.environ.get("ROS_DOMAIN_ID"):
        return int(os.environ["ROS_DOMAIN_ID"])
    if os.environ.get("REHAB_TEST_DOMAINS"):
        lo, hi = (int(x) for x in os.environ["REHAB_TEST_DOMAINS"].split("-"))
        return lo + os.getpid() % (hi - lo + 1)
    return 100 + os.getpid() % 50


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="RDT output rate of the emulator [Hz]")
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement time [s]")
    args = parser.parse_args()
    domain = bench_domain()

    lock = threading.Lock()
    samples: list[tuple[float, float]] = []  # (receive time [s], latency [ms])
    diagnostics: dict[str, str] = {}
    recording = threading.Event()

    def on_wrench(msg: WrenchStamped) -> None:
        now_us = time.monotonic() * 1e6
        if recording.is_set():
            latency_us = (now_us - msg.wrench.force.x) % CLOCK_MODULUS
            with lock:
                samples.append((now_us * 1e-6, latency_us * 1e-3))

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.endswith("ft_sensor_driver"):
                with lock:
                    diagnostics.clear()
                    diagnostics.update({kv.key: kv.value for kv in status.values})

    with tempfile.TemporaryDirectory() as tmp:
        emulator = EmulatorProcess("netft", ["--port", "0", "--control-port", "0", "--rate", str(args.rate),
                                              "--clock-probe"], Path(tmp))
        node = NodeProcess("ft_sensor_node", "ft_sensor_driver", {
            "sensor_address": "127.0.0.1", "port": emulator.ports[0], "rate": args.rate,
            "counts_per_force": 1.0, "cuff_mass": 0.0,
        }, domain, Path(tmp))
        context = Context()
        rclpy.init(context=context, domain_id=domain)
        client = rclpy.create_node("bench_netft", context=context)
        client.create_subscription(WrenchStamped, "ft_sensor/wrench", on_wrench, subscriber_qos("ft_sensor/wrench"))
        client.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 50)
        spinner = BackgroundSpinner(client, context)
        try:
            recording.set()
            deadline = time.monotonic() + 30
            while not samples and time.monotonic() < deadline and node.process.poll() is None:
                time.sleep(0.05)
            if not samples:
                print("no ft_sensor/wrench received; node output:\n" + node.output(), file=sys.stderr)
                return 1
            time.sleep(1.0)  # settle: discovery done, caches warm
            with lock:
                samples.clear()
                start_diag = dict(diagnostics)
            sent0, t0 = json.loads(emulator.command("stats")[3:])["sent"], time.monotonic()
            time.sleep(args.seconds)
            with lock:
                taken = list(samples)
                end_diag = dict(diagnostics)
            sent_rate = (json.loads(emulator.command("stats")[3:])["sent"] - sent0) / (time.monotonic() - t0)
        finally:
            spinner.stop()
            client.destroy_node()
            rclpy.shutdown(context=context)
            node.stop()
            emulator.stop()

    latencies = [lat for _, lat in taken]
    span = taken[-1][0] - taken[0][0]
    gaps = [(b[0] - a[0]) * 1e3 for a, b in zip(taken, taken[1:])]

    def counter(key: str) -> str:
        try:
            return str(int(end_diag[key]) - int(start_diag[key]))
        except (KeyError, ValueError):
            return "n/a"

    print(f"Net F/T emulator at {args.rate:g} Hz -> ft_sensor_driver -> subscriber, {args.seconds:g} s, "
          f"{os.cpu_count()} CPUs")
    print(f"  emulator sent: {sent_rate:.1f} records/s")
    print(f"  ft_sensor/wrench received: {len(taken)} ({(len(taken) - 1) / span:.1f} Hz)")
    print(f"  node: rate {end_diag.get('rate_hz', 'n/a')} Hz, lost packets {counter('lost_packets')}, "
          f"wrenches published {counter('wrenches_published')}, "
          f"superseded after a stall {counter('wrenches_superseded')}")
    print(f"  latency emulator send -> subscriber [ms]: median {statistics.median(latencies):.3f}, "
          f"p90 {percentile(latencies, 0.9):.3f}, p99 {percentile(latencies, 0.99):.3f}, max {max(latencies):.3f}")
    print(f"  interval between wrenches [ms]: median {statistics.median(gaps):.3f}, "
          f"p99 {percentile(gaps, 0.99):.3f}, max {max(gaps):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
