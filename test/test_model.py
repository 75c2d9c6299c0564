"""Tests of the URDF and of ArmModel (kinematics, dynamics, limits, errors)."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np
import pinocchio as pin
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rehab_robot import JOINT_NAMES, resources
from rehab_robot.errors import ConfigError
from rehab_robot.model import ArmModel

URDF = resources.default_urdf()

#: Normal adult active range of motion [deg] (AAOS / Norkin & White), as
#: (most negative, most positive) in the URDF's sign conventions.
HUMAN_ROM_DEG = {
    "shoulder_flexion": (-60.0, 180.0),  # extension 60, flexion 180
    "shoulder_abduction": (-30.0, 180.0),  # adduction ~30 across the body
    "shoulder_rotation": (-90.0, 70.0),  # external 90, internal 70
    "elbow_flexion": (0.0, 150.0),
}

FAST = settings(max_examples=25, deadline=None)


@pytest.fixture(scope="module")
def arm() -> ArmModel:
    return ArmModel.from_urdf()


def joint_positions(model: ArmModel = None):
    """Hypothesis strategy: joint positions inside the URDF limits [rad]."""
    model = model or ArmModel.from_urdf()
    return st.tuples(
        *[st.floats(float(lo), float(hi)) for lo, hi in zip(model.lower, model.upper)]
    ).map(np.array)


def velocities(bound: float = 2.0):
    return st.tuples(*[st.floats(-bound, bound)] * 4).map(np.array)


Q = joint_positions()


# -- the URDF ---------------------------------------------------------------------


def test_joint_names_follow_the_chain_order(arm):
    """The URDF's joints are the four of the contract, in chain order."""
    assert arm.joint_names == JOINT_NAMES
    assert arm.nq == 4
    parents = list(arm.pin_model.parents)[1:]
    assert parents == [0, 1, 2, 3]  # a serial chain


def test_limits_lie_inside_human_range_of_motion(arm):
    """Every joint range is non-empty and inside the normal human ROM."""
    for name, (lo, hi) in arm.limits_by_joint().items():
        rom_lo, rom_hi = (math.radians(x) for x in HUMAN_ROM_DEG[name])
        assert rom_lo <= lo < hi <= rom_hi, name


def test_limits_by_joint_matches_the_arrays(arm):
    """limits_by_joint() reports the same numbers as lower/upper."""
    limits = arm.limits_by_joint()
    assert list(limits) == list(arm.joint_names)
    assert [lo for lo, _ in limits.values()] == arm.lower.tolist()
    assert [hi for _, hi in limits.values()] == arm.upper.tolist()


def test_actuator_limits_are_realistic(arm):
    """Efforts [N·m] and speeds [rad/s] are positive and in the actuator class asked for."""
    assert np.all((arm.effort_limit >= 20.0) & (arm.effort_limit <= 100.0))
    assert np.all((arm.velocity_limit >= 1.5) & (arm.velocity_limit <= 3.0))
    assert arm.effort_limit[0] > arm.effort_limit[3]  # the shoulder carries the whole arm
    assert np.all(np.array(arm.pin_model.damping) > 0)
    assert np.all(np.array(arm.pin_model.friction) > 0)


def test_link_inertias_are_physically_valid():
    """Every <inertial> has positive mass and a positive-definite inertia obeying
    the triangle inequality (no principal moment exceeds the sum of the others)."""
    root = ET.parse(URDF).getroot()
    inertials = root.findall("link/inertial")
    assert len(inertials) == 5
    for inertial in inertials:
        mass = float(inertial.find("mass").get("value"))
        assert mass > 0
        i = inertial.find("inertia").attrib
        tensor = np.array([
            [float(i["ixx"]), float(i["ixy"]), float(i["ixz"])],
            [float(i["ixy"]), float(i["iyy"]), float(i["iyz"])],
            [float(i["ixz"]), float(i["iyz"]), float(i["izz"])],
        ])
        moments = np.linalg.eigvalsh(tensor)
        assert np.all(moments > 0)
        assert moments[2] <= moments[0] + moments[1]


