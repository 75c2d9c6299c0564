"""Unit tests of rehab_robot.nodes.conversions (ROS messages <-> arrays, no DDS)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rehab_robot.control.trajectory import QuinticSegment, SampledTrajectory
from rehab_robot.nodes.conversions import duration_msg, sampled_trajectory, trajectory_msg


@given(st.floats(0.0, 1e5))
def test_duration_msg_keeps_the_time(seconds):
    """A Duration holds the time to the nanosecond, with nanosec always below one second."""
    d = duration_msg(seconds)
    assert 0 <= d.nanosec < 1_000_000_000
    assert abs(d.sec + d.nanosec * 1e-9 - seconds) <= 1e-9 + seconds * 1e-15


def test_duration_just_below_a_whole_second_is_not_zero():
    """0.9999999999 s rounds up to 1 s, not down to 0 s (it once broke start-up trajectories)."""
    d = duration_msg(0.9999999999)
    assert (d.sec, d.nanosec) == (1, 0)


@settings(max_examples=50)
@given(st.floats(-2.0, 2.0), st.floats(-2.0, 2.0), st.floats(0.5, 8.0), st.sampled_from([0.01, 0.02, 0.05]))
def test_trajectory_survives_the_message_round_trip(start, end, duration, step):
    """Every sampled segment the session sends is accepted back with the same waypoints."""
    segment = QuinticSegment.minimum_jerk([start, end], [end, start], duration)
    trajectory = SampledTrajectory.from_segment(segment, step)
    back = sampled_trajectory(trajectory_msg(["a", "b"], trajectory))
    np.testing.assert_allclose(back.times, trajectory.times, atol=1e-9)
    np.testing.assert_allclose(back.positions, trajectory.positions)
