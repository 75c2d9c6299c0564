"""A virtual patient for the simulated arm: the torques a person's muscles add.

The patient looks at the exercise's current target (joint positions [rad], as on a
screen), reacts after a delay and reaches for it. Per joint it produces

    tau = tau_voluntary + tau_reflex + tau_tremor + tau_spasm        [N·m]

* **voluntary**: a minimum-jerk reach toward the target, planned with the feedback
  form of the minimum-jerk law (Hoff & Arbib 1993: a re-plannable minimum-jerk
  trajectory from the current planned state to the goal in the remaining time),
  tracked by a muscle-like impedance and saturated smoothly at the strength left:

      tau_voluntary = effort * L * tanh((K (x_d - q) + B (v_d - v) + K/T_c ∫(x_d - q) dt) / L)
      L = strength * (1 - impairment) * fatigue

  the integral term (``correction_time`` T_c, off by default) is the patient closing the
  gap they still see at the target, over seconds, the way a person pushes on until the
  cursor is on the target; it restarts with each reach and never asks beyond the strength;

* **reflex**: spasticity, a velocity-dependent stretch reflex above a threshold
  speed, with a gain graded like the Modified Ashworth Scale (MAS);
* **tremor**: a sinusoid of fixed frequency, phase drawn from the seed;
* **spasm**: a scripted sudden contraction (tests and drills).

With ``learning`` set, the effort itself adapts from reach to reach, the way the motor
system adapts to its own errors (Emken et al. 2007): after each reach, from the RMS gap
e between where the patient meant the limb to be (the planned reach) and where it was,

    effort[k+1] = clip(retention * effort[k] + rate * e[k], 0, 1)

so a patient who misses tries harder next time, and one with ``retention < 1`` eases off
while the limb goes where they mean it to, e.g. because a robot carries it ("slacking",
Reinkensmeyer et al. 2009).

The default configuration is a passive patient: effort 0, no spasticity, no tremor,
no events. Its torque is exactly zero and the simulator does not even call it.

Everything is a pure function of the configuration (seed included), the targets
given and the states the simulator passes in: deterministic. No rclpy.
"""

from __future__ import annotations

import collections
import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import yaml

from rehab_robot import JOINT_NAMES
from rehab_robot.errors import ConfigError

__all__ = [
    "DEFAULT_STRENGTH",
    "MAS_REFLEX_GAIN",
    "EventConfig",
    "FatigueConfig",
    "LearningConfig",
    "SpasticityConfig",
    "TremorConfig",
    "VirtualPatient",
    "VirtualPatientConfig",
    "check_target",
    "load_virtual_patient",
]

#: Maximum voluntary joint torque of a healthy adult [N·m], joint order of JOINT_NAMES.
#: Round values of the order measured by isometric dynamometry (shoulder flexion,
#: abduction, rotation, elbow flexion); set ``strength`` for a specific person.
DEFAULT_STRENGTH = (50.0, 45.0, 25.0, 45.0)

#: Stretch-reflex gain [N·m·s/rad] per Modified Ashworth grade (Bohannon & Smith
#: 1987 grades; the gains are this model's calibration, not a published mapping:
#: doubling per grade from 1+, so MAS 2 at 3 rad/s adds ~5 N·m of resistance).
MAS_REFLEX_GAIN = {"0": 0.0, "1": 0.5, "1+": 1.0, "2": 2.0, "3": 4.0, "4": 8.0}

#: Ratio of the peak to the mean speed of a minimum-jerk move (30/16).
_MIN_JERK_PEAK_RATIO = 1.875
#: Shortest time-to-go [s] of the feedback minimum-jerk law: its gains grow as
#: 1/D^3, so a floor keeps the planner a well-damped tracking filter at the end of a
#: reach (and stable under 1 kHz explicit integration).
_TIME_TO_GO_FLOOR = 0.05
#: A goal that moves more than this [rad] (largest joint) counts as a new reach;
#: smaller changes (a target streamed along a path) just move the current goal.
RETARGET_THRESHOLD = 0.05
#: Rise and fall time [s] of a spasm's torque (raised cosine): sudden, yet smooth
#: enough for the explicit integration.
_SPASM_RISE = 0.02

_EVENT_TYPES = ("spasm", "stop_trying", "push_out")
#: What an event's ``time`` counts from: the simulation's start, or the first target the patient is shown.
_EVENT_CLOCKS = ("start", "first_target")
_DIRECTIONS = {"both": 0, "positive": 1, "negative": -1}


# -- configuration --------------------------------------------------------------


