"""Tests of the movement-quality metrics against analytic cases, their invariances,
their monotonic behaviour and their refusal of bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from rehab_robot.metrics import (
    isometric_peak_torque,
    ldlj,
    max_path_deviation,
    mean_interaction_force,
    movement_bounds,
    movement_time,
    path_length_ratio,
    peak_interaction_force,
    peak_speed,
    range_of_motion,
    resample,
    sparc,
    sustained_torque,
    work_share,
)

#: LDLJ-V of any minimum-jerk reach, from the definition: jerk integral 720 A²/T⁵,
#: v_peak = 1.875 A/T, so T³/v_peak² ∫ jerk² dt = 720 / 1.875² = 204.8.
LDLJ_MIN_JERK = -math.log(720.0 / 1.875**2)


def min_jerk_speed(t, amplitude=1.0, duration=1.0, start=0.0):
    """Speed [unit/s] of a minimum-jerk move of ``amplitude`` in ``duration`` from ``start``."""
    tau = np.clip((np.asarray(t) - start) / duration, 0.0, 1.0)
    return amplitude / duration * 30.0 * tau**2 * (1.0 - tau) ** 2


def grid(duration, rate=1000.0):
    return np.arange(int(round(duration * rate)) + 1) / rate


def continuous_sparc_min_jerk(threshold=0.05, fc=10.0):
    """SPARC of a minimum-jerk speed from its Fourier transform computed by direct
    numerical integration (no FFT, no zero padding): the definition, independently."""
    tau = np.linspace(0.0, 1.0, 801)
    v = 30.0 * tau**2 * (1.0 - tau) ** 2
    freq = np.linspace(0.0, fc, 5001)
    spectrum = np.abs(np.trapezoid(v[None, :] * np.exp(-2j * np.pi * freq[:, None] * tau[None, :]), tau, axis=1))
    spectrum /= spectrum[0]
    last = np.flatnonzero(spectrum >= threshold)[-1]
    f, m = freq[: last + 1], spectrum[: last + 1]
    return -np.sum(np.sqrt((np.diff(f) / (f[-1] - f[0])) ** 2 + np.diff(m) ** 2))


def submovements(count, rate=1000.0, duration=0.6, spacing=0.4):
    """Speed of ``count`` overlapping minimum-jerk submovements, ``spacing`` s apart."""
    t = grid(spacing * (count - 1) + duration + 0.2, rate)
    speed = sum(min_jerk_speed(t, 1.0, duration, 0.1 + k * spacing) for k in range(count))
    return t, speed


# -- SPARC -----------------------------------------------------------------------------


def test_sparc_of_a_minimum_jerk_reach_matches_the_definition():
    """SPARC of a minimum-jerk speed profile equals the continuous-spectrum value of
    the definition (about -1.41) within 0.01."""
    expected = continuous_sparc_min_jerk()
    assert expected == pytest.approx(-1.41, abs=0.01)
    t = grid(1.0)
    assert sparc(t, min_jerk_speed(t)) == pytest.approx(expected, abs=0.01)


def test_sparc_reproduces_the_reference_implementation_example():
    """The example of Balasubramanian's published code: a Gaussian speed
    exp(-5 t²), t in [-1, 1) at 100 Hz, gives -1.41403."""
    t = np.arange(-1.0, 1.0, 0.01)
    assert sparc(t - t[0], np.exp(-5.0 * t**2)) == pytest.approx(-1.41403, abs=5e-6)


@pytest.mark.parametrize("amplitude", [0.01, 1.0, 250.0])
def test_sparc_does_not_depend_on_amplitude(amplitude):
    """Scaling the speed changes nothing (the spectrum is normalised)."""
    t = grid(1.0)
    assert sparc(t, amplitude * min_jerk_speed(t)) == pytest.approx(sparc(t, min_jerk_speed(t)), abs=1e-12)


@pytest.mark.parametrize("duration", [0.3, 0.7, 2.0, 5.0])
def test_sparc_does_not_depend_on_duration(duration):
    """Minimum-jerk reaches of any duration (with rest around them) give the same SPARC."""
    t = grid(duration + 0.4)
    reference_t = grid(1.4)
    reference = sparc(reference_t, min_jerk_speed(reference_t, 1.0, 1.0, 0.2))
    assert sparc(t, min_jerk_speed(t, 1.0, duration, 0.2)) == pytest.approx(reference, abs=0.01)


def test_more_submovements_are_less_smooth():
    """SPARC and LDLJ both fall strictly with each added submovement."""
    values = []
    for count in range(1, 6):
        t, speed = submovements(count)
        values.append((sparc(t, speed), ldlj(t, speed)))
    for (s1, l1), (s2, l2) in zip(values, values[1:]):
        assert s2 < s1
        assert l2 < l1


def test_sparc_of_a_velocity_vector_uses_its_norm():
    """A straight reach in 3-D gives the SPARC of its speed, whatever its direction."""
    t = grid(1.0)
    speed = min_jerk_speed(t)
    direction = np.array([0.6, -0.0, 0.8])
    assert sparc(t, speed[:, None] * direction) == pytest.approx(sparc(t, speed), abs=1e-12)


# -- LDLJ ------------------------------------------------------------------------------


@pytest.mark.parametrize("amplitude, duration", [(1.0, 1.0), (0.05, 2.0), (30.0, 0.8)])
def test_ldlj_of_a_minimum_jerk_reach_is_the_analytic_value(amplitude, duration):
    """LDLJ-V of a minimum-jerk reach is -ln(204.8) = -5.322 whatever its amplitude
    and duration (sampled at 1 kHz: within 0.01)."""
    t = grid(duration)
    assert ldlj(t, min_jerk_speed(t, amplitude, duration)) == pytest.approx(LDLJ_MIN_JERK, abs=0.01)


def test_ldlj_converges_to_the_analytic_value_with_the_sampling_rate():
    """The discretisation error shrinks as the sampling rate grows."""
    errors = []
    for rate in (100.0, 1000.0, 10000.0):
        t = grid(1.0, rate)
        errors.append(abs(ldlj(t, min_jerk_speed(t)) - LDLJ_MIN_JERK))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-3


def test_ldlj_takes_vector_velocity():
    """A straight 2-D minimum-jerk reach has the same LDLJ as its scalar speed; a
    curved one with a second, delayed component is less smooth."""
    t = grid(1.5)
    speed = min_jerk_speed(t, 1.0, 1.0, 0.2)
    straight = np.column_stack([0.6 * speed, 0.8 * speed])
    assert ldlj(t, straight) == pytest.approx(ldlj(t, speed), abs=1e-9)
    curved = np.column_stack([speed, min_jerk_speed(t, 0.5, 0.6, 0.6)])
    assert ldlj(t, curved) < ldlj(t, speed)


# -- bad input for the smoothness metrics -----------------------------------------------


@pytest.mark.parametrize("metric", [sparc, ldlj])
def test_smoothness_refuses_bad_input_naming_the_problem(metric):
    """NaN/inf, too few samples, non-uniform or non-increasing stamps, mismatched
    lengths and no movement each raise a ValueError that names the problem."""
    t = grid(1.0)
    speed = min_jerk_speed(t)
    with_nan = speed.copy()
    with_nan[10] = np.nan
    with pytest.raises(ValueError, match=r"speed|velocity.*NaN.*sample 10"):
        metric(t, with_nan)
    with pytest.raises(ValueError, match="too short"):
        metric(t[:4], speed[:4])
    jitter = t.copy()
    jitter[500:] += 0.0005
    with pytest.raises(ValueError, match="non-uniform sampling"):
        metric(jitter, speed)
    backwards = t.copy()
    backwards[3] = backwards[2]
    with pytest.raises(ValueError, match="strictly increasing"):
        metric(backwards, speed)
    with pytest.raises(ValueError, match="samples but the time stamps have"):
        metric(t, speed[:-1])
    with pytest.raises(ValueError, match="no movement"):
        metric(t, np.zeros_like(t))
    with pytest.raises(ValueError, match="NaN"):
        metric(np.r_[t[:-1], np.inf], speed)


def test_sparc_refuses_bad_parameters_and_slow_sampling():
    """fc, the amplitude threshold and the padding are checked; fs < 2 fc is refused."""
    t = grid(1.0)
    speed = min_jerk_speed(t)
    for kwargs, problem in (({"fc": 0.0}, "fc"), ({"amplitude_threshold": 1.5}, "amplitude_threshold"),
                            ({"padding": 2.5}, "padding"), ({"fc": float("nan")}, "fc")):
        with pytest.raises(ValueError, match=problem):
            sparc(t, speed, **kwargs)
    slow = grid(1.0, 15.0)
    with pytest.raises(ValueError, match="too low for fc"):
        sparc(slow, min_jerk_speed(slow))


# -- resampling ------------------------------------------------------------------------


def test_resampling_makes_jittered_recordings_measurable():
    """A recording with loop jitter is refused, then measured after resample() with a
    value close to the uniform one."""
    rng = np.random.default_rng(0)
    t = np.cumsum(np.full(700, 0.002) + rng.uniform(-0.0003, 0.0003, 700))
    t -= t[0]
    speed = min_jerk_speed(t, 1.0, 1.0, 0.2)
    with pytest.raises(ValueError, match="non-uniform"):
        sparc(t, speed)
    tu, su = resample(t, speed, 500.0)
    assert np.allclose(np.diff(tu), 0.002)
    reference_t = grid(1.4, 500.0)
    reference = min_jerk_speed(reference_t, 1.0, 1.0, 0.2)
    assert sparc(tu, su) == pytest.approx(sparc(reference_t, reference), abs=0.02)
    _, columns = resample(t, np.column_stack([speed, 2 * speed]), 500.0)
    np.testing.assert_allclose(columns[:, 1], 2 * su)
    with pytest.raises(ValueError, match="rate"):
        resample(t, speed, 0.0)


# -- kinematics ---------------------------------------------------------------------------


def test_range_of_motion_per_joint_and_single():
    """Min, max and range per joint for (N, joints), floats for one joint."""
    q = np.array([[0.0, 1.0], [0.5, -0.2], [0.25, 0.3]])
    rom = range_of_motion(q)
    np.testing.assert_array_equal(rom.minimum, [0.0, -0.2])
    np.testing.assert_array_equal(rom.maximum, [0.5, 1.0])
    np.testing.assert_allclose(rom.range, [0.5, 1.2])
    assert range_of_motion(q[:, 0]) == (0.0, 0.5, 0.5)
    with pytest.raises(ValueError, match="NaN"):
        range_of_motion([0.0, np.nan])
    with pytest.raises(ValueError, match="too short"):
        range_of_motion([])


def test_peak_speed_and_movement_time_of_a_minimum_jerk_reach():
    """Peak speed is 1.875 A/T; with a 5 % threshold the movement time of a
    minimum-jerk reach is the time its speed spends above 5 % of the peak,
    solved analytically from 30 τ²(1-τ)² = 0.05 * 1.875."""
    t = grid(2.0)
    speed = min_jerk_speed(t, 0.8, 1.2, 0.3)
    assert peak_speed(speed) == pytest.approx(1.875 * 0.8 / 1.2, rel=1e-5)
    # τ(1-τ) = sqrt(0.05 * 1.875 / 30): the two roots are symmetric about 1/2.
    root = (1.0 - math.sqrt(1.0 - 4.0 * math.sqrt(0.05 * 1.875 / 30.0))) / 2.0
    assert movement_time(t, speed) == pytest.approx(1.2 * (1.0 - 2.0 * root), abs=0.002)
    onset, end = movement_bounds(t, speed)
    assert t[onset] == pytest.approx(0.3 + 1.2 * root, abs=0.001)
    assert t[end] == pytest.approx(1.5 - 1.2 * root, abs=0.001)
    assert movement_time(t, speed, threshold=0.2) < movement_time(t, speed, threshold=0.05)
    with pytest.raises(ValueError, match="threshold"):
        movement_time(t, speed, threshold=5.0)
    with pytest.raises(ValueError, match="no movement"):
        movement_time(t, np.zeros_like(t))
    assert peak_speed(np.array([[3.0, 4.0], [0.0, 1.0]])) == 5.0


def test_path_length_ratio_and_deviation_of_an_arc():
    """A half circle of radius r between two points 2r apart: ratio π/2, maximum
    deviation r from the straight line; the straight line itself: 1 and 0."""
    r = 0.1
    angle = np.linspace(0.0, np.pi, 2001)
    arc = np.column_stack([r * np.cos(angle), r * np.sin(angle), np.zeros_like(angle)])
    assert path_length_ratio(arc) == pytest.approx(math.pi / 2.0, rel=1e-5)
    assert max_path_deviation(arc) == pytest.approx(r, rel=1e-6)
    line = np.column_stack([np.linspace(0, 1, 50), np.linspace(0, 2, 50), np.zeros(50)])
    assert path_length_ratio(line) == pytest.approx(1.0)
    assert max_path_deviation(line) == pytest.approx(0.0, abs=1e-12)


def test_path_metrics_against_a_polyline_reference():
    """Following an L-shaped reference exactly gives ratio 1 and deviation 0; cutting
    the corner along the diagonal gives ratio 1/sqrt(2), and its midpoint lies half
    a leg from both legs."""
    reference = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    along = np.vstack([np.column_stack([np.linspace(0, 1, 11), np.zeros(11)]),
                       np.column_stack([np.ones(10), np.linspace(0.1, 1, 10)])])
    assert path_length_ratio(along, reference) == pytest.approx(1.0)
    assert max_path_deviation(along, reference) == pytest.approx(0.0, abs=1e-12)
    diagonal = np.column_stack([np.linspace(0, 1, 101), np.linspace(0, 1, 101)])
    assert path_length_ratio(diagonal, reference) == pytest.approx(1.0 / math.sqrt(2.0))
    assert max_path_deviation(diagonal, reference) == pytest.approx(0.5)


def test_path_metrics_refuse_bad_input():
    """Mismatched dimensions, a zero-length reference and NaN are refused."""
    path = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="coordinates per point"):
        path_length_ratio(path, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="zero length"):
        path_length_ratio(np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="NaN"):
        max_path_deviation(np.array([[0.0, 0.0], [np.nan, 1.0]]))
    with pytest.raises(ValueError, match="too short"):
        max_path_deviation(np.array([[0.0, 0.0]]))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(-1, 1), st.floats(-1, 1), st.floats(-1, 1)), min_size=2, max_size=30))
def test_path_ratio_is_at_least_one_and_deviation_bounded(points):
    """For any path the ratio to its own chord is >= 1, and no point deviates more
    than half the path length from the chord."""
    path = np.array(points)
    chord = np.linalg.norm(path[-1] - path[0])
    length = np.sum(np.linalg.norm(np.diff(path, axis=0), axis=1))
    if chord < 1e-6:
        return
    assert path_length_ratio(path) >= 1.0 - 1e-12
    assert max_path_deviation(path) <= length / 2.0 + 1e-12


# -- interaction ------------------------------------------------------------------------


def test_interaction_force_peak_and_time_weighted_mean():
    """Peak and mean of |F| from forces or wrenches; the mean weighs samples by time."""
    t = np.array([0.0, 1.0, 2.0, 4.0])
    force = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 10.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert peak_interaction_force(force) == 10.0
    wrench = np.column_stack([force, np.full((4, 3), 100.0)])  # torques are ignored
    assert peak_interaction_force(wrench) == 10.0
    # Trapezoids: (5+10)/2*1 + (10+0)/2*1 + 0 = 12.5 over 4 s.
    assert mean_interaction_force(t, force) == pytest.approx(12.5 / 4.0)
    assert mean_interaction_force(t, wrench) == pytest.approx(12.5 / 4.0)
    with pytest.raises(ValueError, match="columns"):
        peak_interaction_force(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="NaN"):
        mean_interaction_force(t, np.r_[force[:3], [[np.nan, 0, 0]]])


def test_work_share_of_robot_and_patient():
    """One joint at 1 rad/s for 2 s: a robot torque of 3 N·m and a patient torque of
    1 N·m do 6 J and 2 J: the patient's share is 0.25. A patient who brakes does
    negative work, none of it positive."""
    t = np.linspace(0.0, 2.0, 201)
    v = np.ones_like(t)
    share = work_share(t, v, 3.0 * v, 1.0 * v)
    assert share.robot_positive == pytest.approx(6.0)
    assert share.patient_positive == pytest.approx(2.0)
    assert share.patient_share == pytest.approx(0.25)
    braking = work_share(t, v, 3.0 * v, -1.0 * v)
    assert braking.patient_positive == 0.0
    assert braking.patient_net == pytest.approx(-2.0)
    assert braking.patient_share == 0.0
    # Several joints: powers add up; the patient alone at the second joint.
    v2 = np.column_stack([v, 2.0 * v])
    both = work_share(t, v2, np.column_stack([2.0 * v, 0 * v]), np.column_stack([0 * v, 1.0 * v]))
    assert both.robot_positive == pytest.approx(4.0) and both.patient_positive == pytest.approx(4.0)
    assert both.patient_share == pytest.approx(0.5)
    assert math.isnan(work_share(t, 0 * v, v, v).patient_share)
    with pytest.raises(ValueError, match="must match"):
        work_share(t, v2, v, v)


def test_work_share_with_back_and_forth_motion():
    """An oscillation v = sin(ωt) driven by the robot alone (τ = v): robot positive
    work ∫ sin² = T/2, net the same, patient zero."""
    t = np.linspace(0.0, 2.0, 2001)
    v = np.sin(2.0 * np.pi * t)
    share = work_share(t, v, v, np.zeros_like(v))
    assert share.robot_positive == pytest.approx(1.0, rel=1e-4)
    assert share.patient_share == 0.0


# -- isometric ---------------------------------------------------------------------------


def test_isometric_peak_and_sustained_torque_of_a_triangle():
    """For a triangular contraction of peak P and half-width w the level L is held
    for 2 w (1 - L/P): the sustained torque for hold h is P (1 - h / (2 w))."""
    t = np.linspace(0.0, 10.0, 10001)
    peak, w = 30.0, 4.0
    torque = np.maximum(0.0, peak * (1.0 - np.abs(t - 5.0) / w))
    assert isometric_peak_torque(torque) == pytest.approx(peak)
    for hold in (0.5, 2.0, 6.0):
        assert sustained_torque(t, torque, hold) == pytest.approx(peak * (1.0 - hold / (2.0 * w)), abs=0.01)
    # Held longer than the contraction lasts: nothing but the rest level (0) remains.
    assert sustained_torque(t, torque, 9.0) == pytest.approx(0.0)


def test_sustained_torque_of_a_plateau_with_a_dip_and_direction():
    """A 25 N·m plateau held 3 s, but with a 0.2 s dip to 10 N·m in its middle: a 1 s
    hold finds 25, a 2 s hold only 10. A negative effort is measured the same way."""
    t = np.arange(0.0, 6.0, 0.01)
    torque = np.where((t >= 1.0) & (t <= 4.0), 25.0, 2.0)
    torque[(t >= 2.4) & (t <= 2.6)] = 10.0
    assert sustained_torque(t, torque, 1.0) == pytest.approx(25.0)
    assert sustained_torque(t, torque, 2.0) == pytest.approx(10.0)
    assert sustained_torque(t, -torque, 1.0) == pytest.approx(25.0)
    assert isometric_peak_torque(-torque) == pytest.approx(25.0)
    assert isometric_peak_torque(-torque, direction=1) == pytest.approx(-2.0)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-50, 50), min_size=3, max_size=60), st.floats(0.01, 0.5))
@example(values=[0.0, 1.0, 1.0], hold=0.010000000000000002)  # one step, up to rounding
def test_sustained_torque_matches_brute_force(values, hold):
    """The sliding-window result equals a brute-force search over all intervals."""
    torque = np.array(values)
    t = np.arange(len(torque)) * 0.01
    if t[-1] < hold - 1e-9:
        return
    direction = 1
    brute = max(min(torque[i:j + 1]) for i in range(len(t)) for j in range(i, len(t))
                if t[j] - t[i] >= hold - 1e-9)
    assert sustained_torque(t, torque, hold, direction=direction) == pytest.approx(brute)


def test_isometric_metrics_refuse_bad_input():
    """Too short a recording for the hold, NaN, several joints and a bad direction are refused."""
    t = np.linspace(0.0, 1.0, 11)
    with pytest.raises(ValueError, match="shorter than hold_time"):
        sustained_torque(t, np.ones(11), 2.0)
    with pytest.raises(ValueError, match="hold_time"):
        sustained_torque(t, np.ones(11), -1.0)
    with pytest.raises(ValueError, match="NaN"):
        sustained_torque(t, np.r_[np.ones(10), np.nan], 0.5)
    with pytest.raises(ValueError, match="one joint"):
        isometric_peak_torque(np.ones((5, 2)))
    with pytest.raises(ValueError, match="direction"):
        isometric_peak_torque(np.ones(5), direction=2)


def test_metrics_do_not_import_rclpy():
    """The metrics are plain modules: importing them pulls in no ROS."""
    import subprocess
    import sys

    code = "import sys, rehab_robot.metrics; assert 'rclpy' not in sys.modules, 'rclpy imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
