"""Unit tests of the interaction control core (plain Python, no ROS): settings, admittance,
soft walls, channel, spasm detector, the modes and the InteractionController."""

from __future__ import annotations

import numpy as np
import pytest

from rehab_robot.control import admittance as adm
from rehab_robot.control.admittance import CuffAdmittance
from rehab_robot.control.interaction import InteractionController
from rehab_robot.control.kinematics import CuffKinematics
from rehab_robot.control.modes import InteractionState, Reference
from rehab_robot.control.modes.path_guidance import closest_point
from rehab_robot.control.settings import InteractionSettings
from rehab_robot.control.soft_walls import SoftWalls
from rehab_robot.control.spasm import CONFIRM_SAMPLES, SpasmDetector
from rehab_robot.model import ArmModel

MODEL = ArmModel.from_urdf()
Q0 = np.array([0.0, 0.1, 0.0, 0.3])
DT = 0.002


def settings(**changes) -> InteractionSettings:
    """Default settings with ROS-named changes (``__`` for ``.``)."""
    return InteractionSettings.defaults(MODEL.lower, MODEL.upper).updated(
        {k.replace("__", "."): v for k, v in changes.items()})


def state(t=0.0, q=Q0, v=None, wrench=None) -> InteractionState:
    return InteractionState(t, np.array(q, dtype=float), np.zeros(4) if v is None else np.array(v, dtype=float),
                            np.zeros(6) if wrench is None else np.array(wrench, dtype=float))


# -- settings ----------------------------------------------------------------------------

def test_defaults_are_todays_behaviour_and_the_contract_values():
    s = InteractionSettings.defaults(MODEL.lower, MODEL.upper)
    assert s.mode == "position"
    assert (s.admittance_mass, s.admittance_damping, s.weight_support) == (2.0, 10.0, 0.0)
    assert s.admittance_max_speed == 10.0  # above the arm's own limits: they apply
    assert s.soft_wall_lower == tuple(MODEL.lower) and s.soft_wall_upper == tuple(MODEL.upper)
    assert (s.assist_gain, s.assist_stiffness, s.assist_deadband, s.assist_max_torque) == (1.0, 100.0, 0.05, 10.0)
    assert (s.spasm_force_threshold, s.spasm_force_rate, s.spasm_reaction) == (30.0, 300.0, "compliant_hold")
    assert s.assist_onset_timeout == 1.0
    assert len(InteractionSettings.parameter_names()) == 28


@pytest.mark.parametrize("name, value, words", [
    ("mode", "fast", ["'mode'", "active_assist"]),
    ("admittance.mass", 0.1, ["'admittance.mass'", "0.5 to 20 kg"]),
    ("admittance.damping", float("nan"), ["'admittance.damping'"]),
    ("assist.gain", 1.5, ["'assist.gain'", "0 to 1"]),
    ("limb_masses", [1.0], ["'limb_masses'", "2 values"]),
    ("soft_wall.upper", [0.0, 0.0, 0.0, 9.0], ["URDF limits"]),
    ("soft_wall.lower", [0.0, 0.0, 0.0], ["'soft_wall.lower'", "one per joint"]),
    ("spasm.reaction", "panic", ["'spasm.reaction'", "return_to_start"]),
    ("path_guidance.waypoints", [0.0, 0.0], ["'path_guidance.waypoints'", "multiple of 3"]),
    ("mode", "path_guidance", ["path_guidance.waypoints", "2 or more"]),
    ("admittance.mass", "2", ["'admittance.mass'"]),
])
def test_a_bad_value_is_refused_naming_the_parameter_and_what_is_allowed(name, value, words):
    with pytest.raises(ValueError) as info:
        settings().updated({name: value})
    for word in words:
        assert word in str(info.value)


def test_lower_wall_must_be_below_upper_wall():
    with pytest.raises(ValueError, match="lower < upper"):
        settings(soft_wall__lower=[0.0, 0.0, 0.0, 1.0], soft_wall__upper=[2.0, 2.0, 1.0, 1.0])


# -- admittance ----------------------------------------------------------------------------

