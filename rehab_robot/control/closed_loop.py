"""An in-process closed loop for tests and benchmarks: SimulatedArm + InteractionController.

Deterministic and fast: the simulator follows a fake clock that the loop advances by one
controller period per cycle, so no real time passes. A command computed from the sample
at cycle k reaches the drives ``latency_cycles`` cycles later, like a command that
crosses DDS to the driver and waits for its next cycle.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from rehab_robot.control.interaction import InteractionController
from rehab_robot.control.modes import InteractionState, Reference
from rehab_robot.control.settings import InteractionSettings
from rehab_robot.control.trajectory import QuinticSegment
from rehab_robot.hardware.sim import SimulatedArm


@dataclass
class Record:
    """What one closed-loop run recorded, one row per controller cycle.

    Attributes:
        t: Cycle times [s].
        q: Measured joint positions [rad].
        v: Measured joint velocities [rad/s].
        wrench: Cuff wrench in ``ft_sensor_link`` [N, N·m].
        interaction_force: The patient's push as an equivalent cuff force, ``base_link`` [N].
        cuff_force: The sensor's force less the forearm's modelled weight, ``base_link`` [N].
        input_torque: What drove the admittance (push, weight support, inertia compensation) [N·m].
        patient_torque: Joint torques of the virtual patient's muscles [N·m].
        command_position: Commanded positions [rad].
        mode_torque: The active mode's own torque (assistance or resistance) [N·m].
        lag: Reference minus measured position [rad] (zero without a reference).
        events: Controller events, in order.
    """

    t: list = field(default_factory=list)
    q: list = field(default_factory=list)
    v: list = field(default_factory=list)
    wrench: list = field(default_factory=list)
    interaction_force: list = field(default_factory=list)
    cuff_force: list = field(default_factory=list)
    input_torque: list = field(default_factory=list)
    patient_torque: list = field(default_factory=list)
    command_position: list = field(default_factory=list)
    mode_torque: list = field(default_factory=list)
    lag: list = field(default_factory=list)
    events: list = field(default_factory=list)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every series as a numpy array."""
        return {k: np.array(v) for k, v in self.__dict__.items() if k != "events"}


class ClosedLoop:
    """The simulated arm driven by the interaction controller in simulated time.

    Args:
        settings: Changes to the default interaction settings (ROS names -> values).
        rate: Controller rate [Hz].
        latency_cycles: Cycles between a sample and the drives applying its command.
        **sim_options: Options of :class:`~rehab_robot.hardware.sim.SimulatedArm`
            (e.g. ``virtual_patient``, ``initial_position``).
    """

    def __init__(self, settings: Optional[dict] = None, rate: float = 500.0, latency_cycles: int = 1,
                 **sim_options) -> None:
        self.now = 0.0
        self.arm = SimulatedArm(clock=lambda: self.now, **sim_options)
        model = self.arm.robot
        self.dt = 1.0 / rate
        self.settings = InteractionSettings.defaults(model.lower, model.upper).updated(settings or {})
        self.controller = InteractionController(model, self.settings, self.dt)
        self.latency_cycles = latency_cycles
        self._pending: deque = deque()
        self.reference_segment: Optional[QuinticSegment] = None
        self.reference_t0 = 0.0
        self.record = Record()
        self.arm.enable()

    def set_reference(self, start, end, duration: float) -> None:
        """Start a minimum-jerk reference from ``start`` to ``end`` [rad] over ``duration`` [s] now."""
        self.reference_segment = QuinticSegment.minimum_jerk(start, end, duration)
        self.reference_t0 = self.now

    def reference(self) -> Optional[Reference]:
        """The reference sampled now, or None."""
        seg = self.reference_segment
        if seg is None:
            return None
        elapsed = self.now - self.reference_t0
        q, v, a = seg.sample(elapsed)
        return Reference(q, v, a, seg.sample(0.0)[0], seg.end, elapsed, seg.duration)

    def configure(self, changes: dict, mode_set: bool = False) -> None:
        """Change settings (ROS names -> values) as the node does."""
        self.settings = self.settings.updated(changes)
        self.controller.configure(self.settings, mode_set or "mode" in changes)

    def run(self, duration: float, each_cycle: Optional[Callable[["ClosedLoop"], None]] = None,
            wrench_filter: Optional[Callable[[float, np.ndarray], Optional[np.ndarray]]] = None) -> Record:
        """Run ``duration`` [s] of simulated time; return the (cumulative) record.

        Args:
            duration: Simulated time [s].
            each_cycle: Called before every cycle (e.g. to move the patient's target).
            wrench_filter: Replaces the wrench the controller sees (e.g. NaN injection).
        """
        steps = int(round(duration / self.dt))
        rec = self.record
        for _ in range(steps):
            if each_cycle is not None:
                each_cycle(self)
            self.now += self.dt
            sample = self.arm.read()
            wrench = sample.wrench if wrench_filter is None else wrench_filter(self.now, sample.wrench)
            state = InteractionState(sample.stamp, sample.position, sample.velocity, wrench)
            reference = self.reference()
            command = self.controller.step(state, reference)
            self._pending.append(command)
            if len(self._pending) > self.latency_cycles:
                self.arm.write(self._pending.popleft())
            rec.t.append(self.now)
            rec.q.append(sample.position)
            rec.v.append(sample.velocity)
            rec.wrench.append(sample.wrench)
            rec.interaction_force.append(self.controller.interaction_force.copy())
            rec.cuff_force.append(self.controller.cuff_force.copy())
            rec.input_torque.append(self.controller.input_torque.copy())
            rec.patient_torque.append(self.arm.patient_torque)
            rec.command_position.append(command.position)
            rec.mode_torque.append(np.array(getattr(self.controller.mode, "torque", np.zeros(4)), dtype=float))
            rec.lag.append(reference.position - sample.position if reference is not None else np.zeros(4))
            rec.events.extend(self.controller.events)
            self.controller.events.clear()
        return rec


