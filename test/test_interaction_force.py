"""Unit tests of rehab_robot.session.interaction (the tared cuff force)."""

import numpy as np
import pytest

from rehab_robot.session.interaction import CuffForceTare


def test_tare_removes_the_resting_load_and_keeps_the_patients_push():
    """The mean at rest is the bias; a later push of 5 N along x reads 5 N, not 5 N plus the forearm."""
    tare = CuffForceTare(window=0.5)
    rng = np.random.default_rng(0)
    for k in range(100):
        tare.add(k * 0.002, [0.0, 0.0, -14.7] + rng.normal(0.0, 0.05, 3))
    assert tare.active_force([0.0, 0.0, -14.7]) == pytest.approx(14.7), "raw norm before the tare"
    bias = tare.tare()
    np.testing.assert_allclose(bias, [0.0, 0.0, -14.7], atol=0.05)
    assert tare.active_force([5.0, 0.0, -14.7]) == pytest.approx(5.0, abs=0.05)
    assert tare.describe()["bias"][2] == pytest.approx(-14.7, abs=0.05)


def test_only_the_last_window_counts_and_bad_readings_are_left_out():
    """Readings older than the window and NaN/inf readings do not enter the bias."""
    tare = CuffForceTare(window=0.1, min_samples=5)
    for k in range(50):
        tare.add(k * 0.01, [100.0, 0.0, 0.0])
    for k in range(50, 70):
        tare.add(k * 0.01, [1.0, 2.0, 3.0])
        tare.add(k * 0.01, [float("nan"), 0.0, 0.0])
    np.testing.assert_allclose(tare.tare(), [1.0, 2.0, 3.0])


def test_tare_refused_without_enough_readings():
    """No F/T stream, no tare: the error says how many readings there were and how many are needed."""
    tare = CuffForceTare(window=0.5, min_samples=10)
    tare.add(0.0, [0.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="1 F/T readings.*at least 10"):
        tare.tare()
    assert tare.describe()["bias"] is None


def test_resting_load_follows_the_sensors_orientation():
    """A weight tared at one pose is not mistaken for force after the sensor turns 60 degrees."""
    def rot_y(angle):
        c, s = np.cos(angle), np.sin(angle)
        return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])

    weight_in_base = np.array([0.0, 0.0, -14.7])
    tare = CuffForceTare(window=0.5)
    r0 = rot_y(0.2)
    for k in range(50):
        tare.add(k * 0.002, r0.T @ weight_in_base)
    tare.tare(r0)
    r1 = rot_y(0.2 + np.pi / 3)
    reading = r1.T @ weight_in_base
    assert tare.active_force(reading, r1) == pytest.approx(0.0, abs=1e-9)
    assert tare.active_force(reading) > 14.0, "without the orientation the turned weight shows as force"
    push = np.array([3.0, 0.0, 0.0])
    assert tare.active_force(reading + push, r1) == pytest.approx(3.0)
