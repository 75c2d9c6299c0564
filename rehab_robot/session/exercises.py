"""The exercises in which the patient takes part: active, active_assist, assist_as_needed,
resistive, isometric and path_guidance (docs/exercises.md).

:class:`InteractiveRunner` is the session state machine of these types. Like the passive
:class:`~rehab_robot.session.runner.SessionRunner` (whose commands, pauses and report
events it shares) it never talks to ROS: it takes measurements and clock times in, and
hands out

* the robot motions to send on ``joint_trajectory`` (:meth:`take_motion`): the approach to
  the start posture (controller mode ``position``), the minimum-jerk reference of
  active_assist at the patient's movement onset, the start posture of resistive (the last
  point of a trajectory from where the arm is);
* the controller parameters to set, in one call, at rest (:meth:`take_parameters`,
  contract A: ``mode`` and gains before the exercise and after every interruption, the
  assistance gain before each repetition of assist_as_needed), answered with
  :meth:`parameters_result`;
* the exercise target the patient sees (:meth:`target_position`, ``exercise/target``).

How a repetition is counted: each one-way movement ends when every exercised joint is
within ``target_tolerance`` of its target (reached), or after ``movement_timeout`` (not
reached: the next target shows, so a patient who does not move never hangs the session).
A repetition is the movement out and the movement back; it is complete once both ended,
and "reached" if both were reached. An isometric repetition is a rest then a contraction
that is reached once the torque has stayed above ``(1 - torque_tolerance) * target_torque``
for ``hold_time``, or not reached after ``contraction_timeout``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from rehab_robot.control.adaptation import adapt_assistance_gain
from rehab_robot.control.trajectory import QuinticSegment, minimum_jerk_duration
from rehab_robot.session import repetition_metrics as rm
from rehab_robot.session.runner import SessionRunner, SessionState

#: Controller ``mode`` of each exercise type (contract A).
CONTROLLER_MODES = {
    "active": "active",
    "active_assist": "active_assist",
    "assist_as_needed": "active_assist",
    "resistive": "resistive",
    "isometric": "isometric",
    "path_guidance": "path_guidance",
}
#: Soft-wall margin [rad] around the start posture of a joint the patient has no ROM for (held still).
HELD_JOINT_MARGIN = 0.05
#: How long [s] the session waits for the controller to answer a parameter call.
PARAMETER_TIMEOUT = 5.0
#: Shortest rest [s] before a contraction: the motor torque at rest is the baseline of the patient's torque.
MIN_BASELINE_TIME = 0.5
#: Distance [rad] beyond the hold angle, toward the push, shown as the target of a contraction.
PUSH_TARGET_OFFSET = 0.2
#: Joint speed [rad/s] below which the arm counts as at rest for a mode change (contract A).
REST_SPEED = 0.02
#: Longest wait [s] for the arm to come to rest before the mode is set anyway (the controller may refuse).
REST_WAIT = 3.0
#: What the controller's refusal of a mode change says when the arm (or its last trajectory)
#: has not settled yet: the call is repeated every REST_RETRY [s] until REST_WAIT has passed.
NOT_AT_REST = "only while the arm is at rest"
REST_RETRY = 0.1
#: Shortest trajectory [s] that gives the controller the start posture of resistive (its last point).
ANCHOR_DURATION = 0.1


def controller_parameters(protocol, patient, joint_names: Sequence[str], joint_limits: Mapping[str, Sequence[float]],
                          posture: Sequence[float], cuff_waypoints: Optional[np.ndarray] = None,
                          gain: Optional[float] = None) -> dict[str, Any]:
    """Return the ``motion_controller`` parameters of an exercise (contract A), SI units.

    Args:
        protocol: The validated protocol (any type but passive_rom).
        patient: The validated patient profile (ROM, limb masses).
        joint_names: Joint order of the arm.
        joint_limits: Joint name -> (lower, upper) of the arm [rad].
        posture: Measured joint positions at the start [rad]: the soft walls of a joint
            without ROM limits hold it there (± :data:`HELD_JOINT_MARGIN`).
        cuff_waypoints: Cuff positions [m] in base_link of the path (path_guidance).
        gain: Assistance gain (default: the protocol's ``initial_gain``).
    """
    lower, upper = [], []
    for name, q in zip(joint_names, posture):
        arm_low, arm_high = (float(x) for x in joint_limits[name])
        if name in patient.rom_limits:
            low, high = patient.rom_limits[name]
        else:
            low, high = float(q) - HELD_JOINT_MARGIN, float(q) + HELD_JOINT_MARGIN
        lower.append(max(arm_low, low))
        upper.append(min(arm_high, high))
    params: dict[str, Any] = {
        "mode": CONTROLLER_MODES[protocol.type],
        "admittance.damping": float(protocol.admittance_damping),
        # The patient's speed cap, which the supervisor enforces (with its margin): a limb
        # that drops or a push that the admittance follows stays below it, never a stop.
        "admittance.max_speed": float(patient.max_velocity),
        "weight_support": float(protocol.weight_support),
        "limb_masses": [float(m) for m in patient.limb_masses],
        "soft_wall.lower": lower,
        "soft_wall.upper": upper,
        "spasm.reaction": protocol.spasm_reaction,
    }
    if protocol.type in ("active_assist", "assist_as_needed"):
        params.update({
            "assist.gain": float(protocol.initial_gain if gain is None else gain),
            "assist.stiffness": float(protocol.assist_stiffness),
            "assist.deadband": float(protocol.assist_deadband),
            "assist.max_torque": float(protocol.assist_max_torque),
            # The session starts the reference at the patient's onset (or at onset_timeout):
            # the controller must not wait for an onset of its own.
            "assist.onset_timeout": 0.0,
        })
    elif protocol.type == "resistive":
        params.update({
            "resistive.damping": float(protocol.resistive_damping),
            "resistive.stiffness": float(protocol.resistive_stiffness),
            "resistive.max_torque": float(protocol.resistive_max_torque),
        })
    elif protocol.type == "path_guidance":
        if cuff_waypoints is None:
            raise ValueError("path_guidance needs the cuff positions of its waypoints")
        params.update({
            "path_guidance.waypoints": [float(x) for x in np.asarray(cuff_waypoints, dtype=float).ravel()],
            "path_guidance.width": float(protocol.channel_width),
            "path_guidance.stiffness": float(protocol.guidance_stiffness),
        })
    return params


@dataclass(frozen=True)
class Phase:
    """One phase of an interactive exercise.

    Attributes:
        label: What it is, for status and reports.
        kind: ``approach`` (robot move to the start posture), ``move`` (the patient moves to
            the target), ``hold``, ``rest``, ``contract`` (isometric contraction).
        targets: Joint index -> target angle [rad]; the other joints stay at the start posture.
        duration: Planned length (hold, rest) or time-out (move, contract) [s].
        repetition: Repetition number, 0 for the approach.
        starts_repetition: The first phase of a repetition.
        completes_repetition: The last phase of a repetition.
    """

    label: str
    kind: str
    targets: Mapping[int, float]
    duration: float
    repetition: int = 0
    starts_repetition: bool = False
    completes_repetition: bool = False

    @property
    def target(self) -> float:
        """Target [rad] of the lowest-numbered joint it moves (the passive runner's check of the approach)."""
        return self.targets[min(self.targets)]

    @property
    def moves(self) -> bool:
        """True for the robot's own move (the approach), as in the passive runner's steps."""
        return self.kind == "approach"


def plan_phases(protocol, joint_names: Sequence[str]) -> list[Phase]:
    """Return the phases of an interactive protocol (approach first)."""
    index = {name: i for i, name in enumerate(joint_names)}
    hold = protocol.hold_duration
    if protocol.type == "path_guidance":
        stops = [{index[j]: a for j, a in w.items()} for w in protocol.waypoints]
        names = [f"waypoint {k + 1}" for k in range(len(stops))]
    else:
        j = index[protocol.joint]
        start = protocol.hold_angle if protocol.type == "isometric" else protocol.start_angle
        stops = [{j: start}, {j: protocol.end_angle}]
        names = ["start angle", "end angle"]
    phases = [Phase("approach start position", "approach", stops[0], 0.0)]
    n = protocol.repetitions
    if protocol.type == "isometric":
        rest = max(protocol.rest_duration, MIN_BASELINE_TIME)
        for rep in range(1, n + 1):
            phases.append(Phase(f"repetition {rep}: rest", "rest", stops[0], rest, rep, starts_repetition=True))
            phases.append(Phase(f"repetition {rep}: push and hold", "contract", stops[0],
                                protocol.contraction_timeout, rep, completes_repetition=True))
        return phases
    route = list(range(1, len(stops))) + list(range(len(stops) - 2, -1, -1))  # out and back
    for rep in range(1, n + 1):
        for k, stop in enumerate(route):
            last = k == len(route) - 1
            phases.append(Phase(f"repetition {rep}: to {names[stop]}", "move", stops[stop], protocol.movement_timeout,
                                rep, starts_repetition=k == 0, completes_repetition=last and hold == 0))
            if hold > 0 and not (last and rep == n):
                phases.append(Phase(f"repetition {rep}: hold at {names[stop]}", "hold", stops[stop], hold, rep,
                                    completes_repetition=last))
    if hold > 0:  # no hold after the last movement: it completes the last repetition
        last_move = max(i for i, p in enumerate(phases) if p.kind == "move")
        p = phases[last_move]
        phases[last_move] = Phase(p.label, p.kind, p.targets, p.duration, p.repetition, p.starts_repetition, True)
    return phases


@dataclass
class _Repetition:
    number: int
    start: float
    gain: Optional[float]
    movements: list = field(default_factory=list)
    interruptions: list = field(default_factory=list)
    contraction: Optional[tuple[float, float]] = None
    tracking: list = field(default_factory=list)


class InteractiveRunner(SessionRunner):
    """Runs one exercise of an interactive type (see module docstring).

    Args:
        protocol: The validated protocol (type other than passive_rom).
        patient: The validated patient profile (ROM limits for the isometric push target).
        joint_names: Joint order of the measured positions.
        max_velocity: Patient speed cap [rad/s]; bounds the approach move.
        make_parameters: ``f(posture, gain) -> dict``: the controller parameters of the
            exercise for the start posture [rad] and an assistance gain (None: the
            protocol's); see :func:`controller_parameters`.
        cuff_position: ``f(q) -> xyz`` [m] of the cuff in base_link, for the path metrics
            (None: no path metrics).
        initial_gain: Assistance gain to start from (assist_as_needed: the last session's,
            from the patient's history); None: the protocol's ``initial_gain``.
        **kwargs: As for :class:`SessionRunner` (tolerances, time-outs, auto resume).
    """

    def __init__(self, protocol, patient, joint_names: Sequence[str], max_velocity: float,
                 make_parameters: Optional[Callable[[np.ndarray, Optional[float]], dict]] = None,
                 cuff_position: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                 initial_gain: Optional[float] = None, **kwargs) -> None:
        super().__init__(protocol, joint_names, max_velocity, **kwargs)
        self.target_tolerance = protocol.target_tolerance  # the protocol's, for the approach too
        self.patient = patient
        self.joint_names = list(joint_names)
        self.steps = plan_phases(protocol, joint_names)
        self.exercised = sorted({j for p in self.steps for j in p.targets})
        self.moved_joints = [self.joint_names[j] for j in self.exercised]
        self.make_parameters = make_parameters or (lambda posture, gain: {})
        self.cuff_position = cuff_position
        assisted = protocol.type in ("active_assist", "assist_as_needed")
        self.gain: Optional[float] = (protocol.initial_gain if initial_gain is None else float(initial_gain)) \
            if assisted else None
        self.gains = [] if self.gain is None else [self.gain]
        self.log = rm.SampleLog()
        self.posture: Optional[np.ndarray] = None
        self.repetitions: list[dict] = []
        self.controller_events: list[dict] = []
        self._parameters_out: Optional[dict] = None
        self._configured = False
        self._ever_configured = False
        self._gain_only = False
        self._rest_wanted_since: Optional[float] = None
        self._speed = 0.0
        self._config_sent_at: Optional[float] = None
        # First refusal of a mode change because the arm had not settled [s], and when to ask again [s].
        self._rest_refused_since = float("inf")
        self._retry_at = -float("inf")
        self._rep: Optional[_Repetition] = None
        self._phase_start = 0.0
        self._onset: Optional[float] = None
        self._reference: Optional[QuinticSegment] = None
        self._held_since: Optional[float] = None
        self._baseline: list[float] = []
        self._baseline_value = 0.0
        self._cuff_path: Optional[np.ndarray] = None
        self._anchor_wanted = False  # resistive: the controller's mode was set, it needs the start posture again
        self._anchor_due = False  # resistive: send the start posture with the next measurement

    # --- outputs -------------------------------------------------------------------------

    def take_parameters(self) -> Optional[dict]:
        """Return the controller parameters to set now, once (None if none): one atomic call."""
        out, self._parameters_out = self._parameters_out, None
        return out

    def target_position(self) -> Optional[np.ndarray]:
        """The exercise target [rad], all joints (``exercise/target``); None when none shows.

        A contraction shows a target :data:`PUSH_TARGET_OFFSET` beyond the hold angle in
        the push direction (inside the patient's ROM): where the patient should push toward.

        None while the robot brings the arm to the start posture (the approach, controller
        mode ``position``): the patient relaxes, as in passive_rom. A patient reaching during
        the stiff approach for a target (even the approach's own point, seen after a reaction
        time) lags behind the arm and pushes against its motion, which is a spasm's
        signature. After the approach, until the exercise's mode is set at rest, the start
        posture shows (where the arm is), not the first target ahead of it.
        """
        if self.posture is None or self.state not in (SessionState.RUNNING, SessionState.PAUSED):
            return None
        if self.step_index == 0:
            return None
        phase = self.steps[self.step_index] if self._ever_configured else self.steps[0]
        target = self.posture.copy()
        for j, angle in phase.targets.items():
            target[j] = angle
        if phase.kind == "contract":
            j = self.joint_index
            low, high = self.patient.rom_limits[self.protocol.joint]
            push = math.copysign(PUSH_TARGET_OFFSET, self.protocol.target_torque)
            target[j] = min(max(target[j] + push, low), high)
        return target

    def current_target(self) -> Optional[float]:
        """Target [rad] of the exercised joint (the first waypoint joint for path_guidance).

        During the approach: the start posture it moves the arm to (the patient is shown none).
        """
        if self.state in (SessionState.RUNNING, SessionState.PAUSED) and self.step_index == 0:
            return float(self.steps[0].targets.get(self.joint_index, self.posture[self.joint_index]))
        target = self.target_position()
        if target is not None:
            return float(target[self.joint_index])
        return self._last_target

    def current_repetition(self) -> int:
        """Number of the repetition under way (0 during the approach); once ended, those completed."""
        if self.state not in (SessionState.RUNNING, SessionState.PAUSED):
            return self.repetitions_completed
        return self.steps[self.step_index].repetition

    def remaining_time(self, now: float) -> float:
        """Longest time [s] the exercise may still take (every movement to its time-out)."""
        if self.state.finished:
            return 0.0
        if self.state is SessionState.IDLE:
            return sum(p.duration for p in self.steps)
        phase = self.steps[self.step_index]
        clock = self._paused_since if self.state is SessionState.PAUSED else now
        current = max(self._step_duration - (clock - self._step_started), 0.0) if phase.kind == "approach" \
            else max(phase.duration - (clock - self._phase_start), 0.0)
        return current + sum(p.duration for p in self.steps[self.step_index + 1:])

    # --- inputs ----------------------------------------------------------------------------

    def parameters_result(self, now: float, position: np.ndarray, success: bool, reason: str = "") -> None:
        """The controller's answer to the last :meth:`take_parameters` call."""
        if self._config_sent_at is None or self.state.finished:
            return
        self._config_sent_at = None
        if not success:
            # The controller's clock of the last trajectory can end a little after ours.
            if NOT_AT_REST in reason and now - self._rest_refused_since < REST_WAIT:
                self._rest_refused_since = min(self._rest_refused_since, now)
                self._retry_at = now + REST_RETRY
                return
            self.abort(now, f"the motion controller refused the exercise parameters: {reason or 'no reason given'}")
            return
        self._rest_refused_since = float("inf")
        if not self._gain_only and self.protocol.type == "resistive":
            self._anchor_wanted = True  # a mode set drops the controller's trajectory
        self._configured = self._ever_configured = True
        self._gain_only = False
        if self.state is SessionState.RUNNING:
            self._enter_step(now, position)

    def controller_event(self, now: float, position: np.ndarray, name: str, message: str,
                         values: Mapping[str, str]) -> None:
        """A ``controller/events`` spasm or soft_wall_limit: an interruption (pause, manual resume only)."""
        if name not in ("spasm", "soft_wall_limit"):
            return
        since = 0.0 if self._started_at is None else now - self._started_at
        record = {"time": round(since, 3), "event": name, "message": message, **dict(values)}
        self.controller_events.append(record)
        if self._rep is not None:
            self._rep.interruptions.append(record)
        text = f"{name.replace('_', ' ')}: {message}"
        if self.state is SessionState.RUNNING:
            # No stop trajectory: the controller reacts itself, and the arm is not where the
            # session's plan has it (a spasm moved it); a trajectory from there is refused, or
            # becomes the reference of a return_to_start.
            self._interrupt(now, smooth_stop=False)
            self._enter_pause(now, text)
            self._interrupted_at = None  # the controller holds its reaction: a clinician resumes
            self._configured, self._gain_only = False, False
        elif self.state is SessionState.PAUSED:
            self._event(now, text)
            self._configured, self._gain_only = False, False

    def resume(self, now: float, position: np.ndarray, motion_permitted: bool) -> tuple[bool, str]:
        """Resume: after the approach the controller's mode is set again, then the phase starts over."""
        if self.state is SessionState.PAUSED and self.step_index > 0:
            self._configured, self._gain_only = False, False  # the controller leaves a spasm reaction only on a new mode
        return super().resume(now, position, motion_permitted)

    def update(self, now: float, position: np.ndarray, force_norm: Optional[float], motion_permitted: bool,
               stop_cause: str = "", velocity=None, effort=None, robot_torque=None, patient_torque=None) -> None:
        """Advance the exercise at ``now`` [s] (see :meth:`SessionRunner.update`).

        Args:
            velocity: Measured joint velocities [rad/s] (None: from position differences).
            effort: Measured motor torques [N·m] (isometric: the patient's torque is their
                change from the rest before the contraction).
            robot_torque, patient_torque: Joint torques [N·m] of robot and patient, for the
                work shares (None: unknown).
        """
        position = np.asarray(position, dtype=float)
        if velocity is None:
            velocity = np.zeros_like(position) if not self.log.t else \
                (position - self.log.position[-1]) / max(now - self.log.t[-1], 1e-3)
        velocity = np.asarray(velocity, dtype=float)
        self._speed = float(np.max(np.abs(velocity))) if velocity.size else 0.0
        if self.state in (SessionState.RUNNING, SessionState.PAUSED) and self.step_index > 0:
            cuff = self.cuff_position(position) if self.cuff_position is not None else None
            torque = patient_torque
            if self.protocol.type == "isometric" and effort is not None:
                torque = np.zeros_like(position)
                torque[self.joint_index] = self._baseline_value - float(effort[self.joint_index])
            self.log.add(now, position, velocity, force_norm, robot_torque, torque, cuff)
        if self.state in (SessionState.RUNNING, SessionState.PAUSED) and self.step_index > 0:
            self.metrics.add_state(position)  # the report's rom_reached and peak force, as for passive
            if force_norm is not None:
                self.metrics.add_force(force_norm)
        if self.step_index == 0 or self.state is not SessionState.RUNNING or not motion_permitted:
            # The approach, pauses (time-out, automatic resume) and interruptions: as a passive exercise.
            super().update(now, position, force_norm, motion_permitted, stop_cause)
            return
        if self._config_sent_at is not None:
            if now - self._config_sent_at > PARAMETER_TIMEOUT:
                self.abort(now, f"the motion controller did not answer the parameter call within "
                                f"{PARAMETER_TIMEOUT:g} s")
            return
        if not self._configured:
            self._enter_step(now, position)
            return
        phase = self.steps[self.step_index]
        elapsed = now - self._phase_start
        if phase.kind == "move":
            self._update_move(now, position, velocity, phase, elapsed)
        elif phase.kind == "contract":
            self._update_contraction(now, phase, elapsed)
        else:
            if phase.kind == "rest" and effort is not None and elapsed >= phase.duration - MIN_BASELINE_TIME:
                self._baseline.append(float(effort[self.joint_index]))
            if elapsed >= phase.duration:
                if phase.kind == "rest" and self._baseline:
                    self._baseline_value = float(np.mean(self._baseline))
                self._next_phase(now, position)
        if self._anchor_due and self.state is SessionState.RUNNING and self._configured:
            self._anchor_due = False
            self._outbox.append(self._resistive_anchor(position))

    # --- phases ----------------------------------------------------------------------------

    def _update_move(self, now: float, position: np.ndarray, velocity: np.ndarray, phase: Phase,
                     elapsed: float) -> None:
        error = max(abs(position[j] - a) for j, a in phase.targets.items())
        assisted = self.protocol.type in ("active_assist", "assist_as_needed")
        if assisted and self._onset is None:
            (j, goal), = phase.targets.items()
            toward = math.copysign(1.0, goal - position[j]) * velocity[j]
            # Triggered assistance (Kahn et al. 2006): a patient who has not started within
            # onset_timeout of the target showing is carried from where the arm is.
            started = toward > self.protocol.onset_velocity or elapsed >= self.protocol.onset_timeout
            if started and error > self.target_tolerance:
                self._onset = now
                distance = abs(goal - position[j])
                duration = max(self.protocol.movement_duration * distance / max(self.protocol.distance, 1e-9),
                               minimum_jerk_duration(distance, self.max_velocity), 0.5)
                self._reference = QuinticSegment.minimum_jerk([float(position[j])], [goal], duration)
                self._outbox.append(self._reference)
        if self._reference is not None and self._onset is not None:
            (j, _), = phase.targets.items()
            reference, _, _ = self._reference.sample(min(now - self._onset, self._reference.duration))
            self._rep.tracking.append(abs(float(reference[0]) - float(position[j])))
        if error <= self.target_tolerance:
            self._end_movement(now, phase, True)
            self._next_phase(now, position)
        elif elapsed >= phase.duration:
            self._end_movement(now, phase, False)
            self._event(now, f"{phase.label}: not reached within {phase.duration:g} s")
            # Skip the hold at a target not reached: the next target shows at once.
            if self.step_index + 1 < len(self.steps) and self.steps[self.step_index + 1].kind == "hold":
                self.step_index += 1
                if self.steps[self.step_index].completes_repetition:
                    self._close_repetition(now)
            self._next_phase(now, position)

    def _update_contraction(self, now: float, phase: Phase, elapsed: float) -> None:
        p = self.protocol
        direction = 1.0 if p.target_torque > 0 else -1.0
        torque = direction * float(self.log.patient_torque[-1][self.joint_index]) if self.log.t else 0.0
        if torque >= (1.0 - p.torque_tolerance) * abs(p.target_torque):
            self._held_since = now if self._held_since is None else self._held_since
        else:
            self._held_since = None
        reached = self._held_since is not None and now - self._held_since >= p.hold_time
        if reached or elapsed >= phase.duration:
            self._rep.contraction = (self._phase_start, now)
            self._end_movement(now, phase, reached)
            if not reached:
                self._event(now, f"{phase.label}: target torque not held within {phase.duration:g} s")
            self._next_phase(now, None)

    def _end_movement(self, now: float, phase: Phase, reached: bool) -> None:
        record = {
            "target": {self.joint_names[j]: round(a, 5) for j, a in phase.targets.items()},
            "reached": reached,
            "duration": round(now - self._phase_start, 3),
            "onset": None if self._onset is None else round(self._onset - self._phase_start, 3),
        }
        if phase.kind == "move":
            record.update(rm.movement_metrics(self.log.window(self._phase_start, now), self.exercised))
        self._rep.movements.append(record)
        if reached and phase.kind == "move":
            self._last_target = float(phase.targets.get(self.joint_index, self._last_target or 0.0))

    def _next_phase(self, now: float, position: Optional[np.ndarray]) -> None:
        phase = self.steps[self.step_index]
        if phase.completes_repetition and self._rep is not None:
            self._close_repetition(now)
        self.step_index += 1
        if self.step_index >= len(self.steps):
            done = f"all {self.protocol.repetitions} repetitions done"
            reached = sum(1 for r in self.repetitions if r["reached"])
            self._finish(now, SessionState.COMPLETED, f"{done} ({reached} with every target reached)")
            return
        self._enter_step(now, position if position is not None else self.log.position[-1])

    def _close_repetition(self, now: float) -> None:
        rep, self._rep = self._rep, None
        if rep is None:
            return
        window = self.log.window(rep.start, now)
        moves = [m for m in rep.movements if m.get("peak_speed") is not None or "sparc" in m]
        metrics: dict[str, Any] = {"rom": rm.rom_metrics(window, self.joint_names, self.exercised)}
        for name, how in (("peak_speed", max), ("movement_time", sum), ("sparc", np.mean), ("ldlj", np.mean)):
            values = [m[name] for m in moves if m.get(name) is not None]
            metrics[name] = round(float(how(values)), 5) if values else None
        metrics.update(rm.path_metrics(window, self._cuff_path))
        metrics.update(rm.interaction_metrics(window))
        metrics["assistance_gain"] = None if rep.gain is None else round(rep.gain, 5)
        metrics["tracking_error"] = (round(float(np.sqrt(np.mean(np.square(rep.tracking)))), 5)
                                     if rep.tracking else None)
        if self.protocol.type == "isometric":
            metrics.update(self._isometric_metrics(rep))
        reached = bool(rep.movements) and all(m["reached"] for m in rep.movements)
        self.repetitions.append({
            "repetition": rep.number,
            "start": round(rep.start - self._started_at, 3),
            "duration": round(now - rep.start, 3),
            "reached": reached,
            "movements": rep.movements,
            "interruptions": rep.interruptions,
            "metrics": metrics,
        })
        self.repetitions_completed += 1
        self._event(now, f"repetition {rep.number} completed" + ("" if reached else " (a target not reached)"))
        if self.protocol.type == "assist_as_needed" and self.gain is not None:
            error = metrics["tracking_error"] if metrics["tracking_error"] is not None else 0.0
            self.gain = adapt_assistance_gain(self.gain, error, self.protocol.forgetting_factor,
                                              self.protocol.learning_rate, self.protocol.error_tolerance)
            self.gains.append(self.gain)
            self._configured = False  # the next repetition starts by setting the new gain
            self._gain_only = True
            self._event(now, f"assistance gain {self.gain:.3f} for the next repetition "
                             f"(tracking error {error:.3f} rad)")
        self.log.trim(now - 1.0)

    def _isometric_metrics(self, rep: _Repetition) -> dict[str, Any]:
        if rep.contraction is None:
            return {"isometric_peak_torque": None, "sustained_torque": None}
        window = self.log.window(*rep.contraction)
        torque = window.patient_torque[:, self.joint_index] if len(window.t) else np.zeros(0)
        direction = 1 if self.protocol.target_torque > 0 else -1
        return rm.isometric_metrics(window.t, torque, self.protocol.hold_time, direction)

    # --- SessionRunner hooks -----------------------------------------------------------------

    def start(self, now: float, position: np.ndarray, motion_permitted: bool) -> tuple[bool, str]:
        """Start at ``now`` [s] from ``position`` [rad]: the posture of the joints not exercised."""
        if self.state is SessionState.IDLE and motion_permitted:
            self.posture = np.array(position, dtype=float)
            if self.cuff_position is not None and self.protocol.type == "path_guidance":
                stops = []
                for w in self.protocol.waypoints:
                    q = self.posture.copy()
                    for name, angle in w.items():
                        q[self.joint_names.index(name)] = angle
                    stops.append(np.asarray(self.cuff_position(q), dtype=float))
                self._cuff_path = np.array(stops)
        return super().start(now, position, motion_permitted)

    def _enter_step(self, now: float, position: np.ndarray) -> None:
        phase = self.steps[self.step_index]
        if phase.kind == "approach":
            self._enter_approach(now, np.asarray(position, dtype=float), phase)
            return
        if phase.starts_repetition and self._rep is None:
            self._rep = _Repetition(phase.repetition, now, self.gain)
            self._event(now, f"repetition {phase.repetition} started")
        if not self._configured:
            if self._config_sent_at is None and now < self._retry_at:
                return
            if self._config_sent_at is None:
                if self._gain_only:
                    # The mode stays: only the adapted gain, which needs no rest.
                    self._parameters_out = {"assist.gain": float(self.gain)}
                else:
                    # A mode change is accepted only at rest: wait (at most REST_WAIT) for the arm to settle.
                    if self._rest_wanted_since is None:
                        self._rest_wanted_since = now
                    if self._speed > REST_SPEED and now - self._rest_wanted_since < REST_WAIT:
                        return
                    self._parameters_out = self.make_parameters(self.posture, self.gain)
                self._rest_wanted_since = None
                self._config_sent_at = now
            return
        self._phase_start = now
        self._step_started = now
        self._step_duration = phase.duration
        self._onset, self._reference, self._held_since = None, None, None
        if phase.kind == "rest":
            self._baseline = []
        if self.protocol.type == "resistive" and phase.kind == "move" and (phase.starts_repetition
                                                                          or self._anchor_wanted):
            # Sent from the next measurement (see update): a parameter answer arrives between
            # two ticks, and the limb may fall fast once the mode is set.
            self._anchor_due, self._anchor_wanted = True, False

    def _resistive_anchor(self, position: np.ndarray) -> QuinticSegment:
        """The trajectory that gives the controller the start posture of resistive: its last point.

        It starts where the arm is (``position`` [rad]): between repetitions the limb sags
        under its weight, and the movement back counts within ``target_tolerance``, so the
        arm is rarely at the start posture; the controller refuses a trajectory whose first
        point is further than its ``start_tolerance`` (0.05 rad) from its setpoint. In
        resistive mode the trajectory does not move the arm (the patient does): the
        controller takes its last point as the anchor of the elastic resistance (and the
        posture a spasm's ``return_to_start`` goes back to). It is as short as the patient's
        speed cap allows (at least :data:`ANCHOR_DURATION`).
        """
        here = [float(position[j]) for j in self.exercised]  # measured in this tick, sent right after it
        start = [float(self.steps[0].targets.get(j, self.posture[j])) for j in self.exercised]
        distance = max(abs(a - b) for a, b in zip(here, start))
        duration = max(minimum_jerk_duration(distance, self.max_velocity), ANCHOR_DURATION)
        return QuinticSegment.minimum_jerk(here, start, duration)

    def _finish(self, now: float, state: SessionState, reason: str) -> None:
        super()._finish(now, state, reason)
        if self._ever_configured:
            # Best effort: back to today's mode, where the arm holds; refused while it moves.
            self._parameters_out = {"mode": "position"}

    def _enter_approach(self, now: float, position: np.ndarray, phase: Phase) -> None:
        self._step_started = now
        start = [float(position[j]) for j in self.exercised]
        goal = [float(phase.targets.get(j, self.posture[j])) for j in self.exercised]
        distance = max(abs(g - s) for g, s in zip(goal, start))
        duration = max(minimum_jerk_duration(distance, self.max_velocity), 1.0)
        self._step_duration = duration
        self._segment = QuinticSegment.minimum_jerk(start, goal, duration)
        self._outbox.append(self._segment)

    def _interrupt(self, now: float, smooth_stop: bool = True) -> None:
        if self.step_index == 0:
            super()._interrupt(now, smooth_stop)
            return
        self._segment = None
        self._config_sent_at = None
        self._anchor_due = False  # the mode is set again on resume, and the start posture sent then
        if self._rep is not None and self.state is SessionState.RUNNING:
            self._rep.interruptions.append({"time": round(now - self._started_at, 3), "event": "pause"})

    def exercise_report(self) -> dict:
        """The report's exercise part: type, per-repetition records, session summary, gains, controller events."""
        return {
            "exercise": {
                "type": self.protocol.type,
                "controller_mode": CONTROLLER_MODES[self.protocol.type],
                "joints": self.moved_joints,
                "assistance_gains": [round(g, 5) for g in self.gains] if self.gains else None,
                "final_assistance_gain": None if self.gain is None else round(self.gain, 5),
            },
            "repetitions": self.repetitions,
            "session_metrics": rm.session_summary(self.repetitions),
            "controller_events": self.controller_events,
        }


#: The example protocol shipped for each exercise type (config/protocols/).
EXAMPLE_PROTOCOLS = {
    "passive_rom": "passive_elbow_rom.yaml",
    "active": "active_elbow.yaml",
    "active_assist": "active_assist_elbow.yaml",
    "assist_as_needed": "assist_as_needed_elbow.yaml",
    "resistive": "resistive_elbow.yaml",
    "isometric": "isometric_elbow.yaml",
    "path_guidance": "path_guidance_reach.yaml",
}

#: Virtual patient of ``rehab-robot demo --exercise`` (docs/virtual-patient.md): an impaired patient
#: who takes part, at most 0.5 x 0.4 x 45 = 9 N·m at the elbow, so that even against a stiff arm the
#: cuff force stays below the example profile's 40 N limit (none for passive_rom: today's passive demo).
#: They close what gap the limb's weight leaves at a target within about a second (correction_time).
DEMO_VIRTUAL_PATIENT = {"effort": 0.5, "impairment": 0.6, "reaction_delay": 0.2, "peak_speed": 0.8,
                        "correction_time": 1.0, "seed": 1}


def format_exercise_metrics(report: Mapping[str, Any]) -> str:
    """Return the per-repetition and session metrics of a report as readable lines ("" if none)."""
    repetitions = report.get("repetitions") or []
    if not repetitions and not report.get("session_metrics"):
        return ""
    lines = ["  per repetition:"]
    for rep in repetitions:
        m = rep.get("metrics", {})
        parts = [f"{name} {m[name]:.3g}" for name in (
            "peak_speed", "movement_time", "sparc", "ldlj", "path_length_ratio", "max_path_deviation",
            "peak_interaction_force", "patient_work_share", "assistance_gain", "tracking_error",
            "isometric_peak_torque", "sustained_torque") if isinstance(m.get(name), (int, float))]
        reached = "reached" if rep.get("reached") else "NOT reached"
        lines.append(f"    {rep.get('repetition')}: {reached}; " + ", ".join(parts))
    summary = report.get("session_metrics") or {}
    shown = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                      for k, v in summary.items() if v is not None)
    lines.append(f"  session: {shown}")
    return "\n".join(lines)
