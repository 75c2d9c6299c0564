"""Unit tests of the operator's command line (rehab_robot.operator): the status screen, options, domain."""

import math

import pytest

from rehab_robot import launcher, operator
from rehab_robot.errors import ConfigError


def full_state(**overrides):
    """A state snapshot in which every topic gave data just now."""
    state = operator.empty_state(42, "/clinic_a")
    state.update(
        clock="10:11:12",
        session={"level": 0, "message": "repetition 2: to end angle", "values": {
            "state": "running", "step": "repetition 2: to end angle", "repetition": "2",
            "repetitions_completed": "1", "repetitions_planned": "5", "progress": "0.350",
            "elapsed_s": "42.4", "remaining_s": "77.0", "joint": "elbow_flexion", "target_rad": "1.3000",
            "last_event": "repetition 1 completed", "last_event_time_s": "30.100",
        }},
        joints=[("shoulder_flexion", 0.0), ("elbow_flexion", 0.5)],
        force_n=3.26,
        heartbeat=True,
        safety={"level": 0, "message": "motion permitted", "values": {"motion_permitted": "True", "latched": "False"}},
        hardware={"level": 0, "message": "following", "values": {"state": "following", "backend": "sim"}},
        age_s={topic: 0.05 for topic in operator.STATUS_TOPICS},
    )
    state.update(overrides)
    return state


def test_screen_shows_everything_the_operator_needs():
    """Session state, k/N, elapsed and remaining, angles in deg and rad, force, safety, driver, last event."""
    screen = operator.render_status(full_state())
    assert "ROS_DOMAIN_ID 42" in screen and "namespace /clinic_a" in screen
    assert "RUNNING: repetition 2: to end angle" in screen
    assert "repetition 2/5  (1 completed)" in screen
    assert "progress 35 %" in screen
    assert "elapsed 0:42" in screen and "remaining ~1:17" in screen
    elbow = next(line for line in screen.splitlines() if "elbow_flexion" in line and "Joints" not in line
                 and "target" not in line)
    assert f"{math.degrees(0.5):.1f} deg" in elbow and "0.500 rad" in elbow
    assert f"{math.degrees(1.3):.1f} deg" in screen and "1.300 rad" in screen  # the target
    assert "force 3.3 N" in screen
    assert "motion PERMITTED" in screen
    assert "FOLLOWING" in screen and "[sim]" in screen
    assert "[0:30] repetition 1 completed" in screen
    assert "no data" not in screen and "stale" not in screen
    assert "\033" not in screen, "the renderer returns plain text; clearing the terminal is the caller's"


def test_screen_names_the_topics_that_gave_no_data():
    """Before data arrives, each part says which topic it waits for, and the silent ones are listed."""
    state = full_state(joints=None, force_n=None)
    state["age_s"].update({"joint_states": None, "ft_sensor/wrench": None})
    screen = operator.render_status(state)
    assert "(no data on joint_states)" in screen
    assert "(no data on ft_sensor/wrench)" in screen
    assert screen.splitlines()[-1] == "no data yet from: joint_states, ft_sensor/wrench"
    assert operator.missing_topics(state) == ["joint_states", "ft_sensor/wrench"]

    empty = operator.render_status(operator.empty_state(7, "/"))
    for topic in operator.STATUS_TOPICS:
        assert f"(no data on {topic})" in empty


def test_stale_data_and_a_lost_heartbeat_are_marked():
    """Old joint states are flagged with their age; a heartbeat older than a second reads as lost."""
    state = full_state()
    state["age_s"].update({"joint_states": 3.24, "safety/heartbeat": 2.0})
    screen = operator.render_status(state)
    joints_line = next(line for line in screen.splitlines() if line.startswith("Joints"))
    assert "stale: 3.2 s old" in joints_line
    assert "HEARTBEAT LOST (2.0 s" in screen
    assert "motion PERMITTED" not in screen


def test_stopped_and_latched_safety_and_a_driver_fault():
    """A latched stop says it needs a reset; a driver fault shows its reason."""
    screen = operator.render_status(full_state(
        heartbeat=False,
        safety={"level": 2, "message": "stop latched: e-stop requested (safety/estop)",
                "values": {"motion_permitted": "False", "latched": "True"}},
        hardware={"level": 2, "message": "elbow drive overcurrent", "values": {"state": "fault"}},
    ))
    assert "motion STOPPED" in screen
    assert "stop latched: e-stop requested (safety/estop)   LATCHED (needs reset)" in screen
    assert "FAULT: elbow drive overcurrent" in screen


