"""Tests of the virtual patient: settings, reaching, spasticity, tremor, fatigue,
scripted events, and how its torques reach the simulated arm and its F/T sensor."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rehab_robot.errors import ConfigError
from rehab_robot.hardware.interface import JointCommand
from rehab_robot.hardware.registry import backend_options
from rehab_robot.hardware.sim import SimulatedArm
from rehab_robot.hardware.virtual_patient import (
    DEFAULT_STRENGTH,
    MAS_REFLEX_GAIN,
    VirtualPatient,
    VirtualPatientConfig,
    load_virtual_patient,
)
from test_sim import make_arm, robot  # noqa: F401 - robot is a fixture

HOME = np.array([0.0, 0.1, 0.0, 0.3])
ELBOW = 3
#: A limb without mass, stiffness or damping: the patient's torque is all the cuff feels.
MASSLESS = {"upper_arm_mass": 0.0, "forearm_mass": 0.0, "stiffness": 0.0, "damping": 0.0}
#: A drive that only feeds gravity forward: the patient moves the arm freely.
SOFT_DRIVE = {"stiffness": 0.0, "damping": 0.0}
LOWER = np.array([-0.6, -0.3, -1.2, 0.0])
UPPER = np.array([2.6, 2.2, 1.2, 2.4])


def run(arm, clock, duration, command=None, period=0.002, every=None):
    """Read (and write ``command(sample)`` if given) every ``period`` s; return the samples."""
    samples = []
    steps = int(round(duration / period))
    start = clock.t
    sample = arm.read()
    for k in range(1, steps + 1):
        clock.t = round(start + k * period, 9)
        if every is not None:
            every(clock.t)
        if command is not None:
            arm.write(command(sample))
        sample = arm.read()
        samples.append(sample)
    return samples


def follow_with_gravity(robot):
    """A drive command that only feeds the robot's gravity forward (with SOFT_DRIVE gains)."""
    return lambda s: JointCommand(s.position, np.zeros(4), robot.gravity_torques(s.position))


def patient(**settings) -> VirtualPatient:
    """A VirtualPatient on the shipped arm's limits at 1 kHz, started at t = 0."""
    return VirtualPatient(VirtualPatientConfig.from_mapping(settings), LOWER, UPPER, 0.001, 0.0)


def drive(vp, duration, q=HOME, v=np.zeros(4), t0=0.0):
    """Call vp.torque every ms for ``duration`` s at a fixed state; return (t, torques)."""
    times = t0 + np.arange(int(round(duration * 1000))) * 0.001
    return times, np.array([vp.torque(t, np.asarray(q, float), np.asarray(v, float)) for t in times])


# -- the default patient is the passive limb ------------------------------------------


def scripted_session(robot, arm, clock):
    """Hold, track a minimum-jerk elbow move with targets shown, stop, hold: all samples."""
    samples = run(arm, clock, 0.1)
    arm.enable()

    def command(sample):
        tau = min(clock.t / 1.0, 1.0)
        s = 10 * tau**3 - 15 * tau**4 + 6 * tau**5
        position = HOME + np.array([0.2, 0.1, -0.1, 0.8]) * s
        return JointCommand(position, np.zeros(4), robot.gravity_torques(position))

    samples += run(arm, clock, 1.2, command,
                   every=lambda t: arm.set_patient_target(HOME + [0.2, 0.1, -0.1, 0.8], t))
    arm.disable()
    samples += run(arm, clock, 0.3)
    return np.concatenate([np.r_[s.stamp, s.position, s.velocity, s.effort, s.wrench] for s in samples])


@pytest.mark.parametrize("settings", [None, {}, "", {"effort": 0.0, "impairment": 0.5, "seed": 7},
                                      {"events": [{"type": "stop_trying", "time": 0.5}]}])
def test_default_patient_leaves_the_simulation_bit_identical(robot, settings):
    """With the default (passive) settings the samples are bit for bit those of an arm
    without the option, targets shown or not, and no patient runs in the loop."""
    reference = scripted_session(robot, *make_arm())
    arm, clock = make_arm(virtual_patient=settings)
    assert arm.virtual_patient is None
    np.testing.assert_array_equal(scripted_session(robot, arm, clock), reference)
    np.testing.assert_array_equal(arm.patient_torque, np.zeros(4))


def test_an_active_patient_changes_the_simulation(robot):
    """The bit-identity test can fail: a patient who tries changes the samples."""
    reference = scripted_session(robot, *make_arm())
    arm, clock = make_arm(virtual_patient={"effort": 1.0})
    assert arm.virtual_patient is not None
    assert not np.array_equal(scripted_session(robot, arm, clock), reference)


