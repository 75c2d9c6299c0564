"""Unit tests of the exercise session state machine (rehab_robot.session.runner).

The arm is played by a perfect tracker: the measured position is the planned one.
"""

from types import SimpleNamespace

import numpy as np
import pytest

from rehab_robot.session.runner import UNNAMED_CAUSE, SessionRunner, SessionState, plan_steps

JOINTS = ("shoulder_flexion", "shoulder_abduction", "shoulder_rotation", "elbow_flexion")
ELBOW = 3


def protocol(**overrides):
    fields = dict(name="test", type="passive_rom", joint="elbow_flexion", start_angle=0.4, end_angle=1.4,
                  repetitions=2, movement_duration=1.0, hold_duration=0.2)
    fields.update(overrides)
    return SimpleNamespace(**fields)


class PerfectArm:
    """Follows every motion the runner sends exactly."""

    def __init__(self, runner, elbow=0.3):
        self.runner = runner
        self.position = np.array([0.0, 0.1, 0.0, elbow])
        self.segment = None
        self.started = 0.0

    def step(self, now, permitted=True, force=5.0):
        if self.segment is not None:
            self.position[ELBOW] = self.segment.sample(now - self.started)[0][0]
        self.runner.update(now, self.position.copy(), force, permitted)
        motion = self.runner.take_motion()
        if motion is not None:
            self.segment, self.started = motion, now


def started_session(**kwargs):
    """A runner started at t = 0 on a perfect arm that follows its first motion."""
    runner = SessionRunner(protocol(), JOINTS, max_velocity=2.0, **kwargs)
    arm = PerfectArm(runner)
    assert runner.start(0.0, arm.position, True)[0]
    arm.segment, arm.started = runner.take_motion(), 0.0
    return runner, arm


def run_until(arm, t0, t1, dt=0.01, **kwargs):
    t = t0
    while t < t1 and not arm.runner.state.finished:
        arm.step(t, **kwargs)
        t += dt
    return t


def test_plan_has_approach_and_each_repetition():
    """The plan is an approach then, per repetition, out, hold, back (and hold between reps)."""
    steps = plan_steps(protocol())
    assert steps[0].label == "approach start position"
    assert sum(s.completes_repetition for s in steps) == 2
    assert [s.moves for s in steps] == [True, True, False, True, False, True, False, True]


def test_complete_session_counts_repetitions_and_range():
    """A session run to the end completes every repetition and reports the ROM reached."""
    runner, arm = started_session()
    run_until(arm, 0.0, 30.0)
    assert runner.state is SessionState.COMPLETED
    assert runner.repetitions_completed == 2
    rom = runner.metrics.rom_reached()["elbow_flexion"]
    assert rom["min"] == pytest.approx(0.4, abs=1e-3)  # the approach from 0.3 rad does not count
    assert rom["max"] == pytest.approx(1.4, abs=1e-3)
    assert runner.metrics.peak_force == 5.0
    outcome = runner.outcome()
    assert outcome.ended == "completed" and outcome.duration > 2 * 2 * 1.0


def test_start_refused_without_permission():
    """The session does not start while the supervisor does not permit motion."""
    runner = SessionRunner(protocol(), JOINTS, max_velocity=2.0)
    ok, message = runner.start(0.0, np.zeros(4), False)
    assert not ok and "safety" in message and runner.state is SessionState.IDLE
    assert runner.take_motion() is None


def test_pause_brakes_and_resume_continues_from_where_the_arm_is():
    """Pause sends a smooth stop; resume re-plans from the measured position to the same target."""
    runner, arm = started_session()
    t = run_until(arm, 0.0, 1.5)  # into repetition 1, moving out
    ok, _ = runner.pause(t, arm.position)
    assert ok and runner.state is SessionState.PAUSED
    brake = runner.take_motion()
    assert brake is not None
    assert brake.sample(brake.duration)[1][0] == pytest.approx(0.0, abs=1e-9)
    arm.segment, arm.started = brake, t
    t = run_until(arm, t, t + 1.0)
    assert runner.state is SessionState.PAUSED
    ok, _ = runner.resume(t, arm.position, True)
    resume = runner.take_motion()
    assert ok and resume.sample(0.0)[0][0] == pytest.approx(arm.position[ELBOW])
    assert resume.end[0] == pytest.approx(1.4)
    arm.segment, arm.started = resume, t
    run_until(arm, t, t + 30)
    assert runner.state is SessionState.COMPLETED and runner.repetitions_completed == 2