# -- scenarios shared by test/test_control_closed_loop.py and bench/bench_interaction.py --------

#: The patient's limb of the simulator (sim.DEFAULT_HUMAN_LOAD), as a patient profile gives it.
SIM_LIMB_MASSES = [2.0, 1.5]


def apparent_cuff_dynamics(loop: ClosedLoop, start: int, min_speed: float = 0.1) -> tuple[float, float]:
    """Fit the cuff's apparent mass [kg] and damping [N·s/m] over the record from row ``start``.

    The force is the push the admittance took in (sensor wrench plus weight support and
    inertia compensation) along the cuff's motion, from its power: ``tau · qdot / |v_cuff|``;
    the motion is the *measured* one. Least squares of ``F = m a + d v`` over the rows
    where the cuff moves faster than ``min_speed`` [m/s].
    """
    from rehab_robot.control.kinematics import CuffKinematics

    r = loop.record.arrays()
    force, speed, accel = [], [], []
    for i in range(max(start, 1), len(r["t"])):
        v = r["v"][i]
        J = CuffKinematics.at(loop.arm.robot, r["q"][i]).cuff_jacobian[:3]
        vc = J @ v
        s = float(np.linalg.norm(vc))
        if s < min_speed:
            continue
        a = (r["v"][i] - r["v"][i - 1]) / loop.dt
        force.append(float(r["input_torque"][i] @ v) / s)
        speed.append(s)
        accel.append(float((J @ a) @ vc) / s)
    (mass, damping), *_ = np.linalg.lstsq(np.c_[accel, speed], np.array(force), rcond=None)
    return float(mass), float(damping)


def transparency(mass: float = 2.0, damping: float = 10.0, latency_cycles: int = 1) -> dict:
    """Active mode: the virtual patient flexes the elbow 1 rad in 1 s; return what it took.

    Returns:
        ``peak_cuff_force`` [N] (sensor force less the forearm's weight, as a tared sensor
        reads), ``peak_equivalent_force`` [N] (sensor force and moment as one cuff force),
        ``apparent_mass`` [kg], ``apparent_damping`` [N·s/m], ``elbow_travel`` [rad].
    """
    patient = {"effort": 1.0, "peak_speed": 1.875, "reaction_delay": 0.0}  # 1 rad in 1 s
    loop = ClosedLoop({"mode": "active", "weight_support": 1.0, "limb_masses": SIM_LIMB_MASSES,
                       "admittance.mass": mass, "admittance.damping": damping},
                      latency_cycles=latency_cycles, virtual_patient=patient)
    loop.run(0.5)
    start = len(loop.record.t)
    q0 = loop.arm.read().position
    target = q0.copy()
    target[3] += 1.0
    loop.arm.set_patient_target(target, loop.now)
    loop.run(1.5)
    r = loop.record.arrays()
    m, d = apparent_cuff_dynamics(loop, start)
    return {"peak_cuff_force": float(np.linalg.norm(r["cuff_force"][start:], axis=1).max()),
            "peak_equivalent_force": float(np.linalg.norm(r["interaction_force"][start:], axis=1).max()),
            "apparent_mass": m, "apparent_damping": d, "elbow_travel": float(r["q"][-1][3] - q0[3]),
            "events": len(loop.record.events)}


