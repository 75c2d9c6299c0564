"""Benchmark of the interaction control modes, in closed loop with the simulated arm.

Run: ``python bench/bench_interaction.py [--quick] [--graph]``. Every scenario runs
in-process in simulated time (SimulatedArm + virtual patient + InteractionController,
see rehab_robot/control/closed_loop.py), so its numbers are deterministic; only the loop
cost is wall-clock and varies with the machine's load. It prints numbers and never fails.

* transparency: active mode, the virtual patient flexes the elbow 1 rad in 1 s;
* stability: active mode with light virtual mass and damping while the patient holds the cuff;
* assist-as-needed: 20 repetitions per impairment, the gain adapted after each (Emken 2007 with an
  error tolerance), per repetition: gain, tracking error, robot work share, reach;
* spasm: onset to reaction;
* loop cost: wall time of one InteractionController cycle per mode; with ``--graph`` also the
  running controller node's loop rate and period percentiles (driver, supervisor and
  controller as processes, ROS_DOMAIN_ID from the environment or 160).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rehab_robot.control import closed_loop
from rehab_robot.control.interaction import InteractionController
from rehab_robot.control.kinematics import CuffKinematics
from rehab_robot.control.modes import InteractionState, Reference
from rehab_robot.control.settings import InteractionSettings
from rehab_robot.control.trajectory import QuinticSegment
from rehab_robot.model import ArmModel


def transparency() -> None:
    print("-- transparency: active mode, elbow 1 rad in 1 s by the virtual patient (weight support 1)")
    print(f"{'mass kg':>8} {'damping N·s/m':>14} {'latency':>8} {'peak cuff F N':>14} {'peak equiv F N':>15} "
          f"{'app. damping':>13} {'error %':>8} {'app. mass kg':>13}")
    for mass, damping in ((2.0, 10.0), (1.0, 5.0), (5.0, 30.0)):
        for latency in (1, 3):
            r = closed_loop.transparency(mass, damping, latency_cycles=latency)
            error = 100.0 * (r["apparent_damping"] / damping - 1.0)
            print(f"{mass:8.1f} {damping:14.1f} {latency * 2:6d}ms {r['peak_cuff_force']:14.2f} "
                  f"{r['peak_equivalent_force']:15.2f} {r['apparent_damping']:13.2f} {error:8.1f} "
                  f"{r['apparent_mass']:13.2f}")


def stability() -> None:
    print("-- stability: active mode, the patient (effort 1) moves the elbow 0.3 rad and holds; "
          "residual motion 2-3 s")
    print(f"{'mass kg':>8} {'damping N·s/m':>14} {'latency':>8} {'joint p2p rad':>14} {'cuff p2p mm':>12}")
    for mass in (0.5, 1.0, 2.0):
        for damping in (2.0, 5.0, 10.0):
            for latency in (1, 3):
                r = closed_loop.stability(mass, damping, latency_cycles=latency)
                print(f"{mass:8.1f} {damping:14.1f} {latency * 2:6d}ms {r['joint_p2p']:14.2e} "
                      f"{r['cuff_p2p'] * 1e3:12.4f}")


#: The assist-as-needed scenario's adaptation law and patient (docs/control-modes.md, "Numbers measured").
AAN_LAW = {"forgetting_factor": 0.8, "learning_rate": 2.0, "error_tolerance": 0.06}
AAN_STRENGTH = 5.0  # N·m, the healthy elbow: at impairment 0.5 the patient needs some help against gravity


#: The patient of the impairment 0.5 scenario who learns: starts at 30 % effort and tries harder
#: after each miss (docs/virtual-patient.md, ``learning``).
AAN_LEARNER = {"effort": 0.3, "learning": {"rate": 0.2}}


def assist_as_needed(repetitions: int) -> None:
    law = AAN_LAW
    print(f"-- assist-as-needed: active_assist, elbow 0.3 <-> 1.3 rad, reference from the patient's onset "
          f"(or 1 s after the target showed), {repetitions} repetitions, healthy elbow strength "
          f"{AAN_STRENGTH:g} N·m, g <- clip({law['forgetting_factor']:g} g + {law['learning_rate']:g} max(0, e - "
          f"{law['error_tolerance']:g}), 0, 1); default assist settings (stiffness 100 N·m/rad, deadband 0.05 rad)")
    scenarios = (
        (0.5, "a patient who learns (effort 0.3 at first, learning rate 0.2 1/rad), no weight support",
         {"patient": AAN_LEARNER}),
        (0.5, "a patient who does not learn (effort 1), no weight support", {}),
        (0.0, "no weight support", {}),
        (1.0, "weight support 1", {"weight_support": 1.0}),
        (1.0, "no weight support", {}),
    )
    for impairment, label, extra in scenarios:
        results = closed_loop.assist_as_needed(impairment, repetitions=repetitions, strength=AAN_STRENGTH,
                                               **extra, **law)
        print(f"impairment {impairment:g}, {label}:")
        print(f"  {'rep':>3} {'gain':>6} {'error rad':>9} {'robot share':>11} {'robot J':>8} {'patient J':>9} "
              f"{'elbow min..max rad':>19} {'onset s':>7} {'effort':>6}")
        for k, r in enumerate(results):
            print(f"  {k + 1:3d} {r['gain']:6.3f} {r['error']:9.3f} {r['robot_share']:11.3f} {r['robot_work']:8.3f} "
                  f"{r['patient_work']:9.3f} {r['lowest']:9.3f}..{r['reached']:.3f} {r['onset']:7.3f} "
                  f"{r['effort']:6.2f}")
        n = min(5, len(results) // 2) or 1
        for name in ("gain", "error", "robot_share"):
            first = np.mean([r[name] for r in results[:n]])
            last = np.mean([r[name] for r in results[-n:]])
            trend = ("about the same" if abs(last - first) <= 0.02 * max(abs(first), 1e-9)
                     else "falls" if last < first else "rises")
            print(f"  {name}: mean of the first {n} {first:.3f}, of the last {n} {last:.3f} ({trend})")
        print(f"  range of motion covered (last repetition): {results[-1]['lowest']:.3f} .. "
              f"{results[-1]['reached']:.3f} rad of 0.3 .. 1.3 rad")


def spasm() -> None:
    print("-- spasm: passive ROM of the elbow, scripted -15 N·m spasm at 1.0 s (20 ms rise)")
    for reaction in ("compliant_hold", "return_to_start"):
        for latency in (1, 3):
            r = closed_loop.spasm_reaction(reaction, latency_cycles=latency)
            e = r["event"]
            print(f"{reaction:16s} latency {latency * 2} ms: rule {e.values['rule']}, force {e.values['force']} N, "
                  f"onset->reaction {r['onset_to_reaction'] * 1e3:.1f} ms, spasm start->reaction "
                  f"{r['start_to_reaction'] * 1e3:.1f} ms, elbow after {r['elbow_after']:.3f} rad")


def loop_cost(cycles: int = 2000) -> None:
    print(f"-- loop cost: one InteractionController.step, {cycles} cycles per mode (wall clock, this machine)")
    model = ArmModel.from_urdf()
    q0 = np.array([0.2, 0.2, 0.1, 0.8])
    base = InteractionSettings.defaults(model.lower, model.upper)
    segment = QuinticSegment.minimum_jerk(q0, q0 + 0.3, 2.0)
    cuff = CuffKinematics.at(model, q0).cuff_position
    for mode, extra in (("position", {}), ("active", {}), ("active_assist", {}), ("resistive", {}),
                        ("path_guidance", {"path_guidance.waypoints": [*cuff, *(cuff + [0.1, 0.0, 0.1])]})):
        controller = InteractionController(model, base.updated({"mode": mode, **extra}), 0.002)
        wrench = np.array([1.0, 0.5, -2.0, 0.1, 0.0, 0.05])
        times = []
        for k in range(cycles):
            t = k * 0.002
            qr, vr, ar = segment.sample(t)
            reference = Reference(qr, vr, ar, q0, segment.end, t, 2.0)
            q = q0 + 0.001 * np.sin(k * 0.01)
            start = time.perf_counter()
            controller.step(InteractionState(t, q, np.zeros(4), wrench), reference)
            times.append(time.perf_counter() - start)
        times = np.array(times[10:]) * 1e6
        print(f"{mode:14s} mean {times.mean():7.1f} µs, p99 {np.percentile(times, 99):7.1f} µs, "
              f"max {times.max():8.1f} µs (budget at 500 Hz: 2000 µs)")


def graph(seconds: float = 6.0) -> None:
    """The controller node's own loop statistics, in active mode, from /diagnostics."""
    import os
    import tempfile
    from pathlib import Path

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParametersAtomically

    from rehab_robot.testing import NodeProcess

    domain = int(os.environ.get("ROS_DOMAIN_ID", "160"))
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    print(f"-- graph: driver + supervisor + controller (active mode, virtual patient holding), domain {domain}")
    with tempfile.TemporaryDirectory() as tmp:
        nodes = [NodeProcess("driver_node", "hardware_driver",
                             {"hardware_options": '"{virtual_patient: {effort: 1.0}}"'}, domain, Path(tmp)),
                 NodeProcess("supervisor_node", "safety_supervisor", {}, domain, Path(tmp)),
                 NodeProcess("controller_node", "motion_controller", {}, domain, Path(tmp))]
        context = rclpy.context.Context()
        rclpy.init(context=context, domain_id=domain)
        node = rclpy.create_node("bench_interaction", context=context)
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(node)
        last = {}

        def on_diagnostics(msg):
            for status in msg.status:
                if status.name.endswith("motion_controller"):
                    last.update({kv.key: kv.value for kv in status.values})

        node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 50)
        try:
            client = node.create_client(SetParametersAtomically, "/motion_controller/set_parameters_atomically")
            if not client.wait_for_service(timeout_sec=60.0):
                print("controller did not come up")
                return
            value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value="active")
            future = client.call_async(SetParametersAtomically.Request(parameters=[Parameter(name="mode", value=value)]))
            executor.spin_until_future_complete(future, timeout_sec=10.0)
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                executor.spin_once(timeout_sec=0.1)
            keys = ("mode", "rate_hz", "period_p99_ms", "period_p99.9_ms", "period_max_ms", "overruns", "cycles",
                    "commands_longest_write_ms", "signal_problem")
            print("  " + ", ".join(f"{k} {last.get(k, '?')}" for k in keys))
        finally:
            node.destroy_node()
            rclpy.shutdown(context=context)
            for n in reversed(nodes):
                n.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 AAN repetitions instead of 20")
    parser.add_argument("--graph", action="store_true", help="also measure the running controller node")
    parser.add_argument("--only", choices=("transparency", "stability", "spasm", "assist_as_needed", "loop_cost"),
                        help="run one scenario only")
    args = parser.parse_args()
    started = time.perf_counter()
    scenarios = {"transparency": transparency, "stability": stability, "spasm": spasm,
                 "assist_as_needed": lambda: assist_as_needed(5 if args.quick else 20), "loop_cost": loop_cost}
    for name, scenario in scenarios.items():
        if args.only in (None, name):
            scenario()
    if args.graph:
        graph()
    print(f"(benchmark took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