def test_admittance_step_response_is_the_virtual_mass_damper(monkeypatch):
    """A constant cuff force F on a joint whose only motion is the cuff's x: v(t) = F/d (1 - exp(-t d/m))."""
    monkeypatch.setattr(adm, "JOINT_INERTIA_FLOOR", 0.0)
    monkeypatch.setattr(adm, "L_MIN", 0.0)
    J = np.zeros((6, 4))
    J[0, 0], J[1, 1], J[2, 2], J[5, 3] = 1.0, 1.0, 1.0, 1.0  # joint 3 only turns the cuff
    a = CuffAdmittance(np.full(4, -10.0), np.full(4, 10.0), np.full(4, 100.0))
    a.reset(np.zeros(4))
    m, d, force, dt = 2.0, 10.0, 5.0, 1e-3
    times = np.arange(1, 2001) * dt  # 10 time constants
    speeds = []
    for _ in times:
        a.step(J, m, d, J[:3].T @ np.array([force, 0.0, 0.0]), np.zeros(4), np.zeros((4, 4)), dt)
        speeds.append((J[:3] @ a.velocity)[0])
    expected = force / d * (1.0 - np.exp(-times * d / m))
    assert np.max(np.abs(np.array(speeds) - expected)) < 0.005 * force / d
    assert speeds[-1] == pytest.approx(force / d, rel=1e-3)


def test_admittance_is_bounded_by_speed_and_position_limits():
    kin = CuffKinematics.at(MODEL, Q0)
    a = CuffAdmittance(MODEL.lower, MODEL.upper, MODEL.velocity_limit)
    a.reset(Q0)
    for _ in range(2000):
        a.step(kin.cuff_jacobian, 0.5, 2.0, np.array([0.0, 0.0, 0.0, 50.0]), np.zeros(4), np.zeros((4, 4)), DT)
        assert np.all(np.abs(a.velocity) <= MODEL.velocity_limit + 1e-12)
    assert a.position[3] == pytest.approx(MODEL.upper[3]) and a.velocity[3] == 0.0


def test_an_elbow_push_moves_mostly_the_elbow():
    """The diagonal share keeps a joint torque from spinning the arm about the cuff."""
    kin = CuffKinematics.at(MODEL, Q0)
    D = CuffAdmittance.damping(kin.cuff_jacobian, 200.0)
    v = np.linalg.solve(D, np.array([0.0, 0.0, 0.0, 4.5]))
    assert v[3] > 0 and abs(v[0]) < 0.5 * v[3], v


# -- soft walls -----------------------------------------------------------------------------

def test_soft_wall_torque():
    walls = SoftWalls([-1.0] * 4, [1.0] * 4, stiffness=50.0, damping=5.0, torque_limit=15.0)
    inside = walls.effort([0.0, 0.5, -0.9, 0.99], np.ones(4))
    assert np.all(inside.torque == 0.0) and np.all(inside.damping == 0.0)
    out = walls.effort([1.1, -1.2, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0])
    assert out.torque[:2] == pytest.approx([-5.0, 10.0])
    # Damping only while moving further out: joint 0 moves out, joint 1 moves back in.
    assert out.damping[:2].tolist() == [5.0, 0.0]
    assert out.total[0] == pytest.approx(5.0 + 2.5)
    assert walls.broken_through([1.1, 0.0, 0.0, 0.0], np.zeros(4)) is None
    assert walls.broken_through([0.0, 0.0, 0.0, 1.31], np.zeros(4)) == 3


# -- path guidance ---------------------------------------------------------------------------

def test_channel_projection():
    path = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    point, tangent = closest_point(path, [0.5, 0.2, 0.0])
    assert point == pytest.approx([0.5, 0.0, 0.0]) and tangent == pytest.approx([1.0, 0.0, 0.0])
    point, tangent = closest_point(path, [1.3, 0.6, 0.0])
    assert point == pytest.approx([1.0, 0.6, 0.0]) and tangent == pytest.approx([0.0, 1.0, 0.0])
    point, _ = closest_point(path, [-0.5, 0.1, 0.0])  # beyond the start: the channel is closed there
    assert point == pytest.approx([0.0, 0.0, 0.0])


def test_channel_is_free_inside_and_stiff_across_outside():
    p0 = CuffKinematics.at(MODEL, Q0).cuff_position
    along = np.array([0.2, 0.0, 0.0])
    s = settings(mode="path_guidance", path_guidance__waypoints=[*p0, *(p0 + along)], path_guidance__width=0.02)
    controller = InteractionController(MODEL, s, DT)
    mode = controller.mode
    mode.reset(state(), Q0, None)
    kin = CuffKinematics.at(MODEL, Q0)
    assert not np.any(mode.effort(state(), kin, np.zeros(4), None).torque)
    # Move the arm so that the cuff leaves the channel sideways (elbow flexion lifts it forward/up).
    q = Q0 + np.array([0.0, 0.0, 0.0, 0.4])
    kin = CuffKinematics.at(MODEL, q)
    effort = mode.effort(state(q=q), kin, np.zeros(4), None)
    assert effort.at_cuff
    closest, _ = closest_point(s.waypoints, kin.cuff_position)
    deviation = kin.cuff_position - closest
    force = np.linalg.lstsq(kin.cuff_jacobian[:3].T, effort.torque, rcond=None)[0]
    assert force @ deviation < 0, "the channel pushes the cuff back toward the path"
    expected = 500.0 * (np.linalg.norm(deviation) - 0.02)
    assert np.linalg.norm(force) == pytest.approx(expected, rel=0.05)