def test_safety_stop_pauses_and_resume_needs_permission():
    """Losing permission pauses the session; resume is refused until permission returns."""
    runner, arm = started_session()
    t = run_until(arm, 0.0, 1.2)
    arm.step(t, permitted=False)
    assert runner.state is SessionState.PAUSED and "motion interrupted" in runner.pause_reason
    assert runner.take_motion() is None, "no motion is sent while motion is not permitted"
    assert not runner.resume(t, arm.position, False)[0]
    assert runner.resume(t, arm.position, True)[0]
    assert any("motion interrupted" in e["event"] for e in runner.events)


def test_interruption_is_recorded_with_its_real_cause():
    """The pause names what stopped motion (a stale signal and its age, or the latched rule)."""
    runner, arm = started_session()
    t = run_until(arm, 0.0, 1.2)
    runner.update(t, arm.position.copy(), 5.0, False, "joint_commands stale (96 ms old)")
    assert runner.pause_reason == "motion interrupted: joint_commands stale (96 ms old)"
    assert runner.events[-1] == {"time": pytest.approx(t, abs=1e-3), "event": runner.pause_reason}


def test_interruption_recorded_before_its_cause_arrives_is_named_later():
    """The cause, arriving after the stop itself, replaces the placeholder in the event and
    the pause reason; a later interruption is not renamed by it."""
    runner, arm = started_session()
    t = run_until(arm, 0.0, 1.2)
    runner.update(t, arm.position.copy(), 5.0, False, "")
    assert runner.cause_pending and runner.pause_reason.endswith(UNNAMED_CAUSE)
    runner.name_interruption("stop latched: hardware fault: read() failed")
    assert not runner.cause_pending
    assert runner.pause_reason == "motion interrupted: stop latched: hardware fault: read() failed"
    assert runner.events[-1]["event"] == runner.pause_reason
    runner.name_interruption("something else")
    assert runner.events[-1]["event"] == runner.pause_reason


def test_operator_pause_during_an_interruption_is_never_resumed_automatically():
    """A pause asked for while a glitch pause waits to resume by itself becomes the operator's pause."""
    runner, arm = started_session(auto_resume_limit=3, glitch_time=1.0, resume_settle=2.0)
    t = run_until(arm, 0.0, 1.2)
    t = run_until(arm, t, t + 0.3, permitted=False)  # a glitch: would resume by itself
    ok, message = runner.pause(t, arm.position)
    assert ok and "waits for session/resume" in message
    assert "paused by the clinician" in runner.pause_reason
    run_until(arm, t, t + 6.0)
    assert runner.state is SessionState.PAUSED and runner.auto_resumes == 0
    assert runner.resume(t + 6.0, arm.position, True)[0]


def test_operator_stop_during_an_interruption_ends_the_session():
    """A stop asked for while the session is interrupted ends it as stopped."""
    runner, arm = started_session(auto_resume_limit=3)
    t = run_until(arm, 0.0, 1.2)
    t = run_until(arm, t, t + 0.3, permitted=False)
    assert runner.stop(t)[0]
    run_until(arm, t, t + 5.0)
    assert runner.state is SessionState.STOPPED


def test_stop_ends_session_with_smooth_stop():
    """Stop ends the session as 'stopped' and sends a smooth stop of the moving joint."""
    runner, arm = started_session()
    t = run_until(arm, 0.0, 1.5)
    ok, _ = runner.stop(t)
    assert ok and runner.state is SessionState.STOPPED
    assert runner.take_motion() is not None
    assert runner.outcome().ended == "stopped"


