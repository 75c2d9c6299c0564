"""Benchmark of the simulated arm: physics step rate, real-time factor, stop time.

Run: ``python bench/bench_sim.py [--virtual-patient]``. It prints numbers and never
fails on timing: the machine it runs on may be shared. With ``--virtual-patient`` it
also times the physics with an active virtual patient (reaching, spasticity, tremor,
fatigue) next to the passive limb.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rehab_robot.hardware.interface import JointCommand
from rehab_robot.hardware.sim import SimulatedArm
from rehab_robot.model import ArmModel

SIM_SECONDS = 5.0
HOME = np.array([0.0, 0.1, 0.0, 0.3])
#: A patient exercising every part of the model that runs in the physics step.
ACTIVE_PATIENT = {
    "effort": 0.8,
    "impairment": 0.3,
    "reaction_delay": 0.2,
    "variability": 0.1,
    "spasticity": {"grades": {"elbow_flexion": "1+"}},
    "fatigue": {"per_reach": 0.02, "work_constant": 50.0},
    "tremor": {"frequency": 5.0, "amplitude": 0.3},
}


class FakeClock:
    """A clock [s] moved by hand, so the simulation runs as fast as it can."""

    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def physics_only(tracking: bool, patient: dict | None = None) -> float:
    """Wall-clock seconds to simulate SIM_SECONDS with advance_to() alone."""
    clock = FakeClock()
    arm = SimulatedArm(clock=clock, virtual_patient=patient)
    arm.set_patient_target(HOME + 0.3, 0.0)
    if tracking:
        arm.enable()
        arm.write(JointCommand(HOME + 0.2, np.zeros(4), np.zeros(4)))
    start = time.perf_counter()
    arm.advance_to(SIM_SECONDS)
    return time.perf_counter() - start


def driver_loop(robot: ArmModel, loop_hz: float = 500.0, patient: dict | None = None) -> float:
    """Wall-clock seconds for SIM_SECONDS of a driver loop: read() + write() at loop_hz
    (and, with a patient, a new target every cycle, as a target topic would give)."""
    clock = FakeClock()
    arm = SimulatedArm(clock=clock, virtual_patient=patient)
    arm.enable()
    period = 1.0 / loop_hz
    gravity = robot.gravity_torques(HOME)
    start = time.perf_counter()
    for k in range(1, int(SIM_SECONDS * loop_hz) + 1):
        clock.t = k * period
        sample = arm.read()
        target = HOME + np.array([0.0, 0.0, 0.0, 0.25 * (1.0 - np.cos(2.0 * clock.t))])
        if patient is not None:
            arm.set_patient_target(target, clock.t)
        arm.write(JointCommand(target, np.zeros(4), gravity))
    assert np.all(np.isfinite(sample.position))
    return time.perf_counter() - start


def stop_time(robot: ArmModel) -> float:
    """Simulated seconds from disable() at ~1 rad/s on the elbow to at rest."""
    clock = FakeClock()
    arm = SimulatedArm(clock=clock)
    arm.enable()
    for k in range(1, 301):
        clock.t = k * 0.001
        travel = clock.t - 0.05 if clock.t > 0.1 else clock.t**2 / 0.2
        target = HOME + np.array([0.0, 0.0, 0.0, travel])
        velocity = np.array([0.0, 0.0, 0.0, min(clock.t / 0.1, 1.0)])
        arm.write(JointCommand(target, velocity, robot.gravity_torques(target)))
        sample = arm.read()
    print(f"  elbow speed at disable(): {sample.velocity[3]:.3f} rad/s")
    arm.disable()
    t_disable = clock.t
    while not sample.at_rest:
        clock.t += 0.001
        sample = arm.read()
    return clock.t - t_disable


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--virtual-patient", action="store_true",
                        help="also time the physics with an active virtual patient")
    args = parser.parse_args(argv)
    robot = ArmModel.from_urdf()
    steps = SIM_SECONDS * 1000.0
    patients = [("", None)]
    if args.virtual_patient:
        patients.append((", virtual patient active", ACTIVE_PATIENT))
    for suffix, patient in patients:
        for label, tracking in (("tracking (drive PD)", True), ("holding (drive brake)", False)):
            wall = physics_only(tracking, patient)
            print(f"physics, {label}{suffix}: {steps / wall:,.0f} steps/s, "
                  f"real-time factor {SIM_SECONDS / wall:.1f} ({SIM_SECONDS:g} s simulated)")
        wall = driver_loop(robot, patient=patient)
        print(f"driver loop at 500 Hz (read + write + F/T){suffix}: real-time factor "
              f"{SIM_SECONDS / wall:.1f}, {wall / (SIM_SECONDS * 500) * 1e6:.0f} us per cycle "
              "incl. 2 physics steps")
    print("quick stop:")
    print(f"  disable() to at rest: {stop_time(robot) * 1000:.0f} ms (simulated)")


if __name__ == "__main__":
    main()