@dataclass(frozen=True)
class SpasticityConfig:
    """Velocity-dependent stretch reflex.

    Attributes:
        grades: Modified Ashworth grade per joint: "0", "1", "1+", "2", "3" or "4".
        threshold: Joint speed [rad/s] above which the reflex fires.
        stretched_by: Per joint, the motion that stretches the spastic muscles:
            "positive" (increasing angle), "negative" or "both".
    """

    grades: tuple[str, ...] = ("0",) * len(JOINT_NAMES)
    threshold: float = 0.2
    stretched_by: tuple[str, ...] = ("both",) * len(JOINT_NAMES)

    @property
    def gains(self) -> np.ndarray:
        """Reflex gain per joint [N·m·s/rad]."""
        return np.array([MAS_REFLEX_GAIN[g] for g in self.grades])


@dataclass(frozen=True)
class FatigueConfig:
    """Voluntary strength that falls with use.

    fatigue factor = floor + (1 - floor) * (1 - per_reach)**reaches * exp(-work / work_constant)

    Attributes:
        per_reach: Share of the fatigable strength lost at each new reach, 0..<1.
        work_constant: Positive voluntary work [J] that leaves 1/e of the fatigable
            strength; 0 turns work-based fatigue off.
        floor: Share of the strength that never fatigues, 0..1.
    """

    per_reach: float = 0.0
    work_constant: float = 0.0
    floor: float = 0.3


@dataclass(frozen=True)
class LearningConfig:
    """Effort that adapts from reach to reach, from the patient's own error (module docstring).

    effort[k+1] = clip(retention * effort[k] + rate * e[k], 0, 1), starting at ``effort``.

    References: J. L. Emken, R. Benitez, A. Sideris, J. E. Bobrow, D. J. Reinkensmeyer,
    "Motor adaptation as a greedy optimization of error and effort", J. Neurophysiol. 97
    (2007) 3997-4006; D. J. Reinkensmeyer, E. Akoner, D. P. Ferris, K. E. Gordon, "Slacking
    by the human motor system: computational models and implications for robotic orthoses",
    Proc. IEEE EMBC 2009, 2129-2132.

    Attributes:
        rate: Effort gained per rad of RMS error in a reach [1/rad]; 0 turns learning off.
        retention: Share of the effort kept from one reach to the next, 0 (excluded) .. 1;
            below 1 the patient eases off when the limb goes where they mean it to.
    """

    rate: float = 0.0
    retention: float = 1.0


@dataclass(frozen=True)
class TremorConfig:
    """Involuntary oscillating torque.

    Attributes:
        frequency: Tremor frequency [Hz].
        amplitude: Torque amplitude per joint [N·m]; 0 is no tremor.
    """

    frequency: float = 5.0
    amplitude: tuple[float, ...] = (0.0,) * len(JOINT_NAMES)


@dataclass(frozen=True)
class EventConfig:
    """A scripted event, at ``time`` [s] after the simulation started (or after the first
    target, see ``after``), for ``duration`` [s].

    Attributes:
        type: "spasm" (sudden contraction of ``torque``), "stop_trying" (effort 0)
            or "push_out" (full voluntary torque on ``joint`` toward ``direction``,
            whatever the target: out of the range of motion).
        time: Start [s] after the simulation started.
        duration: Length [s]; ``inf`` lasts to the end (stop_trying, push_out).
        torque: Spasm torque per joint [N·m].
        joint: Index of the joint that pushes (push_out).
        direction: +1 toward the upper joint limit, -1 toward the lower (push_out).
        effort: Share of the voluntary strength used to push, 0..1 (push_out).
        after: What ``time`` counts from: ``"start"`` (the simulation's start) or
            ``"first_target"`` (the stamp of the first target the patient is shown: a
            whole-graph session, whose start-up time varies, then meets the event at the
            same point of its exercise; no target, no event).
    """

    type: str
    time: float
    duration: float
    torque: tuple[float, ...] = (0.0,) * len(JOINT_NAMES)
    joint: int = 0
    direction: int = 1
    effort: float = 1.0
    after: str = "start"

    def active(self, t: float) -> bool:
        """True while the event lasts at ``t`` [s] after the start."""
        return self.time <= t < self.time + self.duration


