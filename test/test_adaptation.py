"""Assist-as-needed gain adaptation (Emken et al. 2007 error-based learning)."""

import math

import pytest

from rehab_robot.control.adaptation import adapt_assistance_gain


def test_no_error_decays_geometrically_toward_zero():
    gain = 1.0
    for _ in range(20):
        gain = adapt_assistance_gain(gain, 0.0, 0.8, 2.0)
    assert gain == pytest.approx(0.8 ** 20)


def test_steady_error_settles_at_the_fixed_point():
    gain = 0.0
    for _ in range(200):
        gain = adapt_assistance_gain(gain, 0.05, 0.9, 1.0)
    assert gain == pytest.approx(1.0 * 0.05 / (1 - 0.9), rel=1e-6)


def test_large_error_is_clipped_to_one():
    assert adapt_assistance_gain(0.9, 10.0, 0.9, 1.0) == 1.0


@pytest.mark.parametrize("args, name", [
    ((math.nan, 0.0, 0.9, 1.0), "gain"),
    ((0.5, -0.1, 0.9, 1.0), "tracking_error"),
    ((0.5, math.inf, 0.9, 1.0), "tracking_error"),
    ((0.5, 0.1, 1.5, 1.0), "forgetting_factor"),
    ((0.5, 0.1, 0.0, 1.0), "forgetting_factor"),
    ((0.5, 0.1, 0.9, -1.0), "learning_rate"),
])
def test_bad_arguments_are_named(args, name):
    with pytest.raises(ValueError, match=name):
        adapt_assistance_gain(*args)


# -- the error tolerance (deadband) ---------------------------------------------------------


def test_without_tolerance_a_steady_error_floor_keeps_the_gain_above_zero():
    """Emken's law alone: an error floor the patient cannot remove (e.g. a reaction delay) settles the
    gain at l e / (1 - f), here 0.34, never at zero (what bench_interaction showed before the tolerance)."""
    gain = 1.0
    for _ in range(100):
        gain = adapt_assistance_gain(gain, 0.134, 0.8, 0.5)
    assert gain == pytest.approx(0.5 * 0.134 / 0.2, rel=1e-6)


def test_an_error_within_the_tolerance_counts_as_success_and_the_gain_decays_to_zero():
    """The same error floor inside the tolerance: the forgetting factor alone acts, g[k] = f^k g[0]."""
    gain = 1.0
    for _ in range(20):
        gain = adapt_assistance_gain(gain, 0.134, 0.8, 0.5, error_tolerance=0.15)
    assert gain == pytest.approx(0.8 ** 20)
    assert gain < 0.02


def test_an_error_exactly_at_the_tolerance_adds_nothing():
    assert adapt_assistance_gain(0.5, 0.06, 0.9, 2.0, error_tolerance=0.06) == pytest.approx(0.45)


def test_only_the_error_beyond_the_tolerance_is_learned():
    """e = 0.10, e_tol = 0.06: the gain grows by l (e - e_tol), not by l e."""
    assert adapt_assistance_gain(0.5, 0.10, 0.9, 2.0, error_tolerance=0.06) == pytest.approx(0.45 + 2.0 * 0.04)


def test_steady_error_beyond_the_tolerance_settles_at_the_shifted_fixed_point():
    gain = 0.0
    for _ in range(300):
        gain = adapt_assistance_gain(gain, 0.10, 0.9, 1.0, error_tolerance=0.04)
    assert gain == pytest.approx(1.0 * (0.10 - 0.04) / (1 - 0.9), rel=1e-6)


def test_a_patient_who_lags_again_gets_the_help_back():
    """The deadband does not latch: after decaying, a large error raises the gain again."""
    gain = 1.0
    for _ in range(30):
        gain = adapt_assistance_gain(gain, 0.03, 0.8, 2.0, error_tolerance=0.05)
    assert gain < 0.01
    gain = adapt_assistance_gain(gain, 0.35, 0.8, 2.0, error_tolerance=0.05)
    assert gain == pytest.approx(0.8 * 0.8 ** 30 + 2.0 * 0.30)


def test_the_default_tolerance_is_the_law_of_emken():
    assert adapt_assistance_gain(0.4, 0.02, 0.9, 2.0) == adapt_assistance_gain(0.4, 0.02, 0.9, 2.0, 0.0)
    assert adapt_assistance_gain(0.4, 0.02, 0.9, 2.0) == pytest.approx(0.36 + 0.04)


@pytest.mark.parametrize("tolerance", [math.nan, math.inf, -math.inf, -0.01, "0.1", True, None])
def test_a_bad_tolerance_is_refused_by_name(tolerance):
    with pytest.raises(ValueError, match="error_tolerance"):
        adapt_assistance_gain(0.5, 0.1, 0.9, 1.0, error_tolerance=tolerance)
