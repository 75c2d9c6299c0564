"""Unit tests of what session/status reports about progress (rehab_robot.session.runner):
the repetition under way, the target, elapsed and remaining time.

The arm is the perfect tracker of test_session_runner: the measured position is the planned one.
"""

import pytest

from rehab_robot.session.runner import SessionRunner, SessionState
from test_session_runner import JOINTS, PerfectArm, protocol, run_until, started_session


def planned_total(runner) -> float:
    return sum(step.duration for step in runner.steps)


def test_idle_session_reports_the_whole_plan():
    """Before the start: nothing elapsed, the whole plan remains, no repetition, no target."""
    runner = SessionRunner(protocol(), JOINTS, max_velocity=2.0)
    # approach 1.0 + per repetition: out 1.0, hold 0.2, back 1.0; one hold 0.2 between the two repetitions
    assert runner.remaining_time(5.0) == pytest.approx(1.0 + 2 * 2.2 + 0.2)
    assert runner.elapsed_time(5.0) == 0.0
    assert runner.current_repetition() == 0
    assert runner.current_target() is None


def test_remaining_time_counts_down_with_the_clock_and_reaches_zero():
    """While running, elapsed + remaining stays near the plan's length; at the end 0 remains."""
    runner, arm = started_session()
    checks = []
    t = 0.0
    while not runner.state.finished and t < 30.0:
        arm.step(t)
        if runner.state is SessionState.RUNNING:
            checks.append((t, runner.elapsed_time(t), runner.remaining_time(t)))
        t += 0.01
    assert runner.state is SessionState.COMPLETED
    assert runner.remaining_time(t) == 0.0
    remaining = [r for _, _, r in checks]
    assert all(b <= a + 1e-9 for a, b in zip(remaining, remaining[1:])), "remaining time never grows"
    for now, elapsed, left in checks:
        assert elapsed == pytest.approx(now)
        # The approach is shorter than planned (the arm starts near the start angle); ticks add up to 10 ms a step.
        assert elapsed + left == pytest.approx(planned_total(runner), abs=1.0)
    assert remaining[0] > 0.8 * planned_total(runner)


def test_elapsed_time_stops_at_the_end():
    """Once the session has ended, elapsed time is its duration, whatever the clock says."""
    runner, arm = started_session()
    t = run_until(arm, 0.0, 1.5)
    runner.stop(t)
    assert runner.elapsed_time(t + 100.0) == pytest.approx(t)
    assert runner.remaining_time(t + 100.0) == 0.0


def test_pause_freezes_the_remaining_time():
    """A pause mid-move: the estimate stays where it was while the session waits."""
    runner, arm = started_session()
    t = 0.0
    while runner.current_step != "repetition 1: to end angle":
        arm.step(t)
        t += 0.01
    t = run_until(arm, t, t + 0.4)  # halfway out
    assert runner.current_step == "repetition 1: to end angle"
    before = runner.remaining_time(t)
    assert runner.pause(t, arm.position)[0]
    assert runner.remaining_time(t + 20.0) == pytest.approx(before, abs=0.02)
    assert runner.elapsed_time(t + 20.0) == pytest.approx(t + 20.0)


def test_pause_during_a_hold_keeps_what_is_left_of_the_hold():
    """A pause in a hold: the rest of the hold plus the later steps remain."""
    runner, arm = started_session()
    t = 0.0
    while runner.current_step != "repetition 1: hold at end angle":
        arm.step(t)
        t += 0.01
    t = run_until(arm, t, t + 0.05)
    assert runner.pause(t, arm.position)[0]
    later = sum(s.duration for s in runner.steps[runner.step_index + 1:])
    left = runner.remaining_time(t + 5.0) - later
    assert 0.1 < left < 0.2


def test_repetition_and_target_follow_the_plan():
    """The repetition under way is k of N from the first move out; the target is the step's end position."""
    runner, arm = started_session()
    seen = []
    t = 0.0
    while not runner.state.finished and t < 30.0:
        arm.step(t)
        if runner.state is SessionState.RUNNING:
            seen.append((runner.current_step, runner.current_repetition(), runner.current_target()))
        t += 0.01
    steps = dict((label, (rep, target)) for label, rep, target in seen)
    assert steps["approach start position"] == (0, 0.4)
    assert steps["repetition 1: to end angle"] == (1, 1.4)
    assert steps["repetition 1: back to start angle"] == (1, 0.4)
    assert steps["repetition 2: hold at end angle"] == (2, 1.4)
    assert runner.current_repetition() == 2
    assert runner.current_target() == 0.4, "ended at the start angle"


def test_stopped_session_reports_the_repetitions_completed():
    """A session stopped in its second repetition reports 1 completed as its repetition."""
    runner, arm = started_session()
    t = 0.0
    while runner.current_step != "repetition 2: to end angle":
        arm.step(t)
        t += 0.01
    assert runner.current_repetition() == 2
    runner.stop(t)
    assert runner.current_repetition() == 1
    assert runner.current_target() == 0.4


def test_hold_between_repetitions_belongs_to_the_one_just_completed():
    """The hold at the start angle after repetition 1 still reports repetition 1, as its label says."""
    runner, arm = started_session()
    t = 0.0
    while runner.current_step != "repetition 1: hold at start angle":
        arm.step(t)
        t += 0.01
    assert runner.current_repetition() == 1
    assert runner.repetitions_completed == 1