@dataclass(frozen=True)
class VirtualPatientConfig:
    """Settings of the virtual patient (docs/virtual-patient.md); defaults: passive.

    Attributes:
        effort: How hard the patient tries, 0 (passive) .. 1.
        impairment: Per joint, 0 (healthy) .. 1 (no voluntary motion); scales strength.
        strength: Maximum voluntary torque per joint when healthy [N·m].
        reaction_delay: Time [s] between a target change and the patient seeing it.
        peak_speed: Peak joint speed [rad/s] the patient plans a reach with.
        min_reach_time: Shortest reach [s], however small the distance.
        stiffness: Impedance of the reach per joint [N·m/rad] (at effort 1).
        damping: Damping of the reach per joint [N·m·s/rad] (at effort 1).
        variability: Coefficient of variation of each reach's duration and
            endpoint (relative to the distance), 0 = every reach identical.
        correction_time: Time constant T_c [s] with which the patient closes a gap that
            remains at the target (integral gain K / T_c); 0 is no correction.
        seed: Seed of the random draws (tremor phase, variability).
        spasticity, fatigue, learning, tremor: See their classes.
        events: Scripted events.
    """

    effort: float = 0.0
    impairment: tuple[float, ...] = (0.0,) * len(JOINT_NAMES)
    strength: tuple[float, ...] = DEFAULT_STRENGTH
    reaction_delay: float = 0.2
    peak_speed: float = 1.0
    min_reach_time: float = 0.4
    stiffness: tuple[float, ...] = (40.0,) * len(JOINT_NAMES)
    damping: tuple[float, ...] = (4.0,) * len(JOINT_NAMES)
    variability: float = 0.0
    correction_time: float = 0.0
    seed: int = 0
    spasticity: SpasticityConfig = field(default_factory=SpasticityConfig)
    fatigue: FatigueConfig = field(default_factory=FatigueConfig)
    learning: LearningConfig = field(default_factory=LearningConfig)
    tremor: TremorConfig = field(default_factory=TremorConfig)
    events: tuple[EventConfig, ...] = ()

    @property
    def passive(self) -> bool:
        """True when the patient adds exactly zero torque at all times."""
        return (
            self.effort == 0.0
            and not any(self.spasticity.gains)
            and not any(self.tremor.amplitude)
            and not any(e.type in ("spasm", "push_out") for e in self.events)
        )

    @property
    def max_damping(self) -> np.ndarray:
        """Largest velocity gain per joint [N·m·s/rad] the patient can add (for stability checks)."""
        # A learning patient's effort can grow to 1.
        effort = 1.0 if self.effort > 0.0 and self.learning.rate > 0.0 else self.effort
        return np.asarray(self.damping) * effort + self.spasticity.gains

    @classmethod
    def from_mapping(cls, data: Mapping | None, source: str = "virtual_patient") -> "VirtualPatientConfig":
        """Build and validate the settings from a mapping (e.g. parsed YAML).

        Args:
            data: Settings; missing keys keep their defaults. ``None`` is all defaults.
            source: Where the mapping came from, for error messages.

        Raises:
            ConfigError: naming the field and what is allowed.
        """
        data = _mapping(source, data if data is not None else {}, _TOP_FIELDS)
        n = len(JOINT_NAMES)
        d = cls()
        kwargs: dict[str, Any] = {}
        kwargs["effort"] = _number(source, "effort", data.get("effort", d.effort), 0.0, 1.0, "between 0 and 1")
        kwargs["impairment"] = _per_joint(source, "impairment", data.get("impairment", d.impairment),
                                          0.0, 1.0, "between 0 (healthy) and 1 (no voluntary motion)", d.impairment)
        kwargs["strength"] = _per_joint(source, "strength", data.get("strength", d.strength),
                                        0.0, 200.0, "between 0 and 200 N·m", d.strength)
        kwargs["reaction_delay"] = _number(source, "reaction_delay", data.get("reaction_delay", d.reaction_delay),
                                           0.0, 2.0, "between 0 and 2 s")
        kwargs["peak_speed"] = _number(source, "peak_speed", data.get("peak_speed", d.peak_speed),
                                       0.05, 5.0, "between 0.05 and 5 rad/s")
        kwargs["min_reach_time"] = _number(source, "min_reach_time", data.get("min_reach_time", d.min_reach_time),
                                           0.1, 10.0, "between 0.1 and 10 s")
        kwargs["stiffness"] = _per_joint(source, "stiffness", data.get("stiffness", d.stiffness),
                                         0.0, 500.0, "between 0 and 500 N·m/rad", d.stiffness)
        kwargs["damping"] = _per_joint(source, "damping", data.get("damping", d.damping),
                                       0.0, 20.0, "between 0 and 20 N·m·s/rad", d.damping)
        kwargs["variability"] = _number(source, "variability", data.get("variability", d.variability),
                                        0.0, 0.5, "between 0 and 0.5")
        correction = data.get("correction_time", d.correction_time)
        if not (_is_number(correction) and (correction == 0.0 or 0.1 <= correction <= 60.0)):
            raise ConfigError(f"{source}: 'correction_time' = {correction!r}: must be 0 (no correction) "
                              "or between 0.1 and 60 s")
        kwargs["correction_time"] = float(correction)
        seed = data.get("seed", d.seed)
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ConfigError(f"{source}: 'seed' = {seed!r}: must be an integer >= 0")
        kwargs["seed"] = seed
        kwargs["spasticity"] = _spasticity(source, data.get("spasticity", {}), n)
        kwargs["fatigue"] = _fatigue(source, data.get("fatigue", {}))
        kwargs["learning"] = _learning(source, data.get("learning", {}))
        kwargs["tremor"] = _tremor(source, data.get("tremor", {}))
        events = data.get("events", [])
        if not isinstance(events, (list, tuple)):
            raise ConfigError(f"{source}: 'events' = {events!r}: must be a list of events")
        kwargs["events"] = tuple(_event(source, f"events[{i}]", e) for i, e in enumerate(events))
        return cls(**kwargs)


