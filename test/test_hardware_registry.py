"""Tests of the hardware backend registry with the built-in ``sim`` backend."""

from __future__ import annotations

import pytest

from rehab_robot.errors import ConfigError, UnknownBackendError
from rehab_robot.hardware import available_backends, backend_class, create_backend
from rehab_robot.hardware.interface import HardwareInterface
from rehab_robot.hardware.sim import SimulatedArm


def test_sim_is_an_available_backend():
    """'sim' is listed and points at SimulatedArm."""
    backends = available_backends()
    assert backends["sim"] == "rehab_robot.hardware.sim:SimulatedArm"
    assert backend_class("sim") is SimulatedArm


def test_create_backend_builds_a_working_sim():
    """create_backend('sim', **options) returns a disabled HardwareInterface that reads."""
    t = [0.0]
    arm = create_backend("sim", clock=lambda: t[0], initial_position=[0.2, 0.1, 0.0, 0.5])
    assert isinstance(arm, HardwareInterface)
    assert not arm.enabled
    t[0] = 0.01
    sample = arm.read()
    assert sample.stamp == pytest.approx(0.01)
    assert sample.position.tolist() == pytest.approx([0.2, 0.1, 0.0, 0.5], abs=1e-4)
    arm.close()


def test_unknown_backend_lists_the_available_ones():
    """An unknown name raises UnknownBackendError whose message lists 'sim'."""
    with pytest.raises(UnknownBackendError, match="sim"):
        create_backend("no_such_drive")


def test_bad_option_value_is_a_config_error():
    """A bad option value (rate below 1 kHz) is a ConfigError naming the option."""
    with pytest.raises(ConfigError, match="rate_hz"):
        create_backend("sim", rate_hz=100.0)


def test_unknown_option_is_a_config_error():
    """An option the backend does not take is reported as a ConfigError, not a TypeError."""
    with pytest.raises(ConfigError, match="hardware_options"):
        create_backend("sim", gain=3.0)
