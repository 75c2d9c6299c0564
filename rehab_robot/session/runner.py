"""The exercise session state machine of a passive range-of-motion exercise.

The exercise moves one joint from where it is to ``start_angle``, then repeats
``start -> end -> start`` with minimum-jerk moves and holds at each end. A
repetition counts when the joint is back at ``start_angle``.

States::

    idle --start--> running --(all repetitions)--> completed
                     |  ^
          pause or   |  | resume (needs motion permitted)
        safety stop  v  |
                     paused
    running/paused --stop--> stopped        running --target not reached--> aborted

The runner never talks to ROS: it takes measurements and clock times in, and hands
out the motions to send (:meth:`SessionRunner.take_motion`) as quintic segments of
the exercised joint.
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from rehab_robot.control.trajectory import QuinticSegment, minimum_jerk_duration
from rehab_robot.session.report import SessionMetrics, SessionOutcome

#: Recorded for an interruption whose cause is not known (yet): see ``name_interruption``.
UNNAMED_CAUSE = "motion not permitted by the safety supervisor"


class SessionState(str, enum.Enum):
    """Where the session is."""

    IDLE = "idle"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    STOPPED = "stopped"
    ABORTED = "aborted"

    @property
    def finished(self) -> bool:
        """True once the session has ended, one way or another."""
        return self in (SessionState.COMPLETED, SessionState.STOPPED, SessionState.ABORTED)


@dataclass(frozen=True)
class Step:
    """One step of the exercise plan.

    Attributes:
        label: What the step is, for status and reports.
        target: Joint position at the end of the step [rad].
        duration: Planned length [s]; for the approach move, the peak speed decides it.
        moves: True for a move, False for a hold.
        completes_repetition: True for the move that closes a repetition.
        starts_repetition: True for the move that opens a repetition.
    """

    label: str
    target: float
    duration: float
    moves: bool
    completes_repetition: bool = False
    starts_repetition: bool = False


def plan_steps(protocol) -> list[Step]:
    """Return the steps of a passive range-of-motion protocol (approach move first)."""
    steps = [Step("approach start position", protocol.start_angle, protocol.movement_duration, True)]
    for rep in range(1, protocol.repetitions + 1):
        steps.append(Step(f"repetition {rep}: to end angle", protocol.end_angle, protocol.movement_duration, True,
                          starts_repetition=True))
        if protocol.hold_duration > 0:
            steps.append(Step(f"repetition {rep}: hold at end angle", protocol.end_angle, protocol.hold_duration, False))
        steps.append(
            Step(f"repetition {rep}: back to start angle", protocol.start_angle,
                 protocol.movement_duration, True, completes_repetition=True)
        )
        if protocol.hold_duration > 0 and rep < protocol.repetitions:
            steps.append(Step(f"repetition {rep}: hold at start angle", protocol.start_angle, protocol.hold_duration, False))
    return steps


class SessionRunner:
    """Runs one passive range-of-motion exercise.

    Args:
        protocol: The validated exercise protocol (joint, angles [rad], repetitions,
            movement_duration [s], hold_duration [s]).
        joint_names: Joint order of the measured positions.
        max_velocity: Patient speed cap [rad/s]; bounds the approach and resume moves.
        target_tolerance: How close [rad] the joint must come to a move's target.
        settle_timeout: How long [s] after a move's planned end the joint may take to
            reach the target before the session is aborted.
        brake_time: Length [s] of the smooth stop on pause or stop.
        pause_timeout: A session paused longer than this [s] is aborted (an unattended
            session must end, with a report, rather than wait forever).
        auto_resume_limit: How many glitches (motion permission lost for less than
            ``glitch_time`` [s]) the session resumes from by itself, once permission has
            held for ``resume_settle`` [s]. 0 disables it; a clinician's pause or a longer
            stop (a latched one lasts until reset) always waits for ``resume``.
    """

    def __init__(
        self,
        protocol,
        joint_names: Sequence[str],
        max_velocity: float,
        target_tolerance: float = 0.05,
        settle_timeout: float = 2.0,
        brake_time: float = 0.4,
        pause_timeout: float = float("inf"),
        auto_resume_limit: int = 0,
        glitch_time: float = 1.0,
        resume_settle: float = 2.0,
    ) -> None:
        self.protocol = protocol
        self.joint_index = list(joint_names).index(protocol.joint)
        self.max_velocity = max_velocity
        self.target_tolerance = target_tolerance
        self.settle_timeout = settle_timeout
        self.brake_time = brake_time
        self.pause_timeout = pause_timeout
        self.auto_resume_limit = auto_resume_limit
        self.glitch_time = glitch_time
        self.resume_settle = resume_settle
        self.auto_resumes = 0
        self._interrupted_at: Optional[float] = None
        self._permitted_again_at: Optional[float] = None
        self._paused_since = 0.0
        self.steps = plan_steps(protocol)
        self.metrics = SessionMetrics(tuple(joint_names))
        self.state = SessionState.IDLE
        self.step_index = 0
        self.repetitions_completed = 0
        self.end_reason = ""
        self.pause_reason = ""
        self.events: list[dict] = []
        self._outbox: list[QuinticSegment] = []
        self._segment: Optional[QuinticSegment] = None
        self._step_started = 0.0
        self._step_duration = 0.0
        self._hold_remaining = 0.0
        self._started_at: Optional[float] = None
        self._ended_at: Optional[float] = None
        self._wall_start: Optional[datetime.datetime] = None
        self._last_target: Optional[float] = None
        self._unnamed_event: Optional[int] = None

    # --- commands -------------------------------------------------------------------

    def start(self, now: float, position: np.ndarray, motion_permitted: bool) -> tuple[bool, str]:
        """Start the exercise at ``now`` [s] from the measured ``position`` [rad]."""
        if self.state is not SessionState.IDLE:
            return False, f"cannot start: session is {self.state.value}"
        if not motion_permitted:
            return False, "cannot start: the safety supervisor does not permit motion (see /diagnostics, safety/reset)"
        self.state = SessionState.RUNNING
        self._started_at = now
        self._wall_start = datetime.datetime.now()
        self._event(now, "session started")
        self._enter_step(now, position)
        return True, "session started"

    def pause(self, now: float, position: np.ndarray, reason: str = "paused by the clinician") -> tuple[bool, str]:
        """Pause at ``now`` [s]: a moving joint comes smoothly to rest.

        A pause asked for while the session is already paused by an interruption turns
        it into the operator's pause: it is never resumed automatically.
        """
        if self.state is SessionState.PAUSED:
            was = self.pause_reason
            if self._interrupted_at is None and was.startswith(reason):
                return True, f"session already paused ({was}); it waits for session/resume"
            self._interrupted_at = None
            self.pause_reason = f"{reason} (while paused: {was})"
            self._event(now, self.pause_reason)
            return True, f"session paused; it was already paused ({was}) and now waits for session/resume"
        if self.state is not SessionState.RUNNING:
            return False, f"cannot pause: session is {self.state.value}"
        self._interrupt(now)
        self._enter_pause(now, reason)
        self._interrupted_at = None
        return True, "session paused"

    def resume(self, now: float, position: np.ndarray, motion_permitted: bool) -> tuple[bool, str]:
        """Resume a paused exercise at ``now`` [s] from the measured ``position`` [rad]."""
        if self.state is not SessionState.PAUSED:
            return False, f"cannot resume: session is {self.state.value}"
        if not motion_permitted:
            return False, "cannot resume: the safety supervisor does not permit motion (call safety/reset once the cause is gone)"
        self.state = SessionState.RUNNING
        self.pause_reason = ""
        self._event(now, "session resumed")
        step = self.steps[self.step_index]
        if step.moves:
            self._last_target = None  # the joint was stopped somewhere along the move
            self._enter_step(now, position)
        else:
            self._step_started = now
            self._step_duration = self._hold_remaining
        return True, "session resumed"

    def stop(self, now: float, reason: str = "stopped by the clinician") -> tuple[bool, str]:
        """End the session at ``now`` [s]; a moving joint comes smoothly to rest."""
        if self.state.finished or self.state is SessionState.IDLE:
            if self.state is SessionState.IDLE:
                self._finish(now, SessionState.STOPPED, reason)
                return True, "session stopped before it started"
            return False, f"cannot stop: session is {self.state.value}"
        if self.state is SessionState.RUNNING:
            self._interrupt(now)
        self._finish(now, SessionState.STOPPED, reason)
        return True, "session stopped"

    def abort(self, now: float, reason: str) -> None:
        """End the session at ``now`` [s] because something went wrong."""
        if not self.state.finished:
            if self.state is SessionState.RUNNING:
                self._interrupt(now)
            self._finish(now, SessionState.ABORTED, reason)

    # --- measurements -----------------------------------------------------------------

    def update(
        self,
        now: float,
        position: np.ndarray,
        force_norm: Optional[float],
        motion_permitted: bool,
        stop_cause: str = "",
    ) -> None:
        """Advance the exercise at ``now`` [s] with the latest measurements.

        Args:
            now: Clock time [s].
            position: Measured joint positions [rad].
            force_norm: Cuff force magnitude [N], or None if unknown.
            motion_permitted: The safety heartbeat's verdict.
            stop_cause: Why motion is not permitted, in the words of the part that stopped
                it (e.g. "joint_commands stale (96 ms old)", "stop latched: e-stop requested"),
                recorded with the interruption.
        """
        if self.state in (SessionState.RUNNING, SessionState.PAUSED):
            if self.step_index > 0:  # the approach to the start angle is not exercise
                self.metrics.add_state(position)
            if force_norm is not None:
                self.metrics.add_force(force_norm)
        if self.state is SessionState.PAUSED and now - self._paused_since > self.pause_timeout:
            self._finish(now, SessionState.ABORTED,
                         f"paused for more than {self.pause_timeout:g} s ({self.pause_reason})")
            return
        if self.state is SessionState.PAUSED:
            if self._interrupted_at is not None:
                # A resumed step starts over from the next tick: going on here would run a
                # passive step's end check on the step just re-entered (an interactive
                # exercise then skipped the interrupted movement and lost its record).
                self._maybe_auto_resume(now, position, motion_permitted)
            return
        if self.state is not SessionState.RUNNING:
            return
        if not motion_permitted:
            # The controller has already dropped the motion and the drives hold: send nothing.
            self._interrupt(now, smooth_stop=False)
            self._enter_pause(now, f"motion interrupted: {stop_cause or UNNAMED_CAUSE}")
            self._unnamed_event = None if stop_cause else len(self.events) - 1
            self._interrupted_at, self._permitted_again_at = now, None
            return
        step = self.steps[self.step_index]
        elapsed = now - self._step_started
        if elapsed < self._step_duration:
            return
        if step.moves:
            error = abs(float(position[self.joint_index]) - step.target)
            if error > self.target_tolerance:
                if elapsed > self._step_duration + self.settle_timeout:
                    self.abort(
                        now,
                        f"{self.protocol.joint} did not reach {step.target:.3f} rad "
                        f"({step.label}); it is at {float(position[self.joint_index]):.3f} rad",
                    )
                return
            self._last_target = step.target
            if step.completes_repetition:
                self.repetitions_completed += 1
                self._event(now, f"repetition {self.repetitions_completed} completed")
        self.step_index += 1
        if self.step_index >= len(self.steps):
            self._finish(now, SessionState.COMPLETED, f"all {self.protocol.repetitions} repetitions done")
            return
        self._enter_step(now, position)

    @property
    def cause_pending(self) -> bool:
        """True while the latest interruption was recorded without its cause."""
        return self._unnamed_event is not None

    def name_interruption(self, cause: str) -> None:
        """Record ``cause`` for the latest interruption, which was recorded as
        "motion not permitted" because its cause arrived after the stop itself."""
        if self._unnamed_event is None:
            return
        text = f"motion interrupted: {cause}"
        self.events[self._unnamed_event]["event"] = text
        if self.pause_reason.endswith(UNNAMED_CAUSE):
            self.pause_reason = text
        self._unnamed_event = None

    # --- outputs ----------------------------------------------------------------------

    def take_motion(self) -> Optional[QuinticSegment]:
        """Return the next motion of the exercised joint to send, once (None if none)."""
        return self._outbox.pop(0) if self._outbox else None

    @property
    def current_step(self) -> str:
        """Label of the step under way, or the state when there is none."""
        if self.state in (SessionState.RUNNING, SessionState.PAUSED):
            return self.steps[self.step_index].label
        return self.state.value

    def progress(self) -> float:
        """Fraction of the planned steps done, 0..1."""
        if self.state is SessionState.COMPLETED:
            return 1.0
        return self.step_index / len(self.steps)

    def current_repetition(self) -> int:
        """Number (1..N) of the repetition under way, as in the step's label; 0 before the first one.

        Once the session has ended: the number of repetitions completed.
        """
        if self.state not in (SessionState.RUNNING, SessionState.PAUSED):
            return self.repetitions_completed
        # Each repetition opens with its move out (the approach, step 0, is not one).
        return sum(1 for s in self.steps[1:self.step_index + 1] if s.moves and not s.completes_repetition)

    def current_target(self) -> Optional[float]:
        """Target position [rad] of the exercised joint in the step under way (a hold: where it holds).

        None before the start; once ended, the last target reached (None if none was).
        """
        if self.state in (SessionState.RUNNING, SessionState.PAUSED):
            return self.steps[self.step_index].target
        return self._last_target

    def elapsed_time(self, now: float) -> float:
        """Time [s] since the start at clock time ``now`` [s], pauses included; 0 before the start."""
        if self._started_at is None:
            return 0.0
        end = self._ended_at if self._ended_at is not None else now
        return max(end - self._started_at, 0.0)

    def remaining_time(self, now: float) -> float:
        """Estimated time [s] to the end of the exercise at clock time ``now`` [s], from the planned steps.

        The rest of the step under way plus the planned durations of the steps after it;
        a pause freezes the estimate (no pause time is predicted). Before the start the
        whole plan, once ended 0.
        """
        if self.state.finished:
            return 0.0
        if self.state is SessionState.IDLE:
            return sum(step.duration for step in self.steps)
        step = self.steps[self.step_index]
        if self.state is SessionState.PAUSED and not step.moves:
            current = self._hold_remaining
        else:
            # A paused move restarts from where the arm stopped at the protocol's pace: about what was left.
            clock = self._paused_since if self.state is SessionState.PAUSED else now
            current = max(self._step_duration - (clock - self._step_started), 0.0)
        return current + sum(s.duration for s in self.steps[self.step_index + 1:])

    def outcome(self) -> SessionOutcome:
        """Return how the session ended (call once it has finished)."""
        duration = 0.0
        if self._started_at is not None and self._ended_at is not None:
            duration = self._ended_at - self._started_at
        return SessionOutcome(
            ended=self.state.value,
            end_reason=self.end_reason,
            repetitions_completed=self.repetitions_completed,
            repetitions_planned=self.protocol.repetitions,
            duration=duration,
            started_at=self._wall_start,
            ended_at=datetime.datetime.now(),
            events=list(self.events),
        )

    # --- internals --------------------------------------------------------------------

    def _event(self, now: float, text: str) -> None:
        since = 0.0 if self._started_at is None else now - self._started_at
        self.events.append({"time": round(since, 3), "event": text})

    def _enter_step(self, now: float, position: np.ndarray) -> None:
        step = self.steps[self.step_index]
        self._step_started = now
        if step.starts_repetition and self._last_target is not None:
            # Not on a resume (then _last_target is None): the repetition started before.
            self._event(now, f"repetition {self.repetitions_completed + 1} started")
        if not step.moves:
            self._step_duration = step.duration
            self._segment = None
            return
        measured = float(position[self.joint_index])
        start = self._last_target if self._last_target is not None else measured
        full_distance = abs(self.protocol.end_angle - self.protocol.start_angle)
        distance = abs(step.target - start)
        # A partial move (approach, resume) keeps the protocol's pace and the speed cap.
        duration = step.duration * distance / full_distance if full_distance > 0 else step.duration
        duration = max(duration, minimum_jerk_duration(distance, self.max_velocity), 0.5)
        self._step_duration = duration
        self._segment = QuinticSegment.minimum_jerk([start], [step.target], duration)
        self._outbox.append(self._segment)

    def _interrupt(self, now: float, smooth_stop: bool = True) -> None:
        step = self.steps[self.step_index] if self.step_index < len(self.steps) else None
        if step is not None and step.moves and self._segment is not None and smooth_stop:
            position, velocity, _ = self._segment.sample(now - self._step_started)
            self._outbox.append(QuinticSegment.smooth_stop(position, velocity, self.brake_time))
        elif step is not None and not step.moves:
            self._hold_remaining = max(self._step_duration - (now - self._step_started), 0.0)
        self._segment = None

    def _maybe_auto_resume(self, now: float, position: np.ndarray, motion_permitted: bool) -> None:
        # A glitch (permission back within glitch_time, e.g. a late heartbeat) is not a
        # safety stop: a latched stop keeps permission away until a clinician's reset,
        # which takes longer. After a glitch the session resumes once permission has held
        # for resume_settle, at most auto_resume_limit times.
        if not motion_permitted:
            self._permitted_again_at = None
            return
        if self._permitted_again_at is None:
            self._permitted_again_at = now
            if now - self._interrupted_at > self.glitch_time or self.auto_resumes >= self.auto_resume_limit:
                self._interrupted_at = None  # a real stop, or too many glitches: wait for a clinician
            return
        if now - self._permitted_again_at >= self.resume_settle:
            gap = self._permitted_again_at - self._interrupted_at
            self._interrupted_at = None
            self.auto_resumes += 1
            self.resume(now, position, True)
            self._event(now, f"resumed automatically after a {gap * 1e3:.0f} ms interruption")

    def _enter_pause(self, now: float, reason: str) -> None:
        self.state = SessionState.PAUSED
        self.pause_reason = reason
        self._paused_since = now
        self._event(now, reason)

    def _finish(self, now: float, state: SessionState, reason: str) -> None:
        self.state = state
        self.end_reason = reason
        self._ended_at = now
        self._event(now, f"session {state.value}: {reason}")