def stability(mass: float = 1.0, damping: float = 5.0, latency_cycles: int = 1) -> dict:
    """Active mode, the virtual patient holding the cuff (effort 1): it moves the elbow by
    0.3 rad at 0.5 s, then holds. Return the residual motion from 1 s after the move.

    Returns:
        ``joint_p2p`` [rad] (largest peak-to-peak of any joint) and ``cuff_p2p`` [m] over
        2.0 s to 3.0 s, and ``peak_force`` [N] (equivalent cuff force) in that window.
    """
    from rehab_robot.control.kinematics import CuffKinematics

    loop = ClosedLoop({"mode": "active", "weight_support": 1.0, "limb_masses": SIM_LIMB_MASSES,
                       "admittance.mass": mass, "admittance.damping": damping},
                      latency_cycles=latency_cycles, virtual_patient={"effort": 1.0})
    q0 = loop.arm.read().position
    loop.arm.set_patient_target(q0, 0.0)
    loop.run(0.5)
    target = q0.copy()
    target[3] += 0.3
    loop.arm.set_patient_target(target, loop.now)
    loop.run(2.5)
    r = loop.record.arrays()
    window = r["t"] >= 2.0
    cuff = np.array([CuffKinematics.at(loop.arm.robot, q).cuff_position for q in r["q"][window]])
    return {"joint_p2p": float(np.ptp(r["q"][window], axis=0).max()),
            "cuff_p2p": float(np.ptp(cuff, axis=0).max()),
            "peak_force": float(np.linalg.norm(r["interaction_force"][window], axis=1).max()),
            "elbow_travel": float(r["q"][-1][3] - q0[3]), "events": len(loop.record.events)}


def spasm_reaction(reaction: str = "compliant_hold", latency_cycles: int = 1) -> dict:
    """Passive range of motion (position mode, elbow 0.3 -> 1.3 rad in 2 s) with a scripted
    spasm of the elbow (-15 N·m, against the motion) at 1.0 s; return how the controller reacted.

    Returns:
        ``onset_to_reaction`` [s]: from the first sample above threshold to the drives
        receiving the reaction's first command (detection plus ``latency_cycles``);
        ``start_to_reaction`` [s]: from the scripted spasm's start; ``event`` (the
        controller event) and ``elbow_after`` [rad] (where the elbow is 3.4 s after the spasm began).
    """
    spasm_start = 1.0
    patient = {"events": [{"type": "spasm", "time": spasm_start, "duration": 0.5,
                           "torque": {"elbow_flexion": -15.0}}]}
    loop = ClosedLoop({"spasm.reaction": reaction, "limb_masses": SIM_LIMB_MASSES},
                      latency_cycles=latency_cycles, virtual_patient=patient)
    q0 = loop.arm.read().position
    end = q0.copy()
    end[3] = 1.3
    loop.run(0.1)
    loop.set_reference(q0, end, 2.0)
    loop.run(4.4)
    events = [e for e in loop.record.events if e.name == "spasm"]
    if not events:
        return {"event": None}
    event = events[0]
    reaction_time = event.detected + latency_cycles * loop.dt
    return {"event": event, "onset_to_reaction": reaction_time - float(event.values["onset"]),
            "start_to_reaction": reaction_time - spasm_start,
            "elbow_after": float(loop.record.q[-1][3]), "reaction": loop.controller.reaction}


