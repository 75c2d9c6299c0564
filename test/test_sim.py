"""Tests of SimulatedArm: the drive law, the stop and hold, the F/T sensor, options."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rehab_robot.errors import ConfigError, HardwareError
from rehab_robot.hardware.interface import HardwareInterface, JointCommand
from rehab_robot.hardware.sim import DEFAULT_HUMAN_LOAD, SimulatedArm
from rehab_robot.model import ArmModel

HOME = np.array([0.0, 0.1, 0.0, 0.3])
G = 9.81
FOREARM_WEIGHT = DEFAULT_HUMAN_LOAD["forearm_mass"] * G  # [N]


class FakeClock:
    """A clock [s] the test moves by hand."""

    def __init__(self, t: float = 0.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def tick(self, dt: float) -> float:
        # Rounding keeps t on the 1 ms grid, as a real periodic loop's stamps are.
        self.t = round(self.t + dt, 9)
        return self.t


@pytest.fixture(scope="module")
def robot() -> ArmModel:
    return ArmModel.from_urdf()


def make_arm(**options) -> tuple[SimulatedArm, FakeClock]:
    clock = FakeClock()
    return SimulatedArm(clock=clock, **options), clock


def run(arm, clock, duration, command=None, period=0.002):
    """Read (and write ``command(t)`` if given) every ``period`` s; return the samples."""
    samples = []
    end = clock.t + duration
    while clock.t < end - 1e-9:
        t = clock.tick(period)
        if command is not None:
            arm.write(command(t))
        samples.append(arm.read())
    return samples


def ramp_command(robot, q0, velocity, t0=0.0):
    """Setpoints that accelerate smoothly in 0.1 s to ``velocity`` [rad/s], gravity fed forward."""
    q0, velocity = np.asarray(q0, float), np.asarray(velocity, float)

    def command(t):
        t -= t0
        s = min(t / 0.1, 1.0)
        travel = t - 0.05 if t > 0.1 else t * t / 0.2
        position = q0 + velocity * travel
        return JointCommand(position, velocity * s, robot.gravity_torques(position))

    return command


def stop_and_hold(arm, clock):
    """disable(), then return (time to rest [s], max drift over the next 2 s [rad])."""
    arm.disable()
    t_disable = clock.t
    sample = arm.read()
    while not sample.at_rest and clock.t < t_disable + 1.0:
        clock.tick(0.001)
        sample = arm.read()
    stop_time = clock.t - t_disable
    rest_position = sample.position
    drift = max(
        np.max(np.abs(s.position - rest_position)) for s in run(arm, clock, 2.0, period=0.01)
    )
    return stop_time, drift


# -- holding and stopping --------------------------------------------------------


def test_is_a_hardware_interface_that_starts_disabled_and_holding():
    """A new arm is a HardwareInterface, disabled, holding, at rest at its initial pose."""
    arm, _ = make_arm()
    assert isinstance(arm, HardwareInterface)
    assert not arm.enabled
    sample = arm.read()
    assert sample.at_rest
    np.testing.assert_array_equal(sample.position, HOME)


def test_holds_without_drift_at_start():
    """Holding from start, with the limb's weight, the arm drifts < 1e-4 rad in 2 s."""
    for pose in (HOME, [1.5, 1.0, 0.8, 2.0]):
        arm, clock = make_arm(initial_position=list(pose))
        samples = run(arm, clock, 2.0, period=0.01)
        drift = max(np.max(np.abs(s.position - pose)) for s in samples)
        assert drift < 1e-4
        assert arm.drive_state == "holding"


def test_quick_stop_from_elbow_motion_then_no_sag(robot):
    """From 1 rad/s on the elbow, disable() brings the arm to rest within 50 ms and
    it then drifts < 0.005 rad over 2 s."""
    arm, clock = make_arm()
    arm.enable()
    samples = run(arm, clock, 0.3, ramp_command(robot, HOME, [0, 0, 0, 1.0]))
    assert samples[-1].velocity[3] == pytest.approx(1.0, abs=0.05)
    stop_time, drift = stop_and_hold(arm, clock)
    assert stop_time <= 0.050
    assert drift < 0.005
    assert arm.drive_state == "holding"


