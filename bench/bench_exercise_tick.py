"""Benchmark of the session manager's per-tick work in an interactive exercise (no ROS).

Run: ``python bench/bench_exercise_tick.py [--ticks N]``. It times, with the shipped arm
model, what the session manager adds to each 50 Hz tick of an active_assist exercise:

* the robot and patient joint torques (gravity, ft_sensor_link Jacobian, J^T W);
* the cuff position (forward kinematics) and InteractiveRunner.update (sample log, phase);
* the metrics of one repetition when it closes (SPARC, LDLJ, work shares ...).

It prints numbers and never fails on timing: the machine it runs on may be shared.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rehab_robot.model import ArmModel
from rehab_robot.session.exercises import InteractiveRunner
from rehab_robot.session.profiles import parse_patient, parse_protocol


def main() -> None:
    """Print the per-tick and per-repetition cost [µs, ms]."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=3000)
    args = parser.parse_args()
    model = ArmModel.from_urdf(None)
    limits = model.limits_by_joint()
    speeds = dict(zip(model.joint_names, model.velocity_limit))
    patient = parse_patient({"patient": {"id": "B", "side": "right", "rom_limits": {"elbow_flexion": [0.2, 2.0]}}},
                            "bench", limits)
    protocol = parse_protocol({"protocol": {
        "name": "b", "type": "active_assist", "joint": "elbow_flexion", "start_angle": 0.6, "end_angle": 1.2,
        "repetitions": 200, "movement_duration": 1.5, "movement_timeout": 6.0}}, "bench", patient, limits, speeds)
    cuff = lambda q: model.forward_kinematics(q, "cuff_link")[:3, 3]  # noqa: E731 - as the node does
    runner = InteractiveRunner(protocol, patient, model.joint_names, 1.0, make_parameters=lambda p, g: {"mode": "x"},
                               cuff_position=cuff)
    q = np.array([0.0, 0.1, 0.0, 0.4])
    runner.start(0.0, q, True)
    dt, now = 0.02, 0.0
    torque_time, update_time, closes = 0.0, 0.0, []
    wrench = np.array([1.0, 2.0, 3.0, 0.1, 0.2, 0.3])
    load_in_base = np.array([0.0, 0.0, -15.0])  # resting forearm load, carried with the sensor (CuffForceTare)
    for k in range(args.ticks):
        now += dt
        segment = runner.take_motion()
        if runner.take_parameters() is not None:
            runner.parameters_result(now, q, True)
        target = runner.target_position()
        if runner.step_index == 0 and segment is not None:
            q[3] = segment.end[0]
        elif target is not None:
            q += np.clip(target - q, -0.8 * dt, 0.8 * dt)
        v = np.full(4, 0.1)
        started = time.perf_counter()
        robot = np.full(4, 1.0) - model.gravity_torques(q)
        rotation = model.forward_kinematics(q, "ft_sensor_link")[:3, :3]
        patient_torque = model.frame_jacobian(q, "ft_sensor_link", "local").T @ np.concatenate(
            [wrench[:3] - rotation.T @ load_in_base, wrench[3:]])
        torque_time += time.perf_counter() - started
        done = len(runner.repetitions)
        started = time.perf_counter()
        runner.update(now, q.copy(), 3.0, True, velocity=v, robot_torque=robot, patient_torque=patient_torque)
        took = time.perf_counter() - started
        if len(runner.repetitions) > done:
            closes.append(took)
        else:
            update_time += took
    ticks = args.ticks - len(closes)
    print(f"{args.ticks} ticks of a simulated active_assist exercise, {len(runner.repetitions)} repetitions closed")
    print(f"joint torques (gravity, Jacobian, J^T W): {torque_time / args.ticks * 1e6:8.1f} µs per tick")
    print(f"cuff FK + InteractiveRunner.update:       {update_time / max(ticks, 1) * 1e6:8.1f} µs per tick")
    if closes:
        print(f"closing a repetition (its metrics):       {np.mean(closes) * 1e3:8.2f} ms mean, "
              f"{np.max(closes) * 1e3:.2f} ms max")
    print("budget: one tick every 20 ms (50 Hz)")


if __name__ == "__main__":
    main()