def test_link_masses_are_those_of_the_design():
    """Upper arm ~2.5 kg, forearm ~1.5 kg, cuff ~0.3 kg, and a total under 8 kg."""
    root = ET.parse(URDF).getroot()
    masses = {
        link.get("name"): float(link.find("inertial/mass").get("value"))
        for link in root.findall("link")
        if link.find("inertial") is not None
    }
    assert masses["upper_arm_link"] == pytest.approx(2.5, rel=0.2)
    assert masses["forearm_link"] == pytest.approx(1.5, rel=0.2)
    assert masses["cuff_link"] == pytest.approx(0.3, rel=0.2)
    assert sum(masses.values()) < 8.0


def test_ft_sensor_frame_is_fixed_to_the_cuff(arm):
    """ft_sensor_link exists, moves with the cuff, and sits a few cm from it."""
    ft = arm.pin_model.frames[arm.frame_id("ft_sensor_link")]
    cuff = arm.pin_model.frames[arm.frame_id("cuff_link")]
    assert ft.parentJoint == cuff.parentJoint == arm.pin_model.getJointId("elbow_flexion")
    offset = np.linalg.norm(ft.placement.translation - cuff.placement.translation)
    assert 0.0 < offset < 0.1


def test_arm_hangs_straight_down_at_zero(arm):
    """At q = 0 the cuff is straight below the shoulder, near the wrist (0.55 m)."""
    pose = arm.forward_kinematics(np.zeros(4))
    np.testing.assert_allclose(pose[:3, 3], [0.0, 0.0, -0.55], atol=1e-12)
    np.testing.assert_allclose(pose[:3, :3], np.eye(3), atol=1e-12)


@pytest.mark.parametrize(
    "joint, q, axis, sign",
    [
        ("shoulder_flexion", [0.3, 0, 0, 0], 0, +1),  # forward: +x
        ("shoulder_abduction", [0, 0.3, 0, 0], 1, -1),  # right arm out: -y
        ("elbow_flexion", [0, 0, 0, 0.3], 0, +1),  # forearm forward: +x
        ("shoulder_rotation", [0, 0, 0.3, math.pi / 2], 1, +1),  # internal: toward trunk +y
    ],
)
def test_positive_joint_motion_follows_the_clinical_convention(arm, joint, q, axis, sign):
    """A positive angle of each joint moves the cuff the way a clinician means it."""
    base = np.array(q, dtype=float)
    base[JOINT_NAMES.index(joint)] = 0.0
    before = arm.forward_kinematics(base)[axis, 3]
    after = arm.forward_kinematics(q)[axis, 3]
    assert sign * (after - before) > 0.01


# -- kinematics -------------------------------------------------------------------


@FAST
@given(q=Q, dq=velocities(1.0))
def test_jacobian_matches_finite_differences_of_fk(arm, q, dq):
    """J(q) dq equals the finite-difference twist of the cuff pose, in both references."""
    h = 1e-6
    pose0 = pin.SE3(arm.forward_kinematics(q - 0.5 * h * dq))
    pose1 = pin.SE3(arm.forward_kinematics(q + 0.5 * h * dq))
    local = pin.log6(pose0.actInv(pose1)).vector / h  # twist in the cuff frame
    twist_local = arm.frame_jacobian(q, reference="local") @ dq
    np.testing.assert_allclose(twist_local, local, atol=1e-6)
    rotation = arm.forward_kinematics(q)[:3, :3]
    linear = (pose1.translation - pose0.translation) / h
    twist_aligned = arm.frame_jacobian(q, reference="local_world_aligned") @ dq
    np.testing.assert_allclose(twist_aligned[:3], linear, atol=1e-6)
    np.testing.assert_allclose(twist_aligned[3:], rotation @ local[3:], atol=1e-6)


def test_kinematics_reach_every_named_frame(arm):
    """FK and Jacobians accept any link frame, e.g. the F/T sensor."""
    q = np.array([0.4, 0.3, -0.2, 1.0])
    cuff = arm.forward_kinematics(q, "cuff_link")
    ft = arm.forward_kinematics(q, "ft_sensor_link")
    assert np.linalg.norm(ft[:3, 3] - cuff[:3, 3]) == pytest.approx(0.03)
    assert arm.frame_jacobian(q, "upper_arm_link").shape == (6, 4)


