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