def test_quick_stop_from_multi_joint_motion_then_no_sag(robot):
    """From a motion of every joint at ~1 rad/s (arm raised forward and out), the
    arm is at rest within 50 ms of disable() and drifts < 0.005 rad over 2 s."""
    arm, clock = make_arm(initial_position=[0.5, 0.3, -0.2, 0.6])
    arm.enable()
    command = ramp_command(robot, [0.5, 0.3, -0.2, 0.6], [0.9, 0.8, 1.0, 1.0])
    samples = run(arm, clock, 0.4, command)
    assert np.all(np.abs(samples[-1].velocity) > 0.7)
    stop_time, drift = stop_and_hold(arm, clock)
    assert stop_time <= 0.050
    assert drift < 0.005


def test_stop_is_the_same_however_often_disable_is_called(robot):
    """Calling disable() repeatedly during the stop changes nothing (no re-capture)."""
    finals = []
    for repeat in (False, True):
        arm, clock = make_arm()
        arm.enable()
        run(arm, clock, 0.3, ramp_command(robot, HOME, [0, 0, 0, 1.0]))
        arm.disable()
        for _ in range(100):
            clock.tick(0.001)
            if repeat:
                arm.disable()
            sample = arm.read()
        finals.append(sample.position)
    np.testing.assert_array_equal(finals[0], finals[1])


def test_write_is_ignored_while_disabled():
    """Setpoints written while disabled do not move the arm."""
    arm, clock = make_arm()
    far = JointCommand(HOME + 0.5, np.zeros(4), np.zeros(4))
    samples = run(arm, clock, 0.2, lambda t: far)
    np.testing.assert_allclose(samples[-1].position, HOME, atol=1e-4)


def test_enable_keeps_holding_until_the_first_write():
    """After enable() the drive holds until a setpoint arrives, then follows it."""
    arm, clock = make_arm()
    arm.enable()
    assert arm.enabled
    run(arm, clock, 0.2)
    assert arm.drive_state == "holding"
    np.testing.assert_allclose(arm.read().position, HOME, atol=1e-4)
    target = HOME + np.array([0.0, 0.0, 0.0, 0.1])
    samples = run(arm, clock, 0.5, lambda t: JointCommand(target, np.zeros(4), np.zeros(4)))
    assert arm.drive_state == "tracking"
    assert samples[-1].position[3] == pytest.approx(target[3], abs=0.02)


def test_tracks_a_minimum_jerk_elbow_move(robot):
    """With gravity feed-forward from the robot-only ArmModel, a minimum-jerk elbow
    move of 1 rad in 2 s is tracked within 0.03 rad (the limb's weight and
    resistance are the unmodelled load)."""
    arm, clock = make_arm()
    arm.enable()

    def command(t):
        tau = min(t / 2.0, 1.0)
        s = 10 * tau**3 - 15 * tau**4 + 6 * tau**5
        ds = (30 * tau**2 - 60 * tau**3 + 30 * tau**4) / 2.0
        position = HOME + np.array([0.0, 0.0, 0.0, s])
        velocity = np.array([0.0, 0.0, 0.0, ds])
        return JointCommand(position, velocity, robot.gravity_torques(position))

    errors = [np.max(np.abs(s.position - command(s.stamp).position)) for s in
              run(arm, clock, 2.5, command)]
    assert max(errors) < 0.03


# -- drive law, limits, robustness -----------------------------------------------


