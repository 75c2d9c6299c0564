"""Benchmark of the driver loop on the emulated Dynamixel arm, in a whole session. Prints numbers, never fails.

Runs ``rehab-robot demo --hardware dynamixel`` (the Dynamixel emulator behind a pseudo-terminal,
the Net F/T emulator on UDP, every node its own process, DDS on localhost) with an elbow
exercise of ``--seconds`` and a driver ``loop_rate`` of ``--rate`` (default 500 Hz), and
measures from a subscriber in this process:

* the driver's cycle: the periods between the header stamps of ``joint_states`` (stamped
  in the driver's loop thread, once per cycle), their jitter (standard deviation and the
  tail) and the rate, while the arm follows the exercise;
* the driver's own figures on ``/diagnostics`` at the end: loop period p99 / p99.9 / max,
  overruns, cycles over the backend's budget, and the serial transaction time
  (read()+write(), Sync Read of 4 servos + Sync Write) of the cycle before each report
  (one sample a second), with the backend's timeouts and corrupt packets;
* the ``ft_sensor/wrench`` rate from the Net F/T driver and its lost-packet count.

``bench/bench_dynamixel.py`` times read() and write() themselves, back to back, outside
the driver; ``bench/bench_netft.py`` the Net F/T stream's latency.

Run: ``.venv/bin/python bench/bench_hardware_demo.py [--seconds 30] [--rate 500]``
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import WrenchStamped  # noqa: E402
from rclpy.context import Context  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from rehab_robot.nodes.common import subscriber_qos  # noqa: E402
from rehab_robot.ros_env import localhost_env  # noqa: E402
from rehab_robot.testing import BackgroundSpinner  # noqa: E402

MOVEMENT = 2.5  # [s] one way (1.2 rad: peak 0.9 rad/s, within the example patient's 1 rad/s)


class Probe:
    """Keeps joint_states stamps, wrench arrival times and the drivers' /diagnostics."""

    def __init__(self, domain: int) -> None:
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node("bench_probe", context=self.context)
        self.lock = threading.Lock()
        self.stamps: list[float] = []
        self.elbow_speed = 0.0
        self.wrench_times: list[float] = []
        self.driver: dict[str, str] = {}
        self.rw_times: list[float] = []
        self.ft: dict[str, str] = {}
        self.node.create_subscription(JointState, "joint_states", self.on_state, subscriber_qos("joint_states"))
        self.node.create_subscription(WrenchStamped, "ft_sensor/wrench", self.on_wrench,
                                      subscriber_qos("ft_sensor/wrench"))
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.on_diagnostics, 50)
        self.resume = self.node.create_client(Trigger, "session/resume")
        self.resumes = 0
        self.spinner = BackgroundSpinner(self.node, self.context)

    def keep_moving(self, stop: threading.Event) -> None:
        """Resume the session after an interruption (as the operator would), so the arm keeps following."""
        still_since = None
        while not stop.wait(0.1):
            if self.elbow_speed > 0.05:
                still_since = None
                continue
            still_since = still_since or time.monotonic()
            if time.monotonic() - still_since > 1.0 and self.resume.service_is_ready():
                future = self.resume.call_async(Trigger.Request())
                deadline = time.monotonic() + 2.0
                while not future.done() and time.monotonic() < deadline:
                    time.sleep(0.01)
                if future.done() and future.result().success:
                    self.resumes += 1
                still_since = None

    def on_state(self, msg: JointState) -> None:
        with self.lock:
            self.stamps.append(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)
        self.elbow_speed = abs(msg.velocity[3])

    def on_wrench(self, msg: WrenchStamped) -> None:  # noqa: ARG002
        with self.lock:
            self.wrench_times.append(time.monotonic())

    def on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if status.name.endswith("hardware_driver") and "period_p99_ms" in values:
                self.driver = values
                self.rw_times.append(float(values["read_write_time_ms"]))
            elif status.name.endswith("ft_sensor_driver"):
                self.ft = values

    def close(self) -> None:
        self.spinner.stop()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the measured exercise [s]")
    parser.add_argument("--rate", type=float, default=500.0, help="driver loop_rate [Hz]")
    args = parser.parse_args()
    domain = int(os.environ.get("ROS_DOMAIN_ID") or 100 + os.getpid() % 50)
    repetitions = max(2, int(np.ceil(args.seconds / (2 * MOVEMENT))) + 1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        protocol = tmp / "bench.yaml"
        protocol.write_text(
            "protocol:\n  name: bench_elbow\n  type: passive_rom\n  joint: elbow_flexion\n"
            f"  start_angle: 0.4\n  end_angle: 1.6\n  repetitions: {repetitions}\n"
            f"  movement_duration: {MOVEMENT}\n  hold_duration: 0.0\n")
        log = open(tmp / "demo.log", "w")
        demo = subprocess.Popen(
            [sys.executable, "-m", "rehab_robot.launcher", "demo", "--hardware", "dynamixel",
             f"protocol:={protocol}", f"output_dir:={tmp / 'out'}", f"loop_rate:={args.rate}",
             "--timeout", str(args.seconds + 180)],
            env=localhost_env(domain), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        probe = Probe(domain)
        try:
            deadline = time.monotonic() + 180
            while probe.elbow_speed < 0.3:
                if demo.poll() is not None or time.monotonic() > deadline:
                    print("the arm never started moving; demo output:")
                    print((tmp / "demo.log").read_text()[-4000:])
                    return 1
                time.sleep(0.05)
            stop = threading.Event()
            resumer = threading.Thread(target=probe.keep_moving, args=(stop,), daemon=True)
            resumer.start()
            with probe.lock:
                first, wrench_first, rw_first = len(probe.stamps), len(probe.wrench_times), len(probe.rw_times)
            time.sleep(args.seconds)
            with probe.lock:
                stamps = np.array(probe.stamps[first:])
                wrench_times = np.array(probe.wrench_times[wrench_first:])
                rw = np.array(probe.rw_times[rw_first:])
            driver, ft = dict(probe.driver), dict(probe.ft)
            stop.set()
            resumer.join()
        finally:
            probe.close()
            if demo.poll() is None:
                demo.send_signal(signal.SIGINT)
            try:
                demo.wait(60)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait()
            log.close()
        text = (tmp / "demo.log").read_text()
        interruptions = len(re.findall(r"motion interrupted", text)) + len(re.findall(r"quick stop and hold", text))

    periods = np.diff(stamps) * 1e3
    nominal = 1e3 / args.rate
    print(f"dynamixel backend against its emulator, driver loop_rate {args.rate:g} Hz "
          f"(nominal period {nominal:.2f} ms), {args.seconds:g} s of elbow exercise")
    print(f"  joint_states as received here (best effort: a sample lost on the way is a long period): "
          f"{len(stamps)} samples, {1e3 / periods.mean():.1f} Hz; period "
          f"median {np.median(periods):.3f} ms, std (jitter) {periods.std():.3f} ms, "
          f"p1 {np.percentile(periods, 1):.3f} ms, p99 {np.percentile(periods, 99):.3f} ms, "
          f"p99.9 {np.percentile(periods, 99.9):.3f} ms, max {periods.max():.3f} ms")
    print(f"  |period - nominal|: median {np.median(np.abs(periods - nominal)):.3f} ms, "
          f"p99 {np.percentile(np.abs(periods - nominal), 99):.3f} ms; "
          f"periods > 1.5 x nominal: {int(np.sum(periods > 1.5 * nominal))}")
    if driver:
        print(f"  driver /diagnostics (whole run): period p99 {driver.get('period_p99_ms')} ms, "
              f"p99.9 {driver.get('period_p99.9_ms')} ms, max {driver.get('period_max_ms')} ms, "
              f"overruns {driver.get('overruns')} of {driver.get('cycles')} cycles, "
              f"over budget {driver.get('over_budget_cycles')} (budget {driver.get('budget_ms')} ms)")
        print(f"  backend: cycles {driver.get('backend.cycles')}, timeouts {driver.get('backend.timeouts')}, "
              f"corrupt packets {driver.get('backend.corrupt_packets')}")
    if len(rw):
        print(f"  serial transaction read()+write() of one cycle (the driver reports its last one each second, "
              f"n={len(rw)}): median {np.median(rw):.3f} ms, p90 {np.percentile(rw, 90):.3f} ms, max {rw.max():.3f} ms")
    if len(wrench_times) > 1:
        print(f"  ft_sensor/wrench: {len(wrench_times) / (wrench_times[-1] - wrench_times[0]):.0f} Hz received; "
              f"Net F/T driver: rate {ft.get('rate_hz')} Hz, lost packets {ft.get('lost_packets')}, "
              f"superseded {ft.get('wrenches_superseded')}")
    print(f"  motion interruptions / quick stops during the whole demo: {interruptions} "
          f"(session resumed {probe.resumes} times by this benchmark)")
    print(f"  load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