# -- spasm detector ---------------------------------------------------------------------------

def test_spasm_threshold_against_motion_only():
    d = SpasmDetector(force_threshold=30.0, force_rate=1e6)
    direction = np.array([0.0, 0.0, 0.0, 1.0])  # elbow flexing
    for k in range(10):  # 40 N with the motion: no spasm
        assert d.update(k * DT, [0, 0, 0, 40.0], direction) is None
    d.reset()
    assert d.update(0.0, [0, 0, 0, -31.0], direction) is None  # one sample is not enough
    onset = d.update(DT, [0, 0, 0, -31.0], direction)
    assert onset is not None and onset.onset == 0.0 and onset.rule == "threshold" and onset.joint == 3
    d.reset()
    assert all(d.update(k * DT, [0, 0, 0, -40.0], None) is None for k in range(10)), "at rest: no direction"


def test_spasm_rate_rule_fires_on_a_fast_rise_not_a_slow_one():
    d = SpasmDetector(force_threshold=30.0, force_rate=300.0)
    hits = [d.update(k * DT, [0, 0, 0, 0.2 * k], None) for k in range(150)]  # 100 N/s up to 30 N
    assert not any(hits)
    d.reset()
    hits = [d.update(k * DT, [0, 0, 0, min(1.0 * k, 25.0)], None) for k in range(30)]  # 500 N/s
    fired = [h for h in hits if h is not None]
    assert fired and fired[0].rule == "rate"
    assert fired[0].onset == pytest.approx(16 * DT), "first sample above half the threshold, rising fast"
    assert CONFIRM_SAMPLES == 2


# -- the controller ---------------------------------------------------------------------------

def test_bumpless_switch_from_position_to_active_and_refused_wrench_nan():
    c = InteractionController(MODEL, settings(), DT)
    hold = Q0 + 0.01
    for k in range(5):
        cmd = c.step(state(k * DT, q=hold), None)
    assert cmd.position == pytest.approx(hold)
    c.configure(settings(mode="active"), mode_set=True)
    cmd = c.step(state(5 * DT, q=hold), None)
    assert cmd.position == pytest.approx(hold, abs=1e-4) and np.all(np.abs(cmd.velocity) < 1e-2)
    assert [e.name for e in c.events] == ["mode"]
    cmd = c.step(state(6 * DT, q=hold, wrench=[np.nan] * 6), None)
    assert "NaN" in c.signal_problem and np.all(cmd.velocity == 0.0)
    assert cmd.position == pytest.approx(c.setpoint)
    c.step(state(7 * DT, q=hold, v=[np.inf, 0, 0, 0]), None)
    assert "joint state" in c.signal_problem
    InteractionController(MODEL, settings(mode="active"), DT).step(state(q=hold, wrench=None), None)


def test_missing_wrench_holds_in_interaction_modes_only():
    active = InteractionController(MODEL, settings(mode="active"), DT)
    active.step(InteractionState(0.0, Q0, np.zeros(4), None), None)
    assert active.signal_problem == "no cuff wrench"
    position = InteractionController(MODEL, settings(), DT)
    position.step(InteractionState(0.0, Q0, np.zeros(4), None), None)
    assert "spasm detection off" in position.signal_problem


def reference(t, start, end, duration=1.0) -> Reference:
    from rehab_robot.control.trajectory import QuinticSegment
    seg = QuinticSegment.minimum_jerk(start, end, duration)
    q, v, a = seg.sample(t)
    return Reference(q, v, a, np.array(start, float), np.array(end, float), t, duration)