def test_effort_is_clamped_to_the_urdf_limits(robot):
    """A huge setpoint error yields exactly the effort limit [N·m], never more."""
    arm, clock = make_arm()
    arm.enable()
    command = JointCommand(HOME, np.zeros(4), np.array([500.0, -500.0, 500.0, -500.0]))
    sample = run(arm, clock, 0.004, lambda t: command)[-1]
    np.testing.assert_allclose(sample.effort, [80.0, -80.0, 40.0, -40.0])
    assert np.all(np.abs(sample.effort) <= robot.effort_limit)


def test_end_stops_keep_the_arm_near_its_limits(robot):
    """Driving every joint past its limit with full torque, the end stops catch it
    within 0.1 rad of the limit and then hold it within 0.02 rad."""
    arm, clock = make_arm()
    arm.enable()
    command = JointCommand(robot.upper + 1.0, np.zeros(4), robot.effort_limit)
    samples = run(arm, clock, 1.5, lambda t: command)
    peak = np.max([s.position for s in samples], axis=0)
    assert np.all(peak < robot.upper + 0.1)
    final = samples[-1].position
    assert np.all((final > robot.upper) & (final < robot.upper + 0.02))


@settings(max_examples=15, deadline=None)
@given(
    target=st.lists(st.floats(-3.0, 3.0), min_size=4, max_size=4),
    velocity=st.lists(st.floats(-3.0, 3.0), min_size=4, max_size=4),
    effort=st.lists(st.floats(-100.0, 100.0), min_size=4, max_size=4),
)
def test_outputs_stay_finite_for_any_valid_setpoint(target, velocity, effort):
    """Any finite setpoint, even beyond the limits, gives finite outputs and the end
    stops keep every joint within 0.1 rad of its range."""
    arm, clock = make_arm()
    arm.enable()
    command = JointCommand(np.array(target), np.array(velocity), np.array(effort))
    samples = run(arm, clock, 0.3, lambda t: command, period=0.01)
    for s in samples:
        for values in (s.position, s.velocity, s.effort, s.wrench):
            assert np.all(np.isfinite(values))
        assert np.all((s.position > arm.robot.lower - 0.1) & (s.position < arm.robot.upper + 0.1))


@pytest.mark.parametrize("field", ["position", "velocity", "effort"])
@pytest.mark.parametrize("bad", [np.zeros(3), np.array([0.0, np.nan, 0.0, 0.0]),
                                 np.array([0.0, 0.0, np.inf, 0.0])])
def test_write_rejects_bad_commands_naming_the_field(field, bad):
    """write() raises ValueError naming the field for a wrong length or NaN/inf."""
    arm, _ = make_arm()
    arm.enable()
    fields = {"position": HOME, "velocity": np.zeros(4), "effort": np.zeros(4), field: bad}
    with pytest.raises(ValueError, match=f"command.{field}"):
        arm.write(JointCommand(**fields))


def test_close_is_idempotent_and_disables():
    """close() disables, may be called twice, and a closed arm refuses enable()."""
    arm, _ = make_arm()
    arm.enable()
    arm.close()
    arm.close()
    assert not arm.enabled
    with pytest.raises(HardwareError):
        arm.enable()
    with make_arm()[0] as other:
        other.enable()
    assert not other.enabled


# -- time ------------------------------------------------------------------------


def test_is_deterministic_with_a_fake_clock(robot):
    """Two arms fed the same clock readings and calls produce identical samples."""
    runs = []
    for _ in range(2):
        arm, clock = make_arm()
        arm.enable()
        samples = run(arm, clock, 0.3, ramp_command(robot, HOME, [0.5, 0.3, 0.5, 1.0]))
        arm.disable()
        samples += run(arm, clock, 0.1)
        runs.append(np.concatenate([np.r_[s.stamp, s.position, s.velocity, s.effort, s.wrench]
                                    for s in samples]))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_read_steps_the_physics_up_to_the_clock():
    """read() stamps equal the clock on the step grid; advance_to() steps ahead of it."""
    arm, clock = make_arm()
    clock.t = 0.0125
    assert arm.read().stamp == pytest.approx(0.012)
    arm.advance_to(0.5)
    assert arm.time == pytest.approx(0.5)
    assert arm.read().stamp == pytest.approx(0.5)  # the clock lags: no step back