# -- settings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings, field",
    [
        ({"effort": 1.5}, "effort"),
        ({"effort": float("nan")}, "effort"),
        ({"effort": "high"}, "effort"),
        ({"effort": True}, "effort"),
        ({"impairment": -0.1}, "impairment"),
        ({"impairment": [0.1, 0.2]}, "impairment"),
        ({"impairment": {"wrist": 0.5}}, "impairment"),
        ({"strength": {"elbow_flexion": float("inf")}}, "strength"),
        ({"strength": -5.0}, "strength"),
        ({"reaction_delay": 3.0}, "reaction_delay"),
        ({"peak_speed": 0.0}, "peak_speed"),
        ({"min_reach_time": 0.0}, "min_reach_time"),
        ({"stiffness": 1e4}, "stiffness"),
        ({"damping": -1.0}, "damping"),
        ({"variability": 0.9}, "variability"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"strenght": 30.0}, "strenght"),
        ({"spasticity": {"grades": "5"}}, "spasticity.grades"),
        ({"spasticity": {"grades": {"elbow_flexion": "2-"}}}, "spasticity.grades"),
        ({"spasticity": {"grades": {"knee": 2}}}, "spasticity.grades"),
        ({"spasticity": {"threshold": -0.1}}, "spasticity.threshold"),
        ({"spasticity": {"stretched_by": "sideways"}}, "spasticity.stretched_by"),
        ({"spasticity": {"gain": 3}}, "spasticity.gain"),
        ({"spasticity": 2}, "spasticity"),
        ({"fatigue": {"per_reach": 1.0}}, "fatigue.per_reach"),
        ({"fatigue": {"work_constant": -1.0}}, "fatigue.work_constant"),
        ({"fatigue": {"floor": 2.0}}, "fatigue.floor"),
        ({"correction_time": 0.05}, "correction_time"),
        ({"correction_time": float("nan")}, "correction_time"),
        ({"learning": {"rate": -0.1}}, "learning.rate"),
        ({"learning": {"retention": 0.0}}, "learning.retention"),
        ({"learning": {"retention": 1.5}}, "learning.retention"),
        ({"learning": {"speed": 1.0}}, "learning.speed"),
        ({"tremor": {"frequency": 50.0}}, "tremor.frequency"),
        ({"tremor": {"amplitude": [1, 2, 3]}}, "tremor.amplitude"),
        ({"events": {"type": "spasm"}}, "events"),
        ({"events": [{"type": "sneeze", "time": 1.0}]}, "events[0].type"),
        ({"events": [{"type": "spasm", "duration": 1.0, "torque": 5.0}]}, "events[0].time"),
        ({"events": [{"type": "spasm", "time": 1.0, "torque": 5.0}]}, "events[0].duration"),
        ({"events": [{"type": "spasm", "time": 1.0, "duration": 0.0, "torque": 5.0}]}, "events[0].duration"),
        ({"events": [{"type": "spasm", "time": 1.0, "duration": 1.0}]}, "events[0].torque"),
        ({"events": [{"type": "spasm", "time": 1.0, "duration": 1.0, "torque": 500.0}]}, "events[0].torque"),
        ({"events": [{"type": "push_out", "time": 1.0, "joint": "wrist", "direction": "positive"}]},
         "events[0].joint"),
        ({"events": [{"type": "push_out", "time": 1.0, "joint": "elbow_flexion", "direction": "up"}]},
         "events[0].direction"),
        ({"events": [{"type": "stop_trying", "time": 1.0, "torque": 3.0}]}, "events[0].torque"),
        ({"events": [{"type": "spasm", "time": 1.0, "duration": 1.0, "torque": 5.0, "after": "target"}]},
         "events[0].after"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(settings, field):
    """Every bad value gives a ConfigError naming the field (and the sim option)."""
    with pytest.raises(ConfigError, match=rf"virtual_patient.*{field.split('.')[-1].split('[')[0]}") as info:
        SimulatedArm.check_options(virtual_patient=settings)
    assert field.split("[")[0].split(".")[0] in str(info.value)
    assert "must" in str(info.value) or "allowed" in str(info.value)


def test_settings_accept_numbers_lists_and_per_joint_mappings():
    """Per-joint settings take a number, a list of 4 or a mapping (others keep their default)."""
    config = VirtualPatientConfig.from_mapping({
        "effort": 0.6,
        "impairment": 0.5,
        "strength": {"elbow_flexion": 20.0},
        "spasticity": {"grades": {"elbow_flexion": "1+", "shoulder_rotation": 1.5}, "stretched_by": "negative"},
        "tremor": {"amplitude": [0.0, 0.0, 0.1, 0.2]},
        "events": [{"type": "push_out", "time": 2.0, "joint": "elbow_flexion", "direction": "negative"}],
    })
    assert config.impairment == (0.5,) * 4
    assert config.strength == DEFAULT_STRENGTH[:3] + (20.0,)
    assert config.spasticity.grades == ("0", "0", "1+", "1+")
    assert config.tremor.amplitude == (0.0, 0.0, 0.1, 0.2)
    assert config.events[0].joint == ELBOW and config.events[0].direction == -1
    assert config.events[0].duration == math.inf
    assert not config.passive
    assert VirtualPatientConfig().passive


def test_settings_from_a_yaml_file(tmp_path):
    """A file named by the option holds the settings, bare or under 'virtual_patient';
    a missing or malformed file is refused naming it."""
    bare = tmp_path / "bare.yaml"
    bare.write_text("effort: 0.7\nspasticity: {grades: {elbow_flexion: 1+}}\n")
    wrapped = tmp_path / "wrapped.yaml"
    wrapped.write_text("virtual_patient:\n  effort: 0.7\n  spasticity: {grades: {elbow_flexion: 1+}}\n")
    assert load_virtual_patient(str(bare)) == load_virtual_patient(str(wrapped))
    assert load_virtual_patient(str(bare)).spasticity.grades[ELBOW] == "1+"
    SimulatedArm.check_options(virtual_patient=str(bare))

    bad = tmp_path / "bad.yaml"
    bad.write_text("effort: 7\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*'effort' = 7: must be between 0 and 1"):
        SimulatedArm.check_options(virtual_patient=str(bad))
    with pytest.raises(ConfigError, match="missing.yaml not found"):
        SimulatedArm.check_options(virtual_patient=str(tmp_path / "missing.yaml"))
    broken = tmp_path / "broken.yaml"
    broken.write_text("effort: [0.5\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_virtual_patient(str(broken))
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_virtual_patient(str(listed))
    with pytest.raises(ConfigError, match="mapping of settings or a YAML file path"):
        load_virtual_patient(42)


def test_hardware_options_text_is_checked_before_anything_starts():
    """The driver's hardware_options YAML with a bad patient setting is refused by the
    registry's check, naming it; a good one passes through unchanged."""
    with pytest.raises(ConfigError, match="virtual_patient.*reaction_delay"):
        backend_options("{virtual_patient: {reaction_delay: -1}}", SimulatedArm)
    options = backend_options("{virtual_patient: {effort: 0.5, tremor: {amplitude: 0.2}}}", SimulatedArm)
    assert options["virtual_patient"] == {"effort": 0.5, "tremor": {"amplitude": 0.2}}


def test_patient_damping_counts_in_the_stability_check():
    """Drive, limb and patient damping together must stay integrable: too much is refused."""
    SimulatedArm.check_options(damping=[40.0, 40.0, 8.0, 40.0])
    with pytest.raises(ConfigError, match="virtual_patient.*damping"):
        SimulatedArm.check_options(damping=[40.0, 40.0, 8.0, 40.0],
                                   virtual_patient={"effort": 1.0, "spasticity": {"grades": 4}})


# -- reaching --------------------------------------------------------------------------


def reach(robot, delay=0.2, **settings):
    """A soft-driven massless arm; the patient sees an elbow target 0.8 rad away at t = 0.
    Returns the samples of 3 s."""
    arm, clock = make_arm(human_load=MASSLESS, **SOFT_DRIVE,
                          virtual_patient={"effort": 1.0, "reaction_delay": delay, **settings})
    arm.enable()
    arm.set_patient_target(HOME + [0.0, 0.0, 0.0, 0.8], 0.0)
    return run(arm, clock, 3.0, follow_with_gravity(robot))


def test_patient_reaches_the_target_after_the_reaction_delay(robot):
    """The elbow stays still until the reaction delay has passed, then moves to the
    target in one smooth reach (a single speed peak) and stays there."""
    for delay in (0.1, 0.5):
        samples = reach(robot, delay=delay)
        t = np.array([s.stamp for s in samples])
        q = np.array([s.position[ELBOW] for s in samples])
        speed = np.array([s.velocity[ELBOW] for s in samples])
        onset = t[np.argmax(speed > 0.02)]
        assert delay <= onset < delay + 0.1
        assert q[-1] == pytest.approx(HOME[ELBOW] + 0.8, abs=0.02)
        peaks = np.flatnonzero((speed[1:-1] > speed[:-2]) & (speed[1:-1] >= speed[2:]) & (speed[1:-1] > 0.05))
        assert len(peaks) == 1
        # Only the elbow was asked to move.
        assert np.max(np.abs(samples[-1].position[:3] - HOME[:3])) < 0.02


def test_peak_speed_setting_paces_the_reach(robot):
    """A slower planned peak speed gives a slower, longer reach."""
    fast = max(s.velocity[ELBOW] for s in reach(robot, peak_speed=1.5))
    slow = max(s.velocity[ELBOW] for s in reach(robot, peak_speed=0.5))
    assert slow < 0.7 and fast > 1.0


def test_impairment_and_effort_scale_the_voluntary_torque():
    """Against a held limb far from the target, the voluntary torque saturates at
    effort * strength * (1 - impairment); impairment 1 gives none at all."""
    for effort, impairment in ((1.0, 0.0), (0.5, 0.0), (1.0, 0.6), (0.8, 1.0)):
        vp = patient(effort=effort, impairment=impairment, reaction_delay=0.0, stiffness=500.0)
        vp.set_target(UPPER - 0.1, 0.0)
        _, torque = drive(vp, 6.0)
        expected = effort * np.array(DEFAULT_STRENGTH) * (1.0 - impairment)
        np.testing.assert_allclose(torque[-1], expected, rtol=0.02, atol=1e-9)
        assert np.all(np.abs(torque) <= expected + 1e-9)


def test_a_patient_without_a_target_does_nothing_voluntary():
    """Before any target is shown (or seen) the voluntary torque is zero."""
    vp = patient(effort=1.0, reaction_delay=0.3)
    _, before = drive(vp, 0.5)
    assert not before.any()
    vp.set_target(HOME + 0.5, 0.5)
    _, waiting = drive(vp, 0.299, t0=0.5)
    assert not waiting.any()
    _, seen = drive(vp, 0.2, t0=0.8)
    assert np.all(seen[-1] > 0.0)


@pytest.mark.parametrize("position, stamp, problem", [
    (np.zeros(3), 0.0, "4 joint positions"),
    ([0.0, np.nan, 0.0, 0.0], 0.0, "NaN"),
    (HOME, float("inf"), "stamp"),
    (HOME, "now", "stamp"),
])
@pytest.mark.parametrize("settings", [None, {"effort": 1.0}])
def test_bad_targets_are_refused(settings, position, stamp, problem):
    """set_patient_target refuses wrong sizes, NaN and bad stamps, patient active or not."""
    arm, _ = make_arm(virtual_patient=settings)
    with pytest.raises(ValueError, match=problem):
        arm.set_patient_target(position, stamp)


def test_target_stamps_must_not_go_back():
    """A target older than the previous one is refused."""
    arm, _ = make_arm(virtual_patient={"effort": 1.0})
    arm.set_patient_target(HOME, 1.0)
    arm.set_patient_target(HOME + 0.1, 1.0)  # same stamp replaces
    with pytest.raises(ValueError, match="older than the previous"):
        arm.set_patient_target(HOME, 0.5)


# -- how the patient's torque reaches the arm and the sensor ---------------------------


def test_hold_brakes_against_the_patient_and_the_cuff_feels_the_push(robot):
    """Holding, a massless limb pushes: the arm does not move, the drive supplies
    gravity minus the patient's torque, and the F/T wrench W satisfies J^T W = tau_p."""
    pose = np.array([0.5, 0.4, 0.2, 1.0])
    arm, clock = make_arm(initial_position=list(pose), human_load=MASSLESS, virtual_patient={
        "effort": 1.0, "events": [{"type": "push_out", "time": 0.2, "duration": 1.0, "effort": 0.5,
                                   "joint": "elbow_flexion", "direction": "negative"}]})
    samples = run(arm, clock, 0.6)
    before = [s for s in samples if s.stamp < 0.2]
    np.testing.assert_allclose(before[-1].wrench, 0.0, atol=1e-9)
    last = samples[-1]
    tau_p = arm.patient_torque
    assert tau_p[ELBOW] == pytest.approx(-0.5 * DEFAULT_STRENGTH[ELBOW])
    np.testing.assert_allclose(tau_p[:3], 0.0)
    assert np.max(np.abs(last.position - pose)) < 1e-3
    np.testing.assert_allclose(last.effort, robot.gravity_torques(last.position) - tau_p, atol=0.05)
    jac = robot.frame_jacobian(last.position, "ft_sensor_link", reference="local")
    np.testing.assert_allclose(jac.T @ last.wrench, tau_p, atol=0.05)
    assert np.linalg.norm(last.wrench[:3]) > 20.0


def test_patient_torque_moves_a_compliant_arm_and_loads_a_stiff_one(robot):
    """With a soft drive the push carries the elbow to its end stop; with the default
    stiff drive tracking a fixed setpoint it barely moves, and the drive's effort
    rises by the patient's torque."""
    push = {"effort": 1.0, "events": [{"type": "push_out", "time": 0.1, "joint": "elbow_flexion",
                                       "direction": "positive", "effort": 0.5}]}
    soft, clock = make_arm(human_load=MASSLESS, **SOFT_DRIVE, virtual_patient=push)
    soft.enable()
    final = run(soft, clock, 2.0, follow_with_gravity(robot))[-1]
    assert final.position[ELBOW] > UPPER[ELBOW] - 0.01

    stiff, clock = make_arm(human_load=MASSLESS, virtual_patient=push)
    stiff.enable()
    hold = JointCommand(HOME, np.zeros(4), robot.gravity_torques(HOME))
    samples = run(stiff, clock, 1.0, lambda s: hold)
    assert abs(samples[-1].position[ELBOW] - HOME[ELBOW]) < 0.1
    assert samples[-1].effort[ELBOW] == pytest.approx(
        robot.gravity_torques(samples[-1].position)[ELBOW] - 0.5 * DEFAULT_STRENGTH[ELBOW], abs=0.5)


# -- spasticity ----------------------------------------------------------------------------


def test_stretch_reflex_is_velocity_dependent_and_graded_by_mas():
    """Above the threshold speed the reflex opposes the motion with the MAS grade's gain
    (capped at the joint's strength); below it, and for MAS 0, there is none."""
    threshold = 0.3
    for grade, gain in MAS_REFLEX_GAIN.items():
        vp = patient(spasticity={"grades": {"elbow_flexion": grade}, "threshold": threshold})
        for speed in (0.2, 1.0, 3.0):
            v = np.array([0.0, 0.0, 0.0, -speed])
            tau = vp.torque(0.0, HOME, v)
            expected = min(gain * max(speed - threshold, 0.0), DEFAULT_STRENGTH[ELBOW])
            assert tau[ELBOW] == pytest.approx(expected)
            np.testing.assert_array_equal(tau[:3], 0.0)
    grades = ["0", "1", "1+", "2", "3", "4"]
    resistance = [patient(spasticity={"grades": g}).torque(0.0, HOME, np.full(4, 2.0))[ELBOW] for g in grades]
    assert all(a > b for a, b in zip(resistance, resistance[1:]))  # more negative each grade


def test_stretch_reflex_only_in_the_stretching_direction():
    """stretched_by 'negative' resists extension only (elbow flexors spastic)."""
    vp = patient(spasticity={"grades": {"elbow_flexion": 2}, "stretched_by": {"elbow_flexion": "negative"}})
    assert vp.torque(0.0, HOME, np.array([0.0, 0.0, 0.0, -1.5]))[ELBOW] > 0.0
    assert vp.torque(0.0, HOME, np.array([0.0, 0.0, 0.0, 1.5]))[ELBOW] == 0.0


def test_spastic_elbow_costs_the_drive_more_to_move_fast(robot):
    """Moving the elbow at ~2 rad/s, a MAS 3 elbow needs several N·m more drive torque
    than a MAS 0 one, and the cuff feels the difference."""
    def peak_effort_and_force(grade):
        arm, clock = make_arm(virtual_patient={"spasticity": {"grades": {"elbow_flexion": grade}}})
        arm.enable()

        def command(sample):
            tau = min(clock.t / 0.8, 1.0)
            s = 10 * tau**3 - 15 * tau**4 + 6 * tau**5
            ds = (30 * tau**2 - 60 * tau**3 + 30 * tau**4) / 0.8
            position = HOME + np.array([0.0, 0.0, 0.0, 1.0]) * s
            return JointCommand(position, np.array([0.0, 0.0, 0.0, ds]), robot.gravity_torques(position))

        samples = run(arm, clock, 0.8, command, period=0.001)
        assert max(s.velocity[ELBOW] for s in samples) > 1.7
        return (max(s.effort[ELBOW] for s in samples),
                max(np.linalg.norm(s.wrench) for s in samples))

    relaxed, spastic = peak_effort_and_force(0), peak_effort_and_force(3)
    assert spastic[0] > relaxed[0] + 4.0
    assert spastic[1] > relaxed[1] + 4.0


# -- fatigue, tremor, events, determinism -------------------------------------------------


def test_fatigue_over_reaches_lowers_the_strength():
    """Each new reach removes per_reach of the fatigable strength, down to the floor,
    and the saturated torque follows."""
    vp = patient(effort=1.0, reaction_delay=0.0, stiffness=500.0, peak_speed=5.0,
                 fatigue={"per_reach": 0.2, "floor": 0.4})
    targets = [LOWER + 0.05, UPPER - 0.05]
    saturated = []
    for k in range(6):
        vp.set_target(targets[k % 2], 2.0 * k)
        _, torque = drive(vp, 2.0, q=targets[(k + 1) % 2], t0=2.0 * k)
        saturated.append(abs(torque[-1][0]))
        assert vp.reaches == k + 1
        assert vp.fatigue_factor == pytest.approx(0.4 + 0.6 * 0.8 ** (k + 1))
    assert all(a > b for a, b in zip(saturated, saturated[1:]))
    assert saturated[-1] == pytest.approx(DEFAULT_STRENGTH[0] * vp.fatigue_factor, rel=0.02)


@pytest.mark.parametrize("retention", [1.0, 0.5])
def test_learning_adapts_the_effort_after_each_reach_from_the_patients_own_error(retention):
    """effort[k+1] = clip(retention effort[k] + rate e[k], 0, 1), e[k] the RMS gap between the
    planned reach and the limb (here held still, so every reach has an error)."""
    vp = patient(effort=0.2, reaction_delay=0.0, learning={"rate": 0.5, "retention": retention})
    targets = [HOME + [0.0, 0.0, 0.0, 0.6], HOME]
    efforts = [vp.effort]
    for k in range(5):
        vp.set_target(targets[k % 2], 2.0 * k)
        drive(vp, 2.0, q=HOME, t0=2.0 * k)
        efforts.append(vp.effort)
    # A reach is scored when the next one starts: four scored reaches after five targets.
    errors = vp.reach_errors
    assert len(errors) == 4 and all(e > 0.0 for e in errors[::2]), errors
    expected = [0.2]
    for error in errors:
        expected.append(min(1.0, max(0.0, retention * expected[-1] + 0.5 * error)))
    assert efforts[1:] == pytest.approx(expected, rel=1e-9), (efforts, expected)
    # Missing a reach 0.6 rad away makes the patient try harder; the reach back toward where
    # the limb is has a smaller error, and a patient with a retention below 1 eases off.
    assert efforts[2] > efforts[1]
    assert (efforts[3] < efforts[2]) == (retention < 1.0)


@pytest.mark.parametrize("correction_time", [0.0, 1.0])
def test_correction_closes_the_gap_a_load_leaves_at_the_target(robot, correction_time):
    """Against the forearm's weight and the limb's passive stiffness the reach's impedance alone
    settles short of the target; with correction_time the patient pushes on until the elbow is
    there (within 0.01 rad), never beyond the strength left."""
    settings = {"effort": 0.5, "impairment": 0.6, "reaction_delay": 0.0, "correction_time": correction_time}
    arm, clock = make_arm(**SOFT_DRIVE, virtual_patient=settings)
    arm.enable()
    target = HOME + np.array([0.0, 0.0, 0.0, 0.9])
    arm.set_patient_target(target, clock.t)
    samples = run(arm, clock, 8.0, follow_with_gravity(robot))
    gap = target[ELBOW] - samples[-1].position[ELBOW]
    if correction_time:
        assert abs(gap) < 0.01, gap
    else:
        assert gap > 0.03, gap
    assert abs(arm.virtual_patient.voluntary[ELBOW]) <= 0.5 * 0.4 * DEFAULT_STRENGTH[ELBOW] + 1e-9


def test_a_passive_patient_with_learning_stays_passive():
    config = VirtualPatientConfig.from_mapping({"learning": {"rate": 1.0}})
    assert config.passive and config.max_damping.max() == 0.0
    learning = VirtualPatientConfig.from_mapping({"effort": 0.2, "learning": {"rate": 1.0}})
    assert learning.max_damping == pytest.approx(np.asarray(learning.damping)), "its effort may reach 1"


def test_fatigue_with_work(robot):
    """With work-based fatigue the strength falls as the patient does positive work
    moving the arm, and not while it pushes against a held arm (no work)."""
    settings = {"effort": 1.0, "reaction_delay": 0.0, "fatigue": {"work_constant": 5.0, "floor": 0.2}}
    arm, clock = make_arm(human_load=MASSLESS, **SOFT_DRIVE, virtual_patient=settings)
    arm.enable()
    for k in range(4):
        arm.set_patient_target(HOME + ([0.0, 0.0, 0.0, 1.2] if k % 2 == 0 else 0.0), clock.t)
        run(arm, clock, 1.5, follow_with_gravity(robot))
    vp = arm.virtual_patient
    assert vp.work > 1.0
    assert vp.fatigue_factor == pytest.approx(0.2 + 0.8 * math.exp(-vp.work / 5.0))
    held, clock = make_arm(human_load=MASSLESS, virtual_patient=settings)
    held.set_patient_target(UPPER - 0.1, 0.0)
    run(held, clock, 1.0)
    assert held.virtual_patient.work < 0.05


def test_tremor_has_its_frequency_amplitude_and_seeded_phase():
    """Tremor torque is a sinusoid at the set frequency and amplitude; the same seed
    gives the same phase, another seed another."""
    _, torque = drive(patient(tremor={"frequency": 6.0, "amplitude": {"elbow_flexion": 0.8}}), 2.0)
    elbow = torque[:, ELBOW]
    assert np.max(np.abs(elbow)) == pytest.approx(0.8, rel=1e-3)
    spectrum = np.abs(np.fft.rfft(elbow))
    assert np.fft.rfftfreq(len(elbow), 0.001)[np.argmax(spectrum)] == pytest.approx(6.0)
    np.testing.assert_array_equal(torque[:, :3], 0.0)
    _, again = drive(patient(tremor={"frequency": 6.0, "amplitude": {"elbow_flexion": 0.8}}), 2.0)
    _, other = drive(patient(seed=1, tremor={"frequency": 6.0, "amplitude": {"elbow_flexion": 0.8}}), 2.0)
    np.testing.assert_array_equal(torque, again)
    assert not np.allclose(torque, other)


def test_spasm_event_is_a_sudden_contraction_for_its_duration():
    """A spasm's torque is zero before it, reaches its full value within ~20 ms and
    is zero again after its duration; it comes even from a passive (effort 0) patient."""
    vp = patient(events=[{"type": "spasm", "time": 1.0, "duration": 0.5,
                          "torque": {"elbow_flexion": 15.0, "shoulder_flexion": -5.0}}])
    t, torque = drive(vp, 2.0)
    assert not torque[t < 1.0].any()
    full = (t >= 1.02) & (t < 1.48)
    np.testing.assert_allclose(torque[full], np.tile([-5.0, 0.0, 0.0, 15.0], (full.sum(), 1)))
    assert not torque[t >= 1.5].any()


def test_an_event_after_the_first_target_counts_from_that_targets_stamp():
    """``after: first_target``: no event before any target; then at ``time`` after the first target's stamp
    (later targets do not move it), while an event of the same time counted from the start comes earlier."""
    vp = patient(events=[{"type": "spasm", "time": 0.5, "duration": 0.3, "torque": {"elbow_flexion": 10.0},
                          "after": "first_target"}])
    t, torque = drive(vp, 3.0)
    assert not torque.any(), "no target shown: no event"
    vp.set_target(HOME, 3.2)
    vp.set_target(np.asarray(HOME) + 0.1, 3.6)
    t, torque = drive(vp, 2.0, t0=3.0)
    elbow = torque[:, 3]
    assert not elbow[t < 3.7].any()
    full = (t >= 3.72) & (t < 3.98)
    np.testing.assert_allclose(elbow[full], 10.0)
    assert not elbow[t >= 4.0].any()
    start = patient(events=[{"type": "spasm", "time": 0.5, "duration": 0.3, "torque": {"elbow_flexion": 10.0}}])
    t, torque = drive(start, 1.0)
    assert torque[(t >= 0.52) & (t < 0.78), 3] == pytest.approx(10.0)


def test_spasm_shows_in_the_cuff_force(robot):
    """During a spasm the interaction force at the cuff rises well above the limb's weight."""
    arm, clock = make_arm(virtual_patient={"events": [
        {"type": "spasm", "time": 0.5, "duration": 0.3, "torque": {"elbow_flexion": 20.0}}]})
    samples = run(arm, clock, 1.0)
    force = {round(s.stamp, 3): np.linalg.norm(s.wrench[:3]) for s in samples}
    assert force[0.7] > force[0.4] + 20.0
    assert force[0.98] == pytest.approx(force[0.4], abs=0.5)


def test_stop_trying_event_ends_the_voluntary_torque():
    """After 'stop_trying' the voluntary torque is zero; the patient still saw the target."""
    vp = patient(effort=1.0, reaction_delay=0.0, stiffness=500.0,
                 events=[{"type": "stop_trying", "time": 1.0}])
    vp.set_target(UPPER - 0.1, 0.0)
    t, torque = drive(vp, 2.0)
    assert np.all(np.abs(torque[(t > 0.5) & (t < 1.0)]) > 1.0)
    assert not torque[t >= 1.0].any()


def test_stop_trying_for_a_while_then_reaching_again(robot):
    """A patient who stops trying for 1 s stops reaching, then reaches the target again."""
    arm, clock = make_arm(human_load=MASSLESS, **SOFT_DRIVE, virtual_patient={
        "effort": 1.0, "reaction_delay": 0.0,
        "events": [{"type": "stop_trying", "time": 0.0, "duration": 1.0}]})
    arm.enable()
    target = HOME + [0.0, 0.0, 0.0, 0.6]
    arm.set_patient_target(target, 0.0)
    samples = run(arm, clock, 3.0, follow_with_gravity(robot))
    idle = [s for s in samples if s.stamp < 1.0]
    assert abs(idle[-1].position[ELBOW] - HOME[ELBOW]) < 0.01
    assert samples[-1].position[ELBOW] == pytest.approx(target[ELBOW], abs=0.02)


def test_patient_is_deterministic_under_its_seed(robot):
    """With variability, two arms with the same seed give identical samples; another
    seed gives other reaches."""
    def session(seed):
        settings = {"effort": 1.0, "variability": 0.2, "seed": seed, "tremor": {"amplitude": 0.3}}
        arm, clock = make_arm(human_load=MASSLESS, **SOFT_DRIVE, virtual_patient=settings)
        arm.enable()
        arm.set_patient_target(HOME + [0.3, 0.2, 0.0, 0.8], 0.0)
        samples = run(arm, clock, 1.5, follow_with_gravity(robot))
        return np.concatenate([np.r_[s.position, s.velocity, s.wrench] for s in samples])

    np.testing.assert_array_equal(session(3), session(3))
    assert not np.allclose(session(3), session(4))


def test_cuff_wrench_stays_bounded_where_the_shoulder_is_in_gimbal_lock(robot):
    """At 90 deg abduction two shoulder axes line up and the cuff Jacobian loses rank:
    the wrench the patient's torques give stays finite and of the order of the
    torques over the lever arm, and the part the cuff can carry is still matched."""
    pose = np.array([0.0, math.pi / 2.0, 0.0, 1.0])
    jac = robot.frame_jacobian(pose, "ft_sensor_link", reference="local")
    assert np.linalg.svd(jac, compute_uv=False)[-1] < 1e-6  # truly singular
    torque = [5.0, 5.0, 5.0, 5.0]
    arm, clock = make_arm(initial_position=list(pose), human_load=MASSLESS, virtual_patient={
        "events": [{"type": "spasm", "time": 0.0, "duration": 1.0, "torque": torque}]})
    wrench = run(arm, clock, 0.3)[-1].wrench
    assert np.all(np.isfinite(wrench))
    assert np.linalg.norm(wrench) < 200.0
    # Project onto the joint-torque directions the cuff can produce (range of J^T).
    u, s, _ = np.linalg.svd(jac.T, full_matrices=False)
    carried = u[:, s > 1e-6]
    np.testing.assert_allclose(carried.T @ (jac.T @ wrench), carried.T @ arm.patient_torque, atol=0.05)


def test_tremor_and_spasm_make_the_simulated_reach_less_smooth(robot):
    """Measured with the metrics package, a plain reach is smooth (SPARC near the
    minimum-jerk -1.4); tremor makes it less smooth, and a mid-reach spasm too."""
    from rehab_robot.metrics import ldlj, sparc

    def smoothness(**settings):
        samples = reach(robot, **settings)
        t = np.array([s.stamp for s in samples])
        v = np.array([s.velocity[ELBOW] for s in samples])
        return sparc(t, v), ldlj(t, v)

    plain = smoothness()
    shaky = smoothness(tremor={"frequency": 6.0, "amplitude": {"elbow_flexion": 1.0}})
    spasm = smoothness(events=[{"type": "spasm", "time": 0.8, "duration": 0.15,
                                "torque": {"elbow_flexion": -6.0}}])
    assert plain[0] > -1.8
    assert shaky[0] < plain[0] - 0.3 and shaky[1] < plain[1]
    assert spasm[0] < plain[0] and spasm[1] < plain[1]


def test_diagnostics_show_an_active_patient_only():
    """A passive patient adds no diagnostics (as before); an active one reports its
    reaches, strength left, work and effort."""
    assert make_arm()[0].diagnostics() == {}
    assert make_arm(virtual_patient={})[0].diagnostics() == {}
    arm, clock = make_arm(virtual_patient={"effort": 1.0, "reaction_delay": 0.0, "fatigue": {"per_reach": 0.5}})
    arm.set_patient_target(HOME + 0.3, 0.0)
    run(arm, clock, 0.1)
    assert arm.diagnostics() == {"virtual_patient_reaches": "1", "virtual_patient_strength_left": "65 %",
                                 "virtual_patient_work": "0.0 J", "virtual_patient_effort": "1.00"}


def test_virtual_patient_does_not_import_rclpy():
    """The virtual patient is a plain module: importing it (and the sim) pulls in no ROS."""
    import subprocess
    import sys

    code = ("import sys, rehab_robot.hardware.virtual_patient, rehab_robot.hardware.sim; "
            "assert 'rclpy' not in sys.modules, 'rclpy imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_work_share_tells_who_moved_the_arm(robot):
    """Measured with metrics.work_share on a horizontal swing (shoulder rotation with the
    upper arm hanging, so gravity does almost no work): when the patient swings a
    compliant arm it did nearly all the positive work; when the robot moves a passive
    patient's arm the patient did none."""
    from rehab_robot.metrics import work_share

    target = HOME + [0.0, 0.0, 0.6, 0.0]

    def share(arm, clock, command, patient_target):
        arm.enable()
        if patient_target is not None:
            arm.set_patient_target(patient_target, 0.0)
        t, v, robot_tau, patient_tau = [], [], [], []

        def record(sample):
            t.append(sample.stamp)
            v.append(sample.velocity)
            robot_tau.append(sample.effort)
            patient_tau.append(arm.patient_torque)
            return command(sample)

        run(arm, clock, 2.0, record)
        return work_share(t, v, robot_tau, patient_tau)

    patient_led = share(*make_arm(**SOFT_DRIVE, virtual_patient={"effort": 1.0, "reaction_delay": 0.0}),
                        follow_with_gravity(robot), target)
    assert patient_led.patient_positive > 0.05
    assert patient_led.patient_share > 0.9

    def robot_move(sample):
        tau = min(sample.stamp / 1.0, 1.0)
        s = 10 * tau**3 - 15 * tau**4 + 6 * tau**5
        position = HOME + (target - HOME) * s
        return JointCommand(position, np.zeros(4), robot.gravity_torques(position))

    robot_led = share(*make_arm(), robot_move, None)
    assert robot_led.robot_positive > 0.05
    assert robot_led.patient_share == 0.0