def test_assistance_waits_for_onset_respects_deadband_and_is_bounded():
    s = settings(mode="active_assist", assist__max_torque=5.0)
    c = InteractionController(MODEL, s, DT)
    mode = c.mode
    end = Q0 + np.array([0.0, 0.0, 0.0, 1.0])
    mode.reset(state(), Q0, None)
    kin = CuffKinematics.at(MODEL, Q0)
    # The reference is ahead by 0.5 rad but the patient has not started: no assistance yet.
    effort = mode.effort(state(t=0.5), kin, np.zeros(4), reference(0.5, Q0, end))
    assert not np.any(effort.torque)
    # The patient starts moving: onset; after the fade-in the pull is bounded by max_torque.
    moving = state(t=0.6, v=[0, 0, 0, 0.2])
    mode.effort(moving, kin, np.zeros(4), reference(0.6, Q0, end))
    effort = mode.effort(state(t=1.0, v=[0, 0, 0, 0.2]), kin, np.zeros(4), reference(1.0, Q0, end))
    assert effort.torque[3] == pytest.approx(5.0) and np.all(effort.torque[:3] == 0.0)
    # Within the deadband of the reference, early in it (still 0.045 rad wide): nothing.
    early = reference(0.25, Q0, end).position
    near = early - np.array([0.0, 0.0, 0.0, 0.04])
    assert not np.any(mode.effort(state(t=1.1, q=near), kin, np.zeros(4), reference(0.25, Q0, end)).torque)
    # The deadband closes as the reference arrives: at its end, the same lag is pulled in.
    near_end = end - np.array([0.0, 0.0, 0.0, 0.04])
    effort = mode.effort(state(t=1.2, q=near_end), kin, np.zeros(4), reference(1.05, Q0, end))
    assert effort.torque[3] == pytest.approx(s.assist_stiffness * 0.04, rel=1e-6)
    # Ahead of the reference: never held back.
    ahead = Q0 + np.array([0.0, 0.0, 0.0, 0.9])
    assert not np.any(mode.effort(state(t=0.3, q=ahead), kin, np.zeros(4), reference(0.3, Q0, end)).torque)
    # Through the target is not ahead: beyond the deadband past the end, pulled back.
    past = end + np.array([0.0, 0.0, 0.0, 0.08])
    effort = mode.effort(state(t=1.3, q=past), kin, np.zeros(4), reference(0.6, Q0, end))
    assert effort.torque[3] == pytest.approx(-s.assist_stiffness * (0.08 - 0.05), rel=1e-6)
    slightly_past = end + np.array([0.0, 0.0, 0.0, 0.03])
    assert not np.any(mode.effort(state(t=1.3, q=slightly_past), kin, np.zeros(4), reference(1.2, Q0, end)).torque)


@pytest.mark.parametrize("onset_timeout", [0.0, 1.0])
def test_assistance_of_a_patient_who_does_not_start_begins_after_assist_onset_timeout(onset_timeout):
    """Triggered assistance: a still patient is pulled after assist.onset_timeout; 0 (set by a
    session that starts the reference at the onset itself) pulls from the reference's start."""
    c = InteractionController(MODEL, settings(mode="active_assist", assist__onset_timeout=onset_timeout), DT)
    mode = c.mode
    end = Q0 + np.array([0.0, 0.0, 0.0, 1.0])
    mode.reset(state(), Q0, None)
    kin = CuffKinematics.at(MODEL, Q0)
    pulls = []
    for k in range(int(1.5 / DT)):
        t = k * DT
        pulls.append(mode.effort(state(t=t), kin, np.zeros(4), reference(t, Q0, end, 2.0)).torque[3])
    first = next(k for k, pull in enumerate(pulls) if pull > 0.0) * DT
    # The pull starts once the lag passes the deadband (0.05 rad, about 0.35 s into this
    # reference) or at the timeout, whichever is later.
    assert first == pytest.approx(max(onset_timeout, 0.35), abs=0.05), first


def test_resistive_spasm_returns_to_the_start_posture_its_reference_ends_at():
    """resistive's reference runs from the sagged arm to the start posture: a spasm (rate rule,
    whatever the direction) makes return_to_start go to that posture, its last point."""
    c = InteractionController(MODEL, settings(mode="resistive", spasm__reaction="return_to_start"), DT)
    sagged, start = Q0 - np.array([0.0, 0.0, 0.0, 0.08]), Q0 + np.array([0.0, 0.0, 0.0, 0.2])
    c.step(state(0.0, q=sagged), reference(0.0, sagged, start, 0.2))
    kin = CuffKinematics.at(MODEL, sagged)
    # An elbow contraction of -20 N·m reaching the cuff in one step: far above the rate limit.
    wrench = np.linalg.lstsq(kin.ft_jacobian.T, np.array([0.0, 0.0, 0.0, -20.0]), rcond=None)[0]
    t = DT
    while not c.reaction and t < 0.1:
        c.step(state(t, q=sagged, wrench=wrench), reference(t, sagged, start, 0.2))
        t += DT
    assert c.reaction == "return_to_start", [e.name for e in c.events]
    assert c._return.end == pytest.approx(start), "back to the start posture, not to the sagged arm"


