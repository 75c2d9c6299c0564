"""Benchmark of the running node graph: loop rate and stop times. Prints numbers, never fails.

Starts the driver (sim), safety supervisor, motion controller and session manager as
processes on a ROS domain of their own (DDS on localhost), runs a long elbow exercise
and measures, from the driver's own message stamps:

* the rate of ``joint_states`` (the driver loop) and the jitter of its periods;
* e-stop to arm at rest (all joints < 0.02 rad/s), over several trials;
* safety supervisor SIGKILL to arm at rest, over several trials (the supervisor is
  restarted between trials).

Run: ``.venv/bin/python bench/bench_graph.py [--trials N]``
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"

import rclpy  # noqa: E402
from rclpy.context import Context  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Bool  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from rehab_robot import resources  # noqa: E402
from rehab_robot.nodes.common import topic_qos  # noqa: E402
from rehab_robot.testing import BackgroundSpinner, NodeProcess  # noqa: E402

REST_SPEED = 0.02
PROTOCOL = """\
protocol:
  name: bench_elbow
  type: passive_rom
  joint: elbow_flexion
  start_angle: 0.4
  end_angle: 1.6
  repetitions: 50
  movement_duration: 2.5
  hold_duration: 0.0
"""


class Probe:
    """Test-side node: records joint_states stamps and velocities, calls services."""

    def __init__(self, domain: int):
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node("bench_probe", context=self.context)
        self.lock = threading.Lock()
        self.states: list[tuple[float, float]] = []  # (stamp, max |v|)
        self.elbow_speed = 0.0
        self.heartbeat = None
        self.node.create_subscription(JointState, "joint_states", self.on_state, topic_qos("joint_states"))
        self.node.create_subscription(Bool, "safety/heartbeat", self.on_heartbeat, topic_qos("safety/heartbeat"))
        self.clients = {name: self.node.create_client(Trigger, name)
                        for name in ("safety/estop", "safety/reset", "session/resume")}
        self.spinner = BackgroundSpinner(self.node, self.context)

    def on_state(self, msg):
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        with self.lock:
            self.states.append((stamp, float(np.max(np.abs(msg.velocity)))))
        self.elbow_speed = abs(msg.velocity[3])

    def on_heartbeat(self, msg):
        self.heartbeat = msg.data

    def call(self, name: str) -> bool:
        client = self.clients[name]
        client.wait_for_service(timeout_sec=10)
        future = client.call_async(Trigger.Request())
        deadline = time.monotonic() + 5
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.005)
        return future.done() and future.result().success

    def wait(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return False

    def rest_after(self, t0: float) -> float | None:
        """Seconds from t0 to the first state from which the arm stays at rest."""
        with self.lock:
            after = [s for s in self.states if s[0] >= t0]
        rest = None
        for stamp, speed in after:
            if speed < REST_SPEED:
                rest = stamp if rest is None else rest
            else:
                rest = None
        return None if rest is None else rest - t0

    def close(self):
        self.spinner.stop()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def summary(values: list[float]) -> str:
    """min / median / max of ``values`` in ms."""
    if not values:
        return "no data"
    ms = [1e3 * v for v in values]
    return f"min {min(ms):.1f} ms, median {statistics.median(ms):.1f} ms, max {max(ms):.1f} ms (n={len(ms)})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--control-domain", default="auto",
                        help="the chain's control_domain, as `rehab-robot run` gives it (auto) or public")
    args = parser.parse_args()
    chain = {"control_domain": args.control_domain}
    domain = 100 + os.getpid() % 50
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "bench.yaml").write_text(PROTOCOL)
        patient = str(resources.example_patient())
        nodes = {
            "driver": NodeProcess("driver_node", "hardware_driver", {"hardware": "sim", **chain}, domain, tmp),
            "supervisor": NodeProcess("supervisor_node", "safety_supervisor", {"patient": patient, **chain},
                                      domain, tmp),
            "controller": NodeProcess("controller_node", "motion_controller", chain, domain, tmp),
            "session": NodeProcess("session_node", "session_manager", {
                "patient": patient, "protocol": str(tmp / "bench.yaml"),
                "session_dir": str(tmp / "session"), "autostart": True, "pause_timeout": 600.0}, domain, tmp),
        }
        probe = Probe(domain)
        try:
            moving = lambda: probe.elbow_speed > 0.3  # noqa: E731
            if not probe.wait(moving, 60):
                print("the arm never started moving; node output:")
                for node in nodes.values():
                    print(node.output()[-2000:])
                return 1
            time.sleep(5.0)
            with probe.lock:
                stamps = np.array([s[0] for s in probe.states[-2500:]])
            periods = np.diff(stamps)
            print(f"joint_states rate: {1 / periods.mean():.1f} Hz over {stamps[-1] - stamps[0]:.1f} s "
                  f"(period median {1e3 * np.median(periods):.2f} ms, p99 {1e3 * np.percentile(periods, 99):.2f} ms, "
                  f"max {1e3 * periods.max():.2f} ms)")

            estop, kill, speeds = [], [], []

            def trial(stop, results):
                # Trigger only while the elbow moves fast: a stop at a turnaround proves nothing.
                if not probe.wait(lambda: probe.elbow_speed > 0.8, 20):
                    print("  trial skipped: the arm did not get moving")
                    return
                speeds.append(probe.elbow_speed)
                t0 = time.time()
                stop()
                time.sleep(1.0)
                results.append(probe.rest_after(t0))

            def restart_supervisor():
                nodes["supervisor"].stop()
                nodes["supervisor"] = NodeProcess("supervisor_node", "safety_supervisor",
                                                  {"patient": patient, **chain}, domain, tmp)

            for _ in range(args.trials):
                trial(lambda: probe.call("safety/estop"), estop)
                probe.call("safety/reset")
                probe.wait(lambda: probe.heartbeat is True, 10)
                probe.call("session/resume")
            for _ in range(args.trials):
                trial(lambda: nodes["supervisor"].signal(signal.SIGKILL), kill)
                restart_supervisor()
                probe.wait(lambda: probe.heartbeat is True, 30)
                probe.wait(lambda: probe.call("session/resume"), 10)
            print(f"elbow speed at the stop:     {min(speeds):.2f} .. {max(speeds):.2f} rad/s")
            print(f"e-stop to rest:              {summary([v for v in estop if v is not None])}")
            print(f"supervisor SIGKILL to rest:  {summary([v for v in kill if v is not None])}")
            failed = sum(v is None for v in estop + kill)
            if failed:
                print(f"{failed} trial(s) never reached rest")
        finally:
            probe.close()
            for node in nodes.values():
                node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