def assist_as_needed(impairment: float, repetitions: int = 20, gain: float = 1.0,
                     forgetting_factor: float = 0.8, learning_rate: float = 0.5,
                     error_tolerance: float = 0.0, strength: float = 10.0, weight_support: float = 0.0,
                     onset_velocity: float = 0.05, onset_timeout: float = 1.0,
                     settings: Optional[dict] = None, patient: Optional[dict] = None) -> list[dict]:
    """active_assist over ``repetitions`` elbow reaches (0.3 <-> 1.3 rad), the gain adapted after
    each (:func:`~rehab_robot.control.adaptation.adapt_assistance_gain`, with ``error_tolerance``).

    Each movement runs as the session runs it (rehab_robot/session/exercises.py): the target
    shows to the virtual patient; the minimum-jerk reference (1.5 s for the full 1 rad, from
    where the elbow is) starts at the patient's *onset*, the elbow moving toward the target
    faster than ``onset_velocity`` [rad/s], so the patient's reaction time is not counted as
    lag. A patient who has not started after ``onset_timeout`` [s] gets the reference then
    (triggered assistance, Kahn et al. 2006). The movement then runs for the reference plus
    a 0.5 s hold. The tracking error is, as in the session, the RMS of |reference - elbow|
    from the onset.

    Args:
        impairment: The virtual patient's impairment, 0 (healthy) .. 1 (no voluntary motion).
        repetitions: Repetitions (out and back each).
        gain: Assistance gain of the first repetition.
        forgetting_factor, learning_rate, error_tolerance: The adaptation law's f, l [1/rad], e_tol [rad].
        strength: The patient's healthy elbow strength [N·m].
        weight_support: Share of the limb's weight the controller carries, 0 .. 1.
        onset_velocity: Elbow speed toward the target [rad/s] that marks the onset.
        onset_timeout: Time [s] after the target shows at which the reference starts anyway.
        settings: Other controller settings (ROS names -> values), e.g. ``assist.stiffness``.
        patient: Other virtual patient settings, e.g. ``effort`` and ``learning``
            (docs/virtual-patient.md).

    Returns:
        Per repetition: ``gain`` used, ``error`` [rad], ``robot_work`` and ``patient_work``
        (positive mechanical work of the assistance and of the patient's muscles at the
        elbow [J]), ``robot_share``, ``reached`` and ``lowest`` (largest and smallest elbow
        angle [rad]), ``onset`` (mean time from target to onset [s]), ``effort`` (the
        patient's effort at the end of the repetition, 0..1).
    """
    from rehab_robot.control.adaptation import adapt_assistance_gain

    # A weak elbow (10 N·m healthy by default) so that impairment limits the reach: with the
    # default 45 N·m, half of it still moves the forearm as easily as all of it.
    patient = {"effort": 1.0, "impairment": impairment, "peak_speed": 1.25, "strength": {"elbow_flexion": strength},
               **(patient or {})}
    # As in the session, the reference starts at the onset: the mode's own onset timeout is off.
    loop = ClosedLoop({"mode": "active_assist", "assist.gain": gain, "assist.onset_timeout": 0.0,
                       "limb_masses": SIM_LIMB_MASSES, "weight_support": weight_support, **(settings or {})},
                      virtual_patient=patient)
    low, high, move, hold = 0.3, 1.3, 1.5, 0.5
    q = loop.arm.read().position
    results = []
    for _ in range(repetitions):
        begin = len(loop.record.t)
        lags: list[float] = []
        onsets: list[float] = []
        for b in (high, low):
            end = q.copy()
            end[3] = b
            loop.arm.set_patient_target(end, loop.now)
            shown = loop.now
            while loop.now - shown < onset_timeout:
                loop.run(loop.dt)
                if np.sign(b - loop.record.q[-1][3]) * loop.record.v[-1][3] > onset_velocity:
                    break
            onsets.append(loop.now - shown)
            start = loop.record.q[-1].copy()
            duration = max(move * abs(b - start[3]) / (high - low), 0.5)
            loop.set_reference(start, end, duration)
            mark = len(loop.record.t)
            loop.run(duration + hold)
            lags.extend(np.array(loop.record.lag[mark:])[:, 3].tolist())
        rec = loop.record
        v = np.array(rec.v[begin:])[:, 3]
        robot = float(np.maximum(np.array(rec.mode_torque[begin:])[:, 3] * v, 0.0).sum() * loop.dt)
        patient_work = float(np.maximum(np.array(rec.patient_torque[begin:])[:, 3] * v, 0.0).sum() * loop.dt)
        error = float(np.sqrt(np.mean(np.square(lags))))
        elbow = np.array(rec.q[begin:])[:, 3]
        results.append({"gain": loop.settings.assist_gain, "error": error, "robot_work": robot,
                        "patient_work": patient_work,
                        "robot_share": robot / (robot + patient_work) if robot + patient_work > 0 else 0.0,
                        "reached": float(elbow.max()), "lowest": float(elbow.min()),
                        "onset": float(np.mean(onsets)), "effort": loop.arm.virtual_patient.effort})
        loop.configure({"assist.gain": adapt_assistance_gain(loop.settings.assist_gain, error,
                                                             forgetting_factor, learning_rate, error_tolerance)})
    return results