def test_clock_starts_where_the_injected_clock_is():
    """Stamps are on the injected clock's time base, whatever its origin."""
    clock = FakeClock(1000.0)
    arm = SimulatedArm(clock=clock)
    clock.t = 1000.25
    assert arm.read().stamp == pytest.approx(1000.25)


def test_catch_up_is_capped_to_one_second():
    """After a 10 s clock jump one read() simulates only 1 s; the stamp still
    follows the clock."""
    arm, clock = make_arm()
    steps = []
    original = arm._step
    arm._step = lambda: (steps.append(1), original())[1]
    clock.t = 10.0
    sample = arm.read()
    assert len(steps) == 1000
    assert sample.stamp == pytest.approx(10.0)


# -- human load and the F/T sensor -----------------------------------------------


def test_ft_sensor_reads_the_forearm_weight_when_hanging():
    """With the arm hanging at rest (the limb relaxed) the cuff carries the
    forearm's weight (~15 N), pulling down along the forearm (-z of the sensor),
    with no torque."""
    hanging = [0.0, 0.0, 0.0, 0.0]
    arm, clock = make_arm(initial_position=hanging, human_load={"rest_position": hanging})
    wrench = run(arm, clock, 0.5, period=0.01)[-1].wrench
    np.testing.assert_allclose(wrench[:3], [0.0, 0.0, -FOREARM_WEIGHT], atol=1e-6)
    np.testing.assert_allclose(wrench[3:], 0.0, atol=1e-6)


def test_ft_wrench_is_consistent_with_the_simulated_motion(robot):
    """During a fast move the F/T force equals -m (a_com - g) of the forearm load,
    with a_com from finite differences of its centre of mass along the trajectory."""
    arm, clock = make_arm()
    arm.enable()

    def command(t):
        position = HOME + np.array([0.4, 0.3, 0.5, 0.8]) * math.sin(2.0 * t)
        velocity = np.array([0.4, 0.3, 0.5, 0.8]) * 2.0 * math.cos(2.0 * t)
        return JointCommand(position, velocity, robot.gravity_torques(position))

    samples = run(arm, clock, 0.6, command, period=0.001)
    offset = DEFAULT_HUMAN_LOAD["forearm_com"]

    def com(q):
        pose = robot.forward_kinematics(q, "cuff_link")
        return pose[:3, 3] + pose[:3, 2] * offset  # cuff +z points to the elbow

    # The wrench of a sample belongs to the step that ended at that sample, i.e.
    # to the state of the sample before it.
    m = DEFAULT_HUMAN_LOAD["forearm_mass"]
    for k in range(100, 600, 50):
        a_com = (com(samples[k + 1].position) - 2 * com(samples[k].position)
                 + com(samples[k - 1].position)) / 0.001**2
        expected_world = -m * (a_com - np.array([0.0, 0.0, -G]))
        rotation = robot.forward_kinematics(samples[k - 1].position, "ft_sensor_link")[:3, :3]
        measured_world = rotation @ samples[k].wrench[:3]
        assert np.linalg.norm(a_com) > 0.5  # the test is not static
        np.testing.assert_allclose(measured_world, expected_world, atol=0.05 * FOREARM_WEIGHT)