# -- dynamics ---------------------------------------------------------------------


@FAST
@given(q=Q)
def test_gravity_torques_equal_rnea_at_rest(arm, q):
    """gravity_torques(q) = inverse_dynamics(q, 0, 0)."""
    np.testing.assert_allclose(
        arm.gravity_torques(q), arm.inverse_dynamics(q, np.zeros(4), np.zeros(4)), atol=1e-12
    )


@FAST
@given(q=Q, v=velocities(), a=velocities(20.0))
def test_forward_dynamics_inverts_inverse_dynamics(arm, q, v, a):
    """ABA(q, v, RNEA(q, v, a)) = a, and RNEA = M a + RNEA(q, v, 0)."""
    tau = arm.inverse_dynamics(q, v, a)
    np.testing.assert_allclose(arm.forward_dynamics(q, v, tau), a, atol=1e-8)
    bias = arm.inverse_dynamics(q, v, np.zeros(4))
    np.testing.assert_allclose(arm.mass_matrix(q) @ a + bias, tau, atol=1e-9)


@FAST
@given(q=Q)
def test_mass_matrix_is_symmetric_positive_definite(arm, q):
    """M(q) is symmetric with positive eigenvalues [kg·m²]."""
    M = arm.mass_matrix(q)
    np.testing.assert_allclose(M, M.T, atol=1e-14)
    assert np.all(np.linalg.eigvalsh(M) > 0)


def test_gravity_load_fits_the_actuators(arm):
    """With the arm straight forward the shoulder needs ~12 N·m, far below 80 N·m."""
    tau = arm.gravity_torques([math.pi / 2, 0, 0, 0])
    assert 8.0 < tau[0] < 16.0
    assert abs(tau[0]) < 0.5 * arm.effort_limit[0]


# -- errors -----------------------------------------------------------------------


def test_default_path_is_the_shipped_urdf(arm):
    """from_urdf() without a path loads the shipped URDF."""
    assert arm.path == URDF


def test_missing_urdf_raises_config_error_naming_the_file(tmp_path):
    """A missing file is a ConfigError whose message names it."""
    path = tmp_path / "nope.urdf"
    with pytest.raises(ConfigError, match="nope.urdf"):
        ArmModel.from_urdf(path)


def test_malformed_urdf_raises_config_error_naming_the_file(tmp_path):
    """A file that is not URDF is a ConfigError whose message names it."""
    path = tmp_path / "broken.urdf"
    path.write_text("<robot name='x'><link name=")
    with pytest.raises(ConfigError, match="broken.urdf"):
        ArmModel.from_urdf(path)


def test_unlimited_joint_raises_config_error(tmp_path):
    """A continuous (unlimited) joint is refused with a ConfigError naming the file."""
    path = tmp_path / "continuous.urdf"
    path.write_text(
        "<robot name='x'><link name='a'/><link name='b'><inertial><mass value='1'/>"
        "<inertia ixx='1' iyy='1' izz='1' ixy='0' ixz='0' iyz='0'/></inertial></link>"
        "<joint name='j' type='continuous'><parent link='a'/><child link='b'/>"
        "<axis xyz='0 0 1'/></joint></robot>"
    )
    with pytest.raises(ConfigError, match="continuous.urdf"):
        ArmModel.from_urdf(path)


def test_bad_arguments_raise_value_error(arm):
    """Wrong-size vectors, unknown frames and unknown references are ValueErrors."""
    with pytest.raises(ValueError, match="q must have 4"):
        arm.gravity_torques([0.0, 0.0])
    with pytest.raises(ValueError, match="unknown frame 'wrist'"):
        arm.forward_kinematics(np.zeros(4), "wrist")
    with pytest.raises(ValueError, match="reference"):
        arm.frame_jacobian(np.zeros(4), reference="world")