def test_onset_resets_on_re_enable():
    c = InteractionController(MODEL, settings(mode="active_assist"), DT)
    end = Q0 + np.array([0.0, 0.0, 0.0, 1.0])
    for k in range(300):  # 0.6 s: the patient moves, onset is seen
        c.step(state(k * DT, v=[0, 0, 0, 0.2]), reference(k * DT, Q0, end, 2.0))
    assert c.mode._onset
    c.follow(Q0)  # a stop
    c.step(state(0.7, v=[0, 0, 0, 0.0]), reference(0.7, Q0, end, 2.0))
    assert not c.mode._onset, "the onset is forgotten after a stop"
    assert np.all(c.admittance.velocity == 0.0) or np.max(np.abs(c.admittance.velocity)) < 1e-2


def test_resistance_is_toward_the_start_posture_and_bounded():
    s = settings(mode="resistive", resistive__stiffness=20.0, resistive__damping=2.0, resistive__max_torque=3.0)
    c = InteractionController(MODEL, s, DT)
    mode = c.mode
    start = Q0.copy()
    # The session's reference runs from where the arm sagged to, to the start posture: its last point.
    ref = reference(0.0, start - np.array([0.0, 0.0, 0.0, 0.2]), start)
    mode.reset(state(), Q0 + 0.5, ref)
    kin = CuffKinematics.at(MODEL, Q0)
    q = start + np.array([0.0, 0.0, 0.0, 0.1])
    effort = mode.effort(state(q=q), kin, np.zeros(4), ref)
    assert effort.torque[3] == pytest.approx(-2.0) and effort.damping[3, 3] == 2.0
    q = start + np.array([0.0, 0.0, 0.0, 0.5])
    effort = mode.effort(state(q=q), kin, np.zeros(4), ref)
    assert effort.torque[3] == pytest.approx(-3.0), "bounded by resistive.max_torque"


def test_wall_broken_through_is_a_protective_stop_until_the_mode_is_set():
    s = settings(mode="active", soft_wall__upper=[2.6, 2.2, 1.2, 0.5], soft_wall__torque_limit=5.0)
    c = InteractionController(MODEL, s, DT)
    c.step(state(q=Q0), None)
    beyond = Q0 + np.array([0.0, 0.0, 0.0, 0.35])  # 0.15 rad past 0.5: 7.5 N·m > 5 N·m
    cmd = c.step(state(DT, q=beyond), None)
    assert c.reaction == "protective_stop" and np.all(cmd.velocity == 0.0)
    assert cmd.position == pytest.approx(beyond)
    event = c.events[-1]
    assert event.name == "soft_wall_limit" and event.values["joint"] == "elbow_flexion"
    assert float(event.values["torque"]) == pytest.approx(7.5)
    c.follow(beyond)
    c.step(state(2 * DT, q=beyond), None)
    assert c.reaction == "protective_stop", "a stop does not clear the reaction"
    c.configure(s, mode_set=True)
    c.step(state(3 * DT, q=Q0), None)
    assert c.reaction == ""


def test_the_patients_speed_cap_bounds_the_setpoint_in_the_interaction_modes():
    """``admittance.max_speed``: a hard push that would drive the setpoint past the cap is
    followed at the cap at most (the supervisor stops at 1.25 x the patient's cap)."""
    def peak_speed(**changes) -> float:
        c = InteractionController(MODEL, settings(), DT)
        c.step(state(0.0), None)
        c.configure(settings(mode="active", **changes), mode_set=True)
        peak = 0.0
        for k in range(1, 400):
            cmd = c.step(state(k * DT, q=c.setpoint, wrench=[0.0, 0.0, -40.0, 0.0, 0.0, 0.0]), None)
            peak = max(peak, float(np.max(np.abs(cmd.velocity))))
        return peak

    free = peak_speed()
    capped = peak_speed(admittance__max_speed=0.4)
    print(f"peak setpoint speed under a 40 N push: {free:.2f} rad/s free, {capped:.3f} rad/s with a 0.4 rad/s cap")
    assert free > 0.6
    assert capped <= 0.4 + 1e-9
    with pytest.raises(ValueError, match=r"'admittance.max_speed' = nan is not allowed; allowed: 0.05 to 10 rad/s"):
        settings(admittance__max_speed=float("nan"))