def test_limb_resistance_pulls_toward_its_rest_posture(robot):
    """A stiff elbow (massless limb) held 1 rad from rest costs the drive K·1 rad
    more than robot gravity, and the cuff feels it as a pure couple about the elbow."""
    load = {"upper_arm_mass": 0.0, "forearm_mass": 0.0, "stiffness": [0.0, 0.0, 0.0, 5.0]}
    pose = HOME + np.array([0.0, 0.0, 0.0, 1.0])
    arm, clock = make_arm(initial_position=list(pose), human_load=load)
    sample = run(arm, clock, 0.5, period=0.01)[-1]
    extra = sample.effort - robot.gravity_torques(sample.position)
    np.testing.assert_allclose(extra, [0.0, 0.0, 0.0, 5.0], atol=1e-3)
    # Elbow axis is -y of the sensor frame; the limb pulls toward smaller flexion.
    np.testing.assert_allclose(sample.wrench, [0, 0, 0, 0, 5.0, 0], atol=1e-3)


def test_without_a_limb_the_hold_torque_is_the_robot_gravity(robot):
    """With a zero human load the holding effort equals ArmModel's gravity torques,
    and with the default limb it is larger: the limb loads the joints."""
    pose = [1.2, 0.6, 0.3, 1.5]
    none = {"upper_arm_mass": 0.0, "forearm_mass": 0.0, "stiffness": 0.0, "damping": 0.0}
    bare, clock = make_arm(initial_position=pose, human_load=none)
    effort = run(bare, clock, 0.2, period=0.01)[-1].effort
    np.testing.assert_allclose(effort, robot.gravity_torques(pose), atol=1e-6)
    loaded, clock = make_arm(initial_position=pose, human_load={"stiffness": 0.0})
    loaded_effort = run(loaded, clock, 0.2, period=0.01)[-1].effort
    assert loaded_effort[0] > effort[0] + 3.0


# -- options ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "option, value",
    [
        ("rate_hz", 500.0),
        ("rate_hz", float("nan")),
        ("rate_hz", float("inf")),
        ("rate_hz", "1000"),
        ("clock", 3.0),
        ("quick_stop_time", 0.0),
        ("quick_stop_time", -0.01),
        ("quick_stop_time", float("nan")),
        ("rest_velocity", -0.01),
        ("rest_velocity", float("inf")),
        ("initial_position", [0.0, 0.1, 0.0]),
        ("initial_position", [0.0, 0.1, 0.0, 3.0]),
        ("initial_position", [0.0, float("nan"), 0.0, 0.3]),
        ("stiffness", -1.0),
        ("stiffness", [100.0, 100.0]),
        ("stiffness", 1e9),
        ("damping", [1.0, 1.0, float("inf"), 1.0]),
        ("damping", 1e4),
        ("human_load", {"forearm_mass": -1.0}),
        ("human_load", {"shoe_size": 42}),
        ("human_load", [1.0]),
        ("human_load", {"stiffness": [1.0, float("nan"), 1.0, 1.0]}),
        ("robot_description", "/nonexistent/arm.urdf"),
        ("robot_description", 42),
    ],
)
def test_bad_option_values_raise_config_error_naming_the_option(option, value):
    """Each bad hardware option value is a ConfigError that names the option."""
    with pytest.raises(ConfigError, match=option):
        SimulatedArm(**{"clock": FakeClock(), option: value})


def test_unknown_option_is_a_type_error():
    """An option the backend does not know fails in the signature (TypeError)."""
    with pytest.raises(TypeError):
        SimulatedArm(clock=FakeClock(), gain=3.0)


def test_urdf_with_other_joint_names_is_refused(tmp_path):
    """A robot_description whose joints are not the contract's is a ConfigError."""
    from rehab_robot import resources

    urdf = tmp_path / "renamed.urdf"
    urdf.write_text(resources.default_urdf().read_text().replace("elbow_flexion", "elbow"))
    with pytest.raises(ConfigError, match="robot_description"):
        SimulatedArm(robot_description=str(urdf), clock=FakeClock())


def test_runs_on_the_real_clock_by_default():
    """With the default clock the stamps follow time.monotonic()."""
    import time

    arm = SimulatedArm()
    time.sleep(0.02)
    sample = arm.read()
    assert abs(sample.stamp - time.monotonic()) < 0.05
    assert sample.at_rest
