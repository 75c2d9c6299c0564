"""Integration: a spasm in the real graph is detected, reacted to within 50 ms, and recorded.

`rehab-robot run` starts the whole graph (every node its own process, real DDS on
localhost, a domain of this test's own) on an active_assist exercise. The sim's virtual
patient has a scripted spasm, an elbow extension against the flexion, 3 s after the first
target it is shown (``after: first_target``, so the graph's start-up time does not matter).
Once the controller's event shows in the log the test stops the session and reads what a
researcher gets: the report and the bag. bench/bench_spasm.py prints the same numbers.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rehab_robot import resources
from rehab_robot.recording.spasm_timing import spasm_timing
from rehab_robot.ros_env import localhost_env

pytestmark = pytest.mark.integration

PROTOCOL = """\
protocol:
  name: spasm_active_assist
  type: active_assist
  joint: elbow_flexion
  start_angle: 0.6
  end_angle: 1.2
  repetitions: 3
  movement_duration: 1.5
  movement_timeout: 5.0
  target_tolerance: 0.08
  spasm_reaction: compliant_hold
"""

PATIENT_OPTIONS = ("{virtual_patient: {effort: 0.8, impairment: 0.3, peak_speed: 0.8, seed: 1, events: "
                   "[{type: spasm, after: first_target, time: 3.0, duration: 0.6, torque: {elbow_flexion: -15.0}}]}}")

#: The requirement (issue 8): spasm onset to reaction in at most this [s].
SPASM_REACTION_BOUND = 0.050


def run_until_spasm(tmp_path: Path, domain_id: int, timeout: float = 60.0):
    """Run the session; once the controller logs the spasm, stop it. Return (status, output, folder, seen)."""
    protocol = tmp_path / "protocol.yaml"
    protocol.write_text(PROTOCOL)
    env = localhost_env(domain_id)
    args = [sys.executable, "-m", "rehab_robot.launcher", "run", f"patient:={resources.example_patient()}",
            f"protocol:={protocol}", f"output_dir:={tmp_path / 'sessions'}", "session_id:=it",
            f"hardware_options:={PATIENT_OPTIONS}"]
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    seen = threading.Event()

    def pump():
        for line in process.stdout:
            lines.append(line)
            if "spasm at" in line:
                seen.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline and not seen.wait(0.2):
        pass
    if seen.is_set():
        time.sleep(1.0)  # let the reaction run and be recorded
        subprocess.run([sys.executable, "-m", "rehab_robot.launcher", "stop", "--domain", str(domain_id),
                        "--timeout", "10"], env=env, capture_output=True, timeout=60, check=False)
    else:
        process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=40)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
    reader.join(5)
    return process.returncode, "".join(lines), tmp_path / "sessions" / "it", seen.is_set()


def test_spasm_is_detected_and_reacted_to_within_50_ms_in_the_real_graph(tmp_path, domain_id):
    """The controller detects the scripted spasm, reacts with compliant_hold, publishes the event; the
    session pauses and records it; in the bag the reaction's first drive command is stamped within
    50 ms of the spasm's onset (measured 7 to 14 ms on the 2-core development machine)."""
    status, output, session, seen = run_until_spasm(tmp_path, domain_id)
    assert seen, f"the controller never logged a spasm:\n{output[-5000:]}"
    report = json.loads((session / "report.json").read_text())
    assert report["ended"] == "stopped", f"{report['end_reason']}\n{output[-4000:]}"
    assert "Traceback" not in output

    # The session recorded the controller's event and paused (manual resume only).
    spasms = [e for e in report["controller_events"] if e["event"] == "spasm"]
    assert len(spasms) == 1, report["controller_events"]
    assert spasms[0]["joint"] == "elbow_flexion" and spasms[0]["reaction"] == "compliant_hold"
    events = [e["event"] for e in report["events"]]
    assert any(e.startswith("spasm: spasm at elbow_flexion") for e in events), events
    assert events[-1].startswith("session stopped"), "after the spasm the exercise waited (paused) until the stop"

    # The bag: the event on controller/events and the onset and reaction from its stamps.
    timing = spasm_timing(session / "bag")
    assert timing["event"] is not None, "no spasm on controller/events in the bag"
    assert timing["event"]["reaction"] == "compliant_hold"
    assert float(timing["event"]["force"]) > 10.0
    assert timing["onset"] is not None, "no departure of the cuff force or joint torque in the bag"
    assert timing["onset"] <= timing["controller_onset"] + 0.005, "the analysis found the onset after the detector"
    assert timing["command_stamp"] is not None, "no joint_commands after the detection"
    assert 0.0 <= timing["to_command_ms"] <= SPASM_REACTION_BOUND * 1e3, timing
    assert timing["to_detection_ms"] <= SPASM_REACTION_BOUND * 1e3, timing
