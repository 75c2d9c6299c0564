"""Unit tests of rehab_robot.safety.rules."""

import math

import numpy as np
import pytest

from rehab_robot.safety.rules import SafetyLimits, check_state

NAMES = ("a", "b")


def limits(**kwargs):
    return SafetyLimits.for_patient(
        NAMES, [-1.0, 0.0], [1.0, 2.0], [2.0, 2.0], [50.0, 20.0], **kwargs
    )


def test_safe_state_breaks_no_rule():
    """A state inside every limit gives no violation."""
    assert check_state(limits(), np.array([0.0, 1.0]), np.zeros(2), np.zeros(2), np.zeros(3)) == []


@pytest.mark.parametrize(
    "position, velocity, effort, force, rule, joint",
    [
        ([1.2, 1.0], [0, 0], [0, 0], [0, 0, 0], "position", "a"),
        ([0.0, -0.1], [0, 0], [0, 0], [0, 0, 0], "position", "b"),
        ([0.0, 1.0], [0, -2.5], [0, 0], [0, 0, 0], "velocity", "b"),
        ([0.0, 1.0], [0, 0], [46.0, 0], [0, 0, 0], "effort", "a"),
        ([0.0, 1.0], [0, 0], [0, 0], [30.0, 30.0, 0], "force", None),
    ],
)
def test_each_rule_detects_its_violation(position, velocity, effort, force, rule, joint):
    """Each rule reports the joint, value and limit it was broken by."""
    violations = check_state(limits(), np.array(position, float), np.array(velocity, float),
                             np.array(effort, float), np.array(force, float))
    assert [(v.rule, v.joint) for v in violations] == [(rule, joint)]
    assert "beyond limit" in str(violations[0])


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_inf_are_violations(bad):
    """NaN or inf in any reading is a violation, never 'safe'."""
    violations = check_state(limits(), np.array([0.0, bad]), np.zeros(2), np.zeros(2), np.zeros(3))
    assert violations and violations[0].rule == "invalid"
    violations = check_state(limits(), np.zeros(2) + 0.5, np.zeros(2), np.zeros(2), np.array([0, bad, 0]))
    assert violations and violations[0].rule == "invalid"


def test_wrong_joint_count_is_a_violation():
    """A reading with the wrong number of joints is refused."""
    violations = check_state(limits(), np.zeros(3), np.zeros(2), np.zeros(2), None)
    assert violations[0].rule == "invalid"


def test_patient_rom_tightens_position_limits_within_urdf():
    """The patient's ROM (plus margin) replaces the URDF limits, never widening them."""
    lim = limits(rom_limits={"a": (-0.5, 0.5), "b": (-1.0, 3.0)}, position_margin=0.1)
    np.testing.assert_allclose(lim.lower, [-0.6, 0.0])
    np.testing.assert_allclose(lim.upper, [0.6, 2.0])


def test_patient_speed_and_force_limits_apply():
    """The patient's speed cap (with margin) and force limit are used."""
    lim = limits(max_velocity=1.0, velocity_margin=1.25, max_interaction_force=25.0)
    np.testing.assert_allclose(lim.velocity, [1.25, 1.25])
    assert check_state(lim, np.array([0.0, 1.0]), np.array([1.3, 0.0]), np.zeros(2), np.array([0, 0, 26.0]))
