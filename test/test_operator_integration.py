"""Integration: operating a running session from a second terminal with `rehab-robot`.

The driver (sim), safety supervisor, motion controller and session manager run as
separate processes over real DDS (localhost, a domain of this test's own). The operator
commands run as `python -m rehab_robot.launcher ...` subprocesses in that domain, as a
clinician would type them; the test client watches session/status for their effect.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import pytest
from diagnostic_msgs.msg import DiagnosticStatus

from conftest import wait_for
from rehab_robot import resources
from rehab_robot.nodes.common import subscriber_qos
from rehab_robot.ros_env import localhost_env

pytestmark = pytest.mark.integration

PROTOCOL = """\
protocol:
  name: long_elbow_rom
  type: passive_rom
  joint: elbow_flexion
  start_angle: 0.4
  end_angle: 1.6
  repetitions: 10
  movement_duration: 2.5
  hold_duration: 0.3
"""

#: Generous: the machine may be busy; a command on a running graph takes about a second.
COMMAND_TIMEOUT = 15.0


def operator(domain_id: int, *args: str) -> subprocess.CompletedProcess:
    """Run `rehab-robot <args>` in the test's domain; return its exit status and output."""
    return subprocess.run(
        [sys.executable, "-m", "rehab_robot.launcher", *args, "--timeout", str(COMMAND_TIMEOUT)],
        env=localhost_env(domain_id), capture_output=True, text=True, timeout=COMMAND_TIMEOUT + 30,
    )


def test_operator_commands_drive_the_session(start_node, ros_client, tmp_path, domain_id):
    """pause / resume / status --once / estop / resume refused / reset / stop, each answered and effective."""
    protocol = tmp_path / "long.yaml"
    protocol.write_text(PROTOCOL)
    status = {}
    ros_client.create_subscription(
        DiagnosticStatus, "session/status", lambda msg: status.update({kv.key: kv.value for kv in msg.values}),
        subscriber_qos("session/status"),
    )
    patient = str(resources.example_patient())
    nodes = [
        start_node("driver_node", "hardware_driver", hardware="sim"),
        start_node("supervisor_node", "safety_supervisor", patient=patient),
        start_node("controller_node", "motion_controller"),
        start_node("session_node", "session_manager", patient=patient, protocol=str(protocol),
                   session_dir=str(tmp_path / "session"), autostart=True),
    ]
    wait_for(lambda: status.get("state") == "running", 60, "the session to start", nodes)

    def run(*args):
        result = operator(domain_id, *args)
        assert "Traceback" not in result.stderr + result.stdout, result.stderr
        return result

    paused = run("pause")
    # On a busy machine an automatic interruption may have paused the session a moment
    # before: the pause then makes it the clinician's ("... it was already paused ...").
    assert paused.returncode == 0 and paused.stdout.startswith("/session/pause: success: session"), paused.stdout
    wait_for(lambda: status.get("state") == "paused", 5, "the session to pause", nodes)
    assert status["last_event"].startswith("paused by the clinician")
    frozen = status["remaining_s"]
    time.sleep(0.5)
    assert status["remaining_s"] == frozen, "the remaining time waits while the session is paused"
    assert status["state"] == "paused"

    resumed = run("resume")
    assert (resumed.returncode, resumed.stdout) == (0, "/session/resume: success: session resumed\n")
    wait_for(lambda: status.get("state") == "running", 5, "the session to resume", nodes)

    screen = run("status", "--once")
    assert screen.returncode == 0, screen.stdout + screen.stderr
    # A busy machine can make the supervisor pause the session for a moment (stale joint_states): either state.
    assert re.search(r"^Session   (RUNNING|PAUSED)", screen.stdout, re.M), screen.stdout
    assert "repetition " in screen.stdout and "/10" in screen.stdout
    for joint in ("shoulder_flexion", "shoulder_abduction", "shoulder_rotation", "elbow_flexion"):
        assert joint in screen.stdout
    assert "deg" in screen.stdout and "rad" in screen.stdout and "force " in screen.stdout
    assert re.search(r"^Safety    motion (PERMITTED|STOPPED)", screen.stdout, re.M), screen.stdout
    assert re.search(r"^Driver    [A-Z]+", screen.stdout, re.M), screen.stdout
    assert "no data" not in screen.stdout

    estop = run("estop")
    assert estop.returncode == 0 and estop.stdout.startswith("/safety/estop: success: stop latched")
    wait_for(lambda: status.get("state") == "paused", 5, "the e-stop to pause the session", nodes)
    assert status["last_event"].startswith("motion interrupted")

    refused = run("resume")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert refused.stdout.startswith("/session/resume: REFUSED: cannot resume: the safety supervisor")

    reset = run("reset")
    for _ in range(5):
        # A busy machine can delay the controller's commands past the supervisor's 100 ms: a transient
        # cause that keeps the latch; the operator retries, as at the arm.
        if reset.returncode != 1 or "stale" not in reset.stdout:
            break
        time.sleep(0.5)
        reset = run("reset")
    assert reset.returncode == 0 and reset.stdout.startswith("/safety/reset: success: stop cleared"), reset.stdout

    stopped = run("stop")
    assert (stopped.returncode, stopped.stdout) == (0, "/session/stop: success: session stopped\n")
    wait_for(lambda: status.get("state") == "stopped", 5, "the session to stop", nodes)
    assert status["last_event"] == "session stopped: stopped by the clinician"
    assert float(status["remaining_s"]) == 0.0
    assert float(frozen) > 0.0, "time remained while paused"
    assert float(status["elapsed_s"]) > 0.0
    assert int(status["repetition"]) == int(status["repetitions_completed"])


def test_a_service_nobody_offers_is_one_clear_line(domain_id):
    """With no graph in the namespace: exit status 2 and one line naming the service and what to check."""
    result = subprocess.run(
        [sys.executable, "-m", "rehab_robot.launcher", "pause", "--namespace", "/nowhere", "--timeout", "1"],
        env=localhost_env(domain_id), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "service /nowhere/session/pause not available within 1 s" in lines[0]
    assert f"ROS_DOMAIN_ID {domain_id}" in lines[0]


def test_live_status_refreshes_and_ends_quietly_on_ctrl_c(domain_id):
    """`rehab-robot status` redraws until Ctrl-C, then exits 0 without a traceback."""
    process = subprocess.Popen(
        [sys.executable, "-m", "rehab_robot.launcher", "status", "--namespace", "/nowhere", "--rate", "10"],
        env=localhost_env(domain_id), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        screens = 0
        for line in process.stdout:
            screens += line.startswith("rehab_robot status")
            if screens == 3:
                break
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert screens == 3, err
    assert process.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