_TOP_FIELDS = ("effort", "impairment", "strength", "reaction_delay", "peak_speed", "min_reach_time",
               "stiffness", "damping", "variability", "correction_time", "seed", "spasticity", "fatigue",
               "learning", "tremor", "events")


def load_virtual_patient(value, source: str = "hardware option 'virtual_patient'") -> VirtualPatientConfig:
    """Return the settings given as ``None`` or ``""`` (passive), a mapping, or a YAML file path.

    A file holds the settings mapping, optionally under a top-level key ``virtual_patient``.

    Raises:
        ConfigError: if the file cannot be read or a field is invalid; names file and field.
    """
    if value is None or isinstance(value, Mapping) or value == "":
        # "" is how ROS parameters say "not set".
        return VirtualPatientConfig.from_mapping(value or None, source)
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(f"{source} = {value!r}: must be a mapping of settings or a YAML file path")
    path = os.fspath(value)
    try:
        with open(path, encoding="utf-8") as stream:
            data = yaml.safe_load(stream)
    except FileNotFoundError:
        raise ConfigError(f"{source}: file {path} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: {path} is a directory, not a YAML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: file {path} cannot be read: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: file {path} is not valid YAML: {exc}") from None
    if isinstance(data, Mapping) and set(data) == {"virtual_patient"}:
        data = data["virtual_patient"]
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"{source}: file {path} must hold a mapping of virtual patient settings")
    return VirtualPatientConfig.from_mapping(data, f"virtual patient file {path}")


# -- the patient ------------------------------------------------------------------