def test_target_not_reached_aborts():
    """If the joint does not reach a move's target in time, the session aborts and says where it is."""
    runner = SessionRunner(protocol(), JOINTS, max_velocity=2.0, settle_timeout=0.5)
    stuck = np.array([0.0, 0.1, 0.0, 0.3])
    runner.start(0.0, stuck, True)
    t = 0.0
    while not runner.state.finished and t < 10:
        runner.update(t, stuck, 0.0, True)
        t += 0.01
    assert runner.state is SessionState.ABORTED
    assert "did not reach" in runner.end_reason and "0.300" in runner.end_reason


def test_approach_respects_patient_speed_cap():
    """A long approach is slowed to keep the peak speed under the patient's cap."""
    runner = SessionRunner(protocol(start_angle=2.0, end_angle=2.2), JOINTS, max_velocity=0.5)
    runner.start(0.0, np.array([0.0, 0.1, 0.0, 0.0]), True)
    segment = runner.take_motion()
    peak = abs(segment.sample(segment.duration / 2)[1][0])
    assert peak <= 0.5 + 1e-9


def test_long_pause_aborts_the_session():
    """A session left paused beyond the pause timeout ends as aborted, saying why."""
    runner, arm = started_session(pause_timeout=5.0)
    t = run_until(arm, 0.0, 1.0)
    arm.step(t, permitted=False)
    run_until(arm, t, t + 4.0, permitted=False)
    assert runner.state is SessionState.PAUSED
    run_until(arm, t + 4.0, t + 6.0, permitted=False)
    assert runner.state is SessionState.ABORTED and "paused for more than 5 s" in runner.end_reason


def test_glitch_resumes_by_itself_but_a_long_stop_does_not():
    """A short loss of permission resumes after permission has held; a long one waits for resume."""
    runner, arm = started_session(auto_resume_limit=3, glitch_time=1.0, resume_settle=2.0)
    t = run_until(arm, 0.0, 1.2)
    t = run_until(arm, t, t + 0.3, permitted=False)  # 300 ms glitch
    assert runner.state is SessionState.PAUSED
    t = run_until(arm, t, t + 1.9)
    assert runner.state is SessionState.PAUSED, "not before permission has held for 2 s"
    t = run_until(arm, t, t + 0.3)
    assert runner.state is SessionState.RUNNING
    assert any("resumed automatically after a 3" in e["event"] for e in runner.events)
    assert arm.started > t - 0.3, "the resume sent a new motion, which the arm took"
    assert arm.segment.sample(0.0)[0][0] == pytest.approx(arm.position[ELBOW], abs=1e-3)

    t = run_until(arm, t, t + 1.5, permitted=False)  # 1.5 s stop, e.g. an e-stop then a reset
    t = run_until(arm, t, t + 5.0)
    assert runner.state is SessionState.PAUSED, "a long stop needs a clinician's resume"


def test_clinician_pause_never_resumes_by_itself():
    """A pause asked for by the clinician stays paused whatever the heartbeat does."""
    runner, arm = started_session(auto_resume_limit=3)
    t = run_until(arm, 0.0, 1.2)
    runner.pause(t, arm.position)
    t = run_until(arm, t, t + 0.2, permitted=False)
    run_until(arm, t, t + 5.0)
    assert runner.state is SessionState.PAUSED


def test_pausing_a_session_the_clinician_already_paused_changes_nothing():
    """A second pause answers 'already paused' and neither nests the reason nor adds an event."""
    runner, arm = started_session()
    t = run_until(arm, 0.0, 1.2)
    assert runner.pause(t, arm.position.copy())[0]
    reason, events = runner.pause_reason, len(runner.events)
    ok, message = runner.pause(t + 0.5, arm.position.copy())
    assert ok and "already paused" in message
    assert runner.pause_reason == reason and len(runner.events) == events