def test_bad_numbers_do_not_break_the_screen():
    """NaN angles, an empty target and garbled times show as '?' or are left out, never a crash."""
    state = full_state(joints=[("elbow_flexion", float("nan")), ("wrist", None)], force_n=float("inf"))
    state["session"]["values"].update(elapsed_s="abc", remaining_s="", target_rad="", progress="nan")
    screen = operator.render_status(state)
    assert "elapsed ?" in screen and "remaining ~?" in screen and "progress ?" in screen
    assert "target" not in screen
    assert "elbow_flexion  ?" in screen and "wrist          ?" in screen
    assert "force ? N" not in screen and "force ?" in screen


def test_idle_session_before_any_event():
    """An idle session: repetition 0, and no last event yet."""
    state = full_state()
    state["session"] = {"level": 0, "message": "idle", "values": {
        "state": "idle", "repetition": "0", "repetitions_completed": "0", "repetitions_planned": "3",
        "progress": "0.000", "elapsed_s": "0.0", "remaining_s": "3725.0", "target_rad": "", "last_event": ""}}
    screen = operator.render_status(state)
    assert "Session   IDLE\n" in screen
    assert "repetition 0/3" in screen
    assert "remaining ~1:02:05" in screen
    assert "last event (none yet)" in screen


@pytest.mark.parametrize("seconds, text", [(0, "0:00"), (59.4, "0:59"), (61, "1:01"), (3600, "1:00:00"),
                                           (None, "?"), (-1, "?"), (float("nan"), "?")])
def test_format_duration(seconds, text):
    """Durations read m:ss, h:mm:ss from an hour, ? when unknown."""
    assert operator.format_duration(seconds) == text


def test_domain_comes_from_the_option_then_the_environment_then_zero():
    """--domain wins, then ROS_DOMAIN_ID, then the ROS default 0; bad ids are refused by name."""
    assert operator.resolve_domain(5, {"ROS_DOMAIN_ID": "9"}) == 5
    assert operator.resolve_domain(None, {"ROS_DOMAIN_ID": "9"}) == 9
    assert operator.resolve_domain(None, {}) == 0
    with pytest.raises(ConfigError, match="ROS_DOMAIN_ID='x9' is not a number"):
        operator.resolve_domain(None, {"ROS_DOMAIN_ID": "x9"})
    with pytest.raises(ConfigError, match="--domain 233 is out of range; allowed: 0 to 232"):
        operator.resolve_domain(233, {})


def test_dds_is_kept_on_localhost(monkeypatch):
    """Before rclpy starts, discovery is confined to this machine and the domain is set."""
    # setenv first: monkeypatch then restores these keys, which keep_dds_local writes, after the test.
    for key in ("ROS_DOMAIN_ID", "ROS_LOCALHOST_ONLY", "RMW_IMPLEMENTATION"):
        monkeypatch.setenv(key, "")
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "SUBNET")
    monkeypatch.setenv("ROS_DISTRO", "humble")  # an older distro also needs ROS_LOCALHOST_ONLY
    operator.keep_dds_local(17)
    import os

    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert os.environ["ROS_LOCALHOST_ONLY"] == "1"
    assert os.environ["ROS_DOMAIN_ID"] == "17"


def test_jazzy_is_not_given_the_deprecated_localhost_only(monkeypatch):
    """On Jazzy ROS_LOCALHOST_ONLY would make rcl warn on every command: the discovery range suffices."""
    for key in ("ROS_DOMAIN_ID", "RMW_IMPLEMENTATION", "ROS_AUTOMATIC_DISCOVERY_RANGE"):
        monkeypatch.setenv(key, "")
    monkeypatch.delenv("ROS_LOCALHOST_ONLY", raising=False)
    monkeypatch.setenv("ROS_DISTRO", "jazzy")
    operator.keep_dds_local(18)
    import os

    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert "ROS_LOCALHOST_ONLY" not in os.environ


@pytest.mark.parametrize("argv, message", [
    (["pause", "--timeout", "0"], "--timeout 0 is not allowed"),
    (["status", "--once", "--rate", "-1"], "--rate -1 is not allowed"),
    (["estop", "--domain", "999"], "--domain 999 is out of range"),
])
def test_bad_options_are_one_line_errors(argv, message, capsys):
    """Bad options end with exit status 2 and one line naming the option, before any ROS traffic."""
    assert launcher.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_every_operator_command_is_a_subcommand():
    """estop, reset, pause, resume, stop call their services; status has --once."""
    parser = launcher.build_parser()
    for command, service in operator.COMMAND_SERVICES.items():
        args = parser.parse_args([command, "--namespace", "/a", "--domain", "3", "--timeout", "2.5"])
        assert (args.func, args.command, args.namespace, args.domain, args.timeout) == (
            operator.cmd_service, command, "/a", 3, 2.5)
        assert service.split("/")[0] in ("safety", "session")
    args = parser.parse_args(["status", "--once"])
    assert args.func is operator.cmd_status and args.once and args.timeout == operator.DEFAULT_TIMEOUT