class VirtualPatient:
    """The torques a patient adds to the simulated arm, one physics step at a time.

    It runs inside every physics step (1 kHz), so it works on plain floats per joint:
    for 4 joints that is several times faster than numpy's per-call overhead.

    Args:
        config: The settings.
        lower, upper: Joint limits [rad]; the patient never aims beyond them.
        dt: Physics step [s]: :meth:`torque` advances the patient by it.
        start_time: Simulation start [s] on the backend clock; event times count from it.
    """

    def __init__(self, config: VirtualPatientConfig, lower: Sequence[float], upper: Sequence[float],
                 dt: float, start_time: float = 0.0) -> None:
        self.config = config
        n = self._n = len(JOINT_NAMES)
        self._lower = [float(x) for x in lower]
        self._upper = [float(x) for x in upper]
        self._dt = float(dt)
        self._t0 = float(start_time)
        self._rng = np.random.default_rng(config.seed)
        # Draw the tremor phases first so that they do not depend on the reaches made.
        self._tremor_phase = self._rng.uniform(0.0, 2.0 * math.pi, n).tolist()
        self._tremor_amp = list(config.tremor.amplitude)
        self._has_tremor = any(self._tremor_amp)
        self._tremor_omega = 2.0 * math.pi * config.tremor.frequency
        self._strength = [s * (1.0 - i) for s, i in zip(config.strength, config.impairment)]
        self._kp, self._kd = list(config.stiffness), list(config.damping)
        spastic = config.spasticity
        self._reflex_gain = spastic.gains.tolist()
        self._has_reflex = any(self._reflex_gain)
        self._reflex_sign = [_DIRECTIONS[s] for s in spastic.stretched_by]
        self._reflex_threshold = spastic.threshold
        self._reflex_limit = list(config.strength)
        self._events = config.events
        self._targets: collections.deque[tuple[float, list[float]]] = collections.deque()
        self._first_target: float | None = None  # stamp [s] of the first target shown
        # Planned state of the reach (minimum-jerk): position, velocity, acceleration.
        self._x, self._v, self._a = [0.0] * n, [0.0] * n, [0.0] * n
        self._goal: list[float] | None = None  # target the current reach was planned for
        self._aim = [0.0] * n  # where the patient actually aims (goal + scatter)
        self._time_to_go = 0.0
        self._planning = False
        # Integral of the gap between plan and limb [rad·s] (correction_time), per joint.
        self._gap_integral = [0.0] * n
        self._correction_rate = 1.0 / config.correction_time if config.correction_time > 0.0 else 0.0
        self._effort = config.effort
        # The patient's own error in the current reach: sum of squared gaps [rad^2] and steps.
        self._gap_sum, self._gap_steps = 0.0, 0
        self.reach_errors: list[float] = []  # RMS error of each finished reach [rad]
        self.reaches = 0
        self.work = 0.0  # positive mechanical work of the voluntary torque [J]
        self.voluntary = np.zeros(n)  # last voluntary torque [N·m]
        self.involuntary = np.zeros(n)  # last reflex + tremor + spasm torque [N·m]

    # -- inputs ------------------------------------------------------------------

    def set_target(self, position: Sequence[float], stamp: float) -> None:
        """Show the patient a new target: joint positions [rad] at time ``stamp`` [s].

        Raises:
            ValueError: for a wrong size, NaN/inf, or a stamp older than the last one.
        """
        target = check_target(position, stamp)
        stamp = float(stamp)
        if self._targets and stamp < self._targets[-1][0]:
            raise ValueError(f"patient target stamp {stamp} is older than the previous one "
                             f"({self._targets[-1][0]}); stamps must not go back")
        if self._targets and stamp == self._targets[-1][0]:
            self._targets.pop()
        self._targets.append((stamp, np.clip(target, self._lower, self._upper).tolist()))
        if self._first_target is None:
            self._first_target = stamp

    # -- state -------------------------------------------------------------------

    @property
    def effort(self) -> float:
        """How hard the patient tries now, 0..1 (``config.effort`` unless it learns)."""
        return self._effort

    @property
    def fatigue_factor(self) -> float:
        """Share of the voluntary strength left, 0..1."""
        f = self.config.fatigue
        fresh = (1.0 - f.per_reach) ** self.reaches
        if f.work_constant > 0.0:
            fresh *= math.exp(-self.work / f.work_constant)
        return f.floor + (1.0 - f.floor) * fresh

    def torque(self, t: float, q: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Return the patient's joint torques [N·m] at time ``t`` [s] and advance one step.

        Args:
            t: Time [s] on the backend clock, at the start of the step.
            q: Joint positions [rad].
            v: Joint velocities [rad/s].
        """
        n = self._n
        rel = t - self._t0
        effort = self._effort
        push = spasm = None
        spasm_rel = rel
        for event in self._events:
            if event.after == "start":
                event_rel = rel
            elif self._first_target is not None:
                event_rel = t - self._first_target
            else:
                continue
            if event.active(event_rel):
                if event.type == "stop_trying":
                    effort = 0.0
                elif event.type == "push_out":
                    push = event
                else:
                    spasm, spasm_rel = event, event_rel
        qs, vs = q.tolist(), v.tolist()

        voluntary = [0.0] * n
        goal = self._perceived_target(t - self.config.reaction_delay)  # also drops old targets
        fatigue = self.fatigue_factor
        limit = [s * fatigue for s in self._strength]
        if effort > 0.0 and goal is not None:
            self._plan(goal, qs, vs)
            x, xv, kp, kd = self._x, self._v, self._kp, self._kd
            rate, gap_integral, dt = self._correction_rate, self._gap_integral, self._dt
            for i in range(n):
                if limit[i] > 0.0:
                    u = kp[i] * (x[i] - qs[i]) + kd[i] * (xv[i] - vs[i])
                    if rate > 0.0 and kp[i] > 0.0:
                        # Anti-windup: the correction never asks for more than the strength left.
                        bound = limit[i] / (kp[i] * rate)
                        gap_integral[i] = min(max(gap_integral[i] + (x[i] - qs[i]) * dt, -bound), bound)
                        u += kp[i] * rate * gap_integral[i]
                    voluntary[i] = effort * limit[i] * math.tanh(u / limit[i])
            self._gap_sum += max(abs(xi - qi) for xi, qi in zip(x, qs)) ** 2
            self._gap_steps += 1
        else:
            self._planning = False
        if push is not None:
            voluntary[push.joint] = push.direction * push.effort * limit[push.joint]
        power = sum(tau * w for tau, w in zip(voluntary, vs))
        if power > 0.0:
            self.work += power * self._dt

        involuntary = [0.0] * n
        if self._has_reflex:
            threshold = self._reflex_threshold
            for i in range(n):
                w = vs[i]
                excess = abs(w) - threshold
                sign = self._reflex_sign[i]
                if excess > 0.0 and (sign == 0 or sign * w > 0.0):
                    reflex = min(self._reflex_gain[i] * excess, self._reflex_limit[i])
                    involuntary[i] -= math.copysign(reflex, w)
        if self._has_tremor:
            omega = self._tremor_omega
            for i in range(n):
                involuntary[i] += self._tremor_amp[i] * math.sin(omega * rel + self._tremor_phase[i])
        if spasm is not None:
            level = _envelope(spasm_rel - spasm.time, spasm.duration)
            for i in range(n):
                involuntary[i] += spasm.torque[i] * level
        self.voluntary[:] = voluntary
        self.involuntary[:] = involuntary
        return self.voluntary + self.involuntary

    def _perceived_target(self, seen_at: float) -> list[float] | None:
        """The newest target stamped at or before ``seen_at`` [s], or None."""
        targets = self._targets
        while len(targets) > 1 and targets[1][0] <= seen_at:
            targets.popleft()
        if targets and targets[0][0] <= seen_at:
            return targets[0][1]
        return None

    def _plan(self, goal: list[float], q: list[float], v: list[float]) -> None:
        """Advance the planned reach one step toward ``goal`` (feedback minimum-jerk law)."""
        n = self._n
        if not self._planning:
            # Starting to try: the plan starts from where the limb is.
            self._x, self._v, self._a = list(q), list(v), [0.0] * n
            self._goal = None
            self._planning = True
        if self._goal is None or max(abs(g - h) for g, h in zip(goal, self._goal)) > RETARGET_THRESHOLD:
            self._new_reach(goal)
        elif goal is not self._goal:
            self._aim = [min(max(aim + g - h, lo), hi) for aim, g, h, lo, hi in
                         zip(self._aim, goal, self._goal, self._lower, self._upper)]
            self._goal = goal
        dt = self._dt
        d = max(self._time_to_go, _TIME_TO_GO_FLOOR)
        self._time_to_go -= dt
        ka, kv, kx = 9.0 / d, 36.0 / d**2, 60.0 / d**3
        x, xv, xa, aim = self._x, self._v, self._a, self._aim
        for i in range(n):
            # Semi-implicit Euler, like the physics.
            xa[i] += (-ka * xa[i] - kv * xv[i] - kx * (x[i] - aim[i])) * dt
            xv[i] += xa[i] * dt
            x[i] += xv[i] * dt

    def _new_reach(self, goal: list[float]) -> None:
        """Plan a reach from the planned state to ``goal``: duration from distance and peak speed."""
        self._finish_reach()
        self._gap_integral = [0.0] * self._n
        distance = [abs(g - x) for g, x in zip(goal, self._x)]
        duration = max(self.config.min_reach_time,
                       _MIN_JERK_PEAK_RATIO * max(distance) / self.config.peak_speed)
        aim = list(goal)
        cv = self.config.variability
        if cv > 0.0:
            duration *= max(0.5, 1.0 + cv * float(self._rng.standard_normal()))
            scatter = self._rng.standard_normal(self._n).tolist()
            aim = [g + cv * d * s for g, d, s in zip(goal, distance, scatter)]
        self._goal = goal
        self._aim = [min(max(a, lo), hi) for a, lo, hi in zip(aim, self._lower, self._upper)]
        self._time_to_go = duration
        self.reaches += 1


    def _finish_reach(self) -> None:
        """Score the reach that ends (RMS gap between plan and limb) and learn from it."""
        if self._gap_steps == 0:
            return
        error = math.sqrt(self._gap_sum / self._gap_steps)
        self._gap_sum, self._gap_steps = 0.0, 0
        self.reach_errors.append(error)
        learning = self.config.learning
        if learning.rate > 0.0:
            self._effort = min(1.0, max(0.0, learning.retention * self._effort + learning.rate * error))


def check_target(position: Sequence[float], stamp: float) -> np.ndarray:
    """Return a target's joint positions [rad] as an array after checking it and its stamp [s].

    Raises:
        ValueError: for a wrong size, NaN/inf, or a stamp that is not a finite number.
    """
    target = np.asarray(position, dtype=float)
    n = len(JOINT_NAMES)
    if target.shape != (n,):
        raise ValueError(f"patient target must have {n} joint positions ({', '.join(JOINT_NAMES)}), "
                         f"got shape {target.shape}")
    if not np.isfinite(target).all():
        raise ValueError(f"patient target holds NaN or inf: {target.tolist()}")
    if not _is_number(stamp) or not math.isfinite(stamp):
        raise ValueError(f"patient target stamp must be a finite time [s], got {stamp!r}")
    return target


def _envelope(since: float, duration: float) -> float:
    """Raised-cosine on/off envelope 0..1 of a spasm ``since`` [s] into ``duration`` [s]."""
    rise = min(_SPASM_RISE, 0.5 * duration)
    if since < rise:
        return 0.5 - 0.5 * math.cos(math.pi * since / rise)
    left = duration - since
    if left < rise:
        return 0.5 - 0.5 * math.cos(math.pi * max(left, 0.0) / rise)
    return 1.0


# -- validation helpers ------------------------------------------------------------


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _mapping(source: str, data, allowed: Sequence[str], where: str = "") -> Mapping:
    label = f"'{where}'" if where else "the settings"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: {label} = {data!r}: must be a mapping with keys {sorted(allowed)}")
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"{source}: unknown setting(s) {[prefix + k for k in unknown]}; "
                          f"allowed: {[prefix + k for k in allowed]}")
    return data


def _number(source: str, name: str, value, low: float, high: float, allowed: str) -> float:
    if not _is_number(value) or not math.isfinite(value) or not low <= value <= high:
        raise ConfigError(f"{source}: {name!r} = {value!r}: must be {allowed}")
    return float(value)


def _per_joint(source: str, name: str, value, low: float, high: float, allowed: str,
               defaults: Sequence[float]) -> tuple[float, ...]:
    """A number, a list of one per joint, or a mapping joint -> number (others: ``defaults``)."""
    n = len(JOINT_NAMES)
    forms = (f"a number, a list of {n} numbers ({', '.join(JOINT_NAMES)}) or a mapping "
             f"joint name -> number")
    if _is_number(value):
        values = [value] * n
    elif isinstance(value, (list, tuple)) and len(value) == n:
        values = list(value)
    elif isinstance(value, Mapping):
        unknown = sorted(str(k) for k in value if k not in JOINT_NAMES)
        if unknown:
            raise ConfigError(f"{source}: {name!r} names unknown joints {unknown}; allowed: {list(JOINT_NAMES)}")
        values = [value.get(j, x) for j, x in zip(JOINT_NAMES, defaults)]
    else:
        raise ConfigError(f"{source}: {name!r} = {value!r}: must be {forms}, each {allowed}")
    for joint, x in zip(JOINT_NAMES, values):
        if not _is_number(x) or not math.isfinite(x) or not low <= x <= high:
            raise ConfigError(f"{source}: {name!r} for {joint} = {x!r}: must be {allowed}")
    return tuple(float(x) for x in values)


def _grade(source: str, name: str, value) -> str:
    text = str(value).strip() if isinstance(value, (str, int, float)) and not isinstance(value, bool) else None
    if isinstance(value, float) and value == 1.5:
        text = "1+"
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))
    if text not in MAS_REFLEX_GAIN:
        raise ConfigError(f"{source}: {name!r} = {value!r}: must be a Modified Ashworth grade, "
                          f"one of 0, 1, 1+ (or 1.5), 2, 3, 4")
    return text


def _spasticity(source: str, data, n: int) -> SpasticityConfig:
    data = _mapping(source, data, ("grades", "threshold", "stretched_by"), "spasticity")
    d = SpasticityConfig()
    grades = data.get("grades", 0)
    if isinstance(grades, Mapping):
        unknown = sorted(str(k) for k in grades if k not in JOINT_NAMES)
        if unknown:
            raise ConfigError(f"{source}: 'spasticity.grades' names unknown joints {unknown}; "
                              f"allowed: {list(JOINT_NAMES)}")
        grades = [grades.get(j, 0) for j in JOINT_NAMES]
    elif not isinstance(grades, (list, tuple)):
        grades = [grades] * n
    if len(grades) != n:
        raise ConfigError(f"{source}: 'spasticity.grades' = {grades!r}: must be one grade, a list of "
                          f"{n} grades or a mapping joint name -> grade")
    grades = tuple(_grade(source, f"spasticity.grades.{j}", g) for j, g in zip(JOINT_NAMES, grades))
    threshold = _number(source, "spasticity.threshold", data.get("threshold", d.threshold), 0.0, 5.0,
                        "between 0 and 5 rad/s")
    stretched = data.get("stretched_by", "both")
    if isinstance(stretched, Mapping):
        unknown = sorted(str(k) for k in stretched if k not in JOINT_NAMES)
        if unknown:
            raise ConfigError(f"{source}: 'spasticity.stretched_by' names unknown joints {unknown}; "
                              f"allowed: {list(JOINT_NAMES)}")
        stretched = [stretched.get(j, "both") for j in JOINT_NAMES]
    elif isinstance(stretched, str):
        stretched = [stretched] * n
    if not isinstance(stretched, (list, tuple)) or len(stretched) != n or any(
            s not in _DIRECTIONS for s in stretched):
        raise ConfigError(f"{source}: 'spasticity.stretched_by' = {data.get('stretched_by')!r}: must be "
                          f"{sorted(_DIRECTIONS)}, one for all joints, a list of {n} or a mapping per joint")
    return SpasticityConfig(grades=grades, threshold=threshold, stretched_by=tuple(stretched))


def _fatigue(source: str, data) -> FatigueConfig:
    data = _mapping(source, data, ("per_reach", "work_constant", "floor"), "fatigue")
    d = FatigueConfig()
    return FatigueConfig(
        per_reach=_number(source, "fatigue.per_reach", data.get("per_reach", d.per_reach), 0.0, 0.99,
                          "between 0 and 0.99"),
        work_constant=_number(source, "fatigue.work_constant", data.get("work_constant", d.work_constant),
                              0.0, 1e6, "0 (off) or a work > 0 J, at most 1e6 J"),
        floor=_number(source, "fatigue.floor", data.get("floor", d.floor), 0.0, 1.0, "between 0 and 1"),
    )


def _learning(source: str, data) -> LearningConfig:
    data = _mapping(source, data, ("rate", "retention"), "learning")
    d = LearningConfig()
    retention = _number(source, "learning.retention", data.get("retention", d.retention), 0.0, 1.0,
                        "above 0 and at most 1")
    if retention == 0.0:
        raise ConfigError(f"{source}: 'learning.retention' = 0: must be above 0 and at most 1 "
                          "(0 would forget all effort after every reach)")
    return LearningConfig(
        rate=_number(source, "learning.rate", data.get("rate", d.rate), 0.0, 100.0, "between 0 (off) and 100 1/rad"),
        retention=retention)


def _tremor(source: str, data) -> TremorConfig:
    data = _mapping(source, data, ("frequency", "amplitude"), "tremor")
    d = TremorConfig()
    return TremorConfig(
        frequency=_number(source, "tremor.frequency", data.get("frequency", d.frequency), 1.0, 20.0,
                          "between 1 and 20 Hz"),
        amplitude=_per_joint(source, "tremor.amplitude", data.get("amplitude", d.amplitude), 0.0, 20.0,
                             "between 0 and 20 N·m", d.amplitude),
    )


def _event(source: str, where: str, data) -> EventConfig:
    if not isinstance(data, Mapping) or data.get("type") not in _EVENT_TYPES:
        kind = data.get("type") if isinstance(data, Mapping) else None
        raise ConfigError(f"{source}: '{where}.type' = {kind!r}: must be one of {list(_EVENT_TYPES)}")
    kind = data["type"]
    keys = {"spasm": ("type", "time", "duration", "torque", "after"),
            "stop_trying": ("type", "time", "duration", "after"),
            "push_out": ("type", "time", "duration", "joint", "direction", "effort", "after")}[kind]
    _mapping(source, data, keys, where)
    if "time" not in data:
        raise ConfigError(f"{source}: '{where}.time' is missing: must be the start [s] after the "
                          "simulation started, >= 0")
    time = _number(source, f"{where}.time", data["time"], 0.0, 1e6, "between 0 and 1e6 s")
    if kind == "spasm" and "duration" not in data:
        raise ConfigError(f"{source}: '{where}.duration' is missing: a spasm must have a duration > 0 s")
    duration = data.get("duration", math.inf)
    endless = duration == math.inf and kind != "spasm"
    if not (endless or _is_number(duration) and math.isfinite(duration) and 0.0 < duration <= 1e6):
        raise ConfigError(f"{source}: '{where}.duration' = {duration!r}: must be between 0 (excluded) "
                          "and 1e6 s" + ("" if kind == "spasm" else ", or .inf (to the end)"))
    event: dict[str, Any] = {"type": kind, "time": time, "duration": float(duration)}
    after = data.get("after", "start")
    if after not in _EVENT_CLOCKS:
        raise ConfigError(f"{source}: '{where}.after' = {after!r}: must be one of {list(_EVENT_CLOCKS)} "
                          "(what 'time' counts from)")
    event["after"] = after
    if kind == "spasm":
        if "torque" not in data:
            raise ConfigError(f"{source}: '{where}.torque' is missing: a spasm must have a torque per joint [N·m]")
        event["torque"] = _per_joint(source, f"{where}.torque", data["torque"], -200.0, 200.0,
                                     "between -200 and 200 N·m", (0.0,) * len(JOINT_NAMES))
    if kind == "push_out":
        joint = data.get("joint")
        if joint not in JOINT_NAMES:
            raise ConfigError(f"{source}: '{where}.joint' = {joint!r}: must be one of {list(JOINT_NAMES)}")
        direction = data.get("direction")
        if direction not in ("positive", "negative"):
            raise ConfigError(f"{source}: '{where}.direction' = {direction!r}: must be 'positive' "
                              "(toward the upper joint limit) or 'negative'")
        event["joint"] = JOINT_NAMES.index(joint)
        event["direction"] = 1 if direction == "positive" else -1
        event["effort"] = _number(source, f"{where}.effort", data.get("effort", 1.0), 0.0, 1.0, "between 0 and 1")
    return EventConfig(**event)
