"""Unit tests of rehab_robot.control.trajectory."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rehab_robot.control.trajectory import (
    MIN_JERK_PEAK_SPEED_RATIO,
    QuinticSegment,
    SampledTrajectory,
    minimum_jerk_duration,
)

angles = st.floats(-2.5, 2.5)
durations = st.floats(0.2, 10.0)


@given(angles, angles, durations)
def test_minimum_jerk_starts_and_ends_at_rest(start, end, duration):
    """A minimum-jerk move starts and ends at the given angles with zero velocity and acceleration."""
    segment = QuinticSegment.minimum_jerk([start], [end], duration)
    q0, v0, a0 = segment.sample(0.0)
    q1, v1, a1 = segment.sample(duration)
    assert q0[0] == pytest.approx(start, abs=1e-9)
    assert q1[0] == pytest.approx(end, abs=1e-9)
    for value in (v0, a0, v1, a1):
        assert value[0] == pytest.approx(0.0, abs=1e-8)


@given(angles, angles, durations)
def test_minimum_jerk_peak_speed_is_at_midpoint(start, end, duration):
    """The peak speed is 1.875 times the mean speed, reached half way."""
    segment = QuinticSegment.minimum_jerk([start], [end], duration)
    speeds = [abs(segment.sample(t)[1][0]) for t in np.linspace(0, duration, 401)]
    expected = MIN_JERK_PEAK_SPEED_RATIO * abs(end - start) / duration
    assert max(speeds) == pytest.approx(expected, rel=1e-3, abs=1e-9)
    assert abs(segment.sample(duration / 2)[1][0]) == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_minimum_jerk_duration_inverts_peak_speed():
    """minimum_jerk_duration gives the duration whose peak speed is the requested one."""
    duration = minimum_jerk_duration(1.2, 0.9)
    segment = QuinticSegment.minimum_jerk([0.0], [1.2], duration)
    assert abs(segment.sample(duration / 2)[1][0]) == pytest.approx(0.9)


@given(angles, st.floats(-2.0, 2.0), st.floats(0.1, 1.0))
def test_smooth_stop_reaches_rest_without_reversing(position, velocity, duration):
    """A smooth stop keeps moving the same way and ends at rest half a 'velocity*duration' further."""
    segment = QuinticSegment.smooth_stop([position], [velocity], duration)
    q0, v0, _ = segment.sample(0.0)
    assert v0[0] == pytest.approx(velocity)
    q1, v1, a1 = segment.sample(duration)
    assert v1[0] == pytest.approx(0.0, abs=1e-8) and a1[0] == pytest.approx(0.0, abs=1e-7)
    assert q1[0] == pytest.approx(position + velocity * duration / 2)
    for t in np.linspace(0, duration, 50):
        assert segment.sample(t)[1][0] * velocity >= -1e-9


def test_quintic_refuses_non_positive_duration():
    """A segment of zero or negative length is refused with the value in the message."""
    with pytest.raises(ValueError, match="duration"):
        QuinticSegment.minimum_jerk([0.0], [1.0], 0.0)


@settings(max_examples=30)
@given(angles, angles, st.floats(0.5, 5.0), st.floats(0.0, 6.0))
def test_sampled_trajectory_reproduces_its_segment(start, end, duration, t):
    """Sampling a segment into waypoints and interpolating them gives the segment back."""
    segment = QuinticSegment.minimum_jerk([start, -start], [end, -end], duration)
    trajectory = SampledTrajectory.from_segment(segment, 0.02)
    q, v, _ = trajectory.sample(t)
    q_ref, v_ref, _ = segment.sample(t)
    if t >= duration:
        v_ref = np.zeros(2)
    np.testing.assert_allclose(q, q_ref, atol=1e-9)
    np.testing.assert_allclose(v, v_ref, atol=1e-7)


def test_sampled_trajectory_holds_last_point_at_rest():
    """After its last waypoint a trajectory holds the final position with zero velocity."""
    trajectory = SampledTrajectory(
        np.array([0.0, 1.0]), np.array([[0.0], [1.0]]), np.array([[0.0], [0.5]]), np.zeros((2, 1))
    )
    q, v, a = trajectory.sample(5.0)
    assert q[0] == 1.0 and v[0] == 0.0 and a[0] == 0.0
