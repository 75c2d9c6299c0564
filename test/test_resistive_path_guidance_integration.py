"""Integration: resistive and path_guidance sessions through the whole graph (real processes, real DDS).

`rehab-robot run` on the shipped examples of the two types (one repetition each, so that the
tests stay short) with the sim's virtual patient, as `rehab-robot demo --exercise TYPE` runs
them. The tests read what a researcher gets: the report and the bag.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import yaml
from rosbags.highlevel import AnyReader

from conftest import run_rehab_robot
from rehab_robot import resources

REPO = Path(__file__).resolve().parent.parent
REPORT_SCHEMA = json.loads((REPO / "docs" / "report.schema.json").read_text())

pytestmark = pytest.mark.integration

#: The demo's virtual patient (rehab_robot.session.exercises.DEMO_VIRTUAL_PATIENT).
DEMO_PATIENT = "{virtual_patient: {effort: 0.5, impairment: 0.6, reaction_delay: 0.2, peak_speed: 0.8, seed: 1}}"
#: A weaker patient (effort 0.3): its whole voluntary push stays below the controller's spasm threshold
#: (30 N). (The demo patient, once shown the first waypoint while the arm was brought there at the speed
#: cap, pushed against that faster approach with ~30 N and the controller took it for a spasm; the
#: session now shows no target during the approach: test_path_guidance_demo_...)
GUIDED_PATIENT = "{virtual_patient: {effort: 0.3, impairment: 0.6, reaction_delay: 0.2, peak_speed: 0.8, seed: 1}}"

#: Weight of the simulated forearm and hand [N] (sim.DEFAULT_HUMAN_LOAD forearm_mass 1.5 kg): what the
#: channel's spring may have to carry where the weight support falls short.
FOREARM_WEIGHT = 1.5 * 9.81


def shipped_protocol(tmp_path: Path, name: str, **changes) -> tuple[Path, dict]:
    """The shipped example ``config/protocols/NAME.yaml`` with ``changes``, written to ``tmp_path``."""
    document = yaml.safe_load((REPO / "config" / "protocols" / f"{name}.yaml").read_text())
    document["protocol"].update(changes)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path, document["protocol"]


def run(tmp_path: Path, domain_id: int, protocol: Path, options: str, timeout: float = 60.0):
    """Run `rehab-robot run`; return (exit status, output, session folder)."""
    status, output = run_rehab_robot(
        ["run", f"patient:={resources.example_patient()}", f"protocol:={protocol}",
         f"output_dir:={tmp_path / 'sessions'}", "session_id:=it", f"hardware_options:={options}"],
        domain_id, timeout)
    return status, output, tmp_path / "sessions" / "it"


def completed_report(status: int, output: str, session: Path) -> dict:
    """The session's report, which must say completed: every movement ended, no controller event.

    A session that a lost safety heartbeat interrupted (the machine too busy for the driver's
    50 ms watchdog) waits for a clinician's resume and is stopped at the time-out: xfail, since
    nothing about the exercise can be judged then.
    """
    report = json.loads((session / "report.json").read_text())
    interruptions = [e["event"] for e in report["events"] if e["event"].startswith("motion interrupted")]
    if report["ended"] != "completed" and interruptions:
        pytest.xfail(f"the session was interrupted and waited for a clinician: {interruptions[0]}")
    assert report["ended"] == "completed", f"{report['end_reason']}\n{output[-4000:]}"
    assert status == 0 and "Traceback" not in output
    jsonschema.validate(report, REPORT_SCHEMA)
    assert not report["controller_events"], report["controller_events"]
    return report


def resistance_and_velocity(bag: Path, joint: str = "elbow_flexion") -> list[tuple[float, float]]:
    """Pairs (resistance torque [N·m], joint velocity [rad/s]) of ``joint``: the controller's
    ``resistive_torque`` from its /diagnostics, the velocity from the joint_states sample nearest
    in time (header stamps)."""
    torques, stamps, velocity = [], [], []
    with AnyReader([bag]) as reader:
        connections = [c for c in reader.connections if c.topic in ("/diagnostics", "/joint_states")]
        for connection, _, raw in reader.messages(connections=connections):
            msg = reader.deserialize(raw, connection.msgtype)
            stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            if connection.topic == "/joint_states":
                index = list(msg.name).index(joint)
                stamps.append(stamp)
                velocity.append(msg.velocity[index])
                continue
            for status in msg.status:
                values = {kv.key: kv.value for kv in status.values}
                if status.name.endswith("motion_controller") and values.get("mode") == "resistive" \
                        and values.get("resistive_torque"):
                    torques.append((stamp, float(values["resistive_torque"].split()[3])))
    stamps, velocity = np.array(stamps), np.array(velocity)
    order = np.argsort(stamps)
    stamps, velocity = stamps[order], velocity[order]
    pairs = []
    for stamp, torque in torques:
        k = int(np.clip(np.searchsorted(stamps, stamp), 1, len(stamps) - 1))
        k = k if abs(stamps[k] - stamp) < abs(stamps[k - 1] - stamp) else k - 1
        if abs(stamps[k] - stamp) < 0.01:
            pairs.append((torque, float(velocity[k])))
    return pairs


def test_resistive_session_resists_the_patients_motion(tmp_path, domain_id):
    """The shipped resistive example (viscous, 1 N·m·s/rad, elastic 0; end angle 1.0 rad) with the demo patient: the
    session completes with its metrics; while the elbow moves, the controller's resistance torque is
    against the motion and is the set damping times the speed (tau = -B v)."""
    # The demo patient stalls near 1.07 rad against the forearm's weight: an end angle it reaches
    # keeps the session short (no 6 s time-out per repetition).
    protocol, fields = shipped_protocol(tmp_path, "resistive_elbow", repetitions=2, end_angle=1.0)
    assert fields["resistive_stiffness"] == 0.0
    damping = fields["resistive_damping"]
    status, output, session = run(tmp_path, domain_id, protocol, DEMO_PATIENT)
    report = completed_report(status, output, session)
    # Each repetition's start-posture trajectory starts where the (sagged) arm is: none refused.
    assert "trajectory refused" not in output, output[-4000:]
    session = tmp_path / "sessions" / "it"
    assert report["exercise"]["controller_mode"] == "resistive"
    assert len(report["repetitions"]) == 2
    for rep in report["repetitions"]:
        metrics = rep["metrics"]
        assert metrics["rom"]["elbow_flexion"]["range"] > 0.2, "the patient moved the elbow"
        assert 0.1 < metrics["peak_speed"] < 1.25
        assert metrics["patient_work"] > 0.1
        assert metrics["patient_work_share"] > 0.5, "the patient does most of the positive work against a resistance"

    # /diagnostics comes once a second: a few samples fall into the movements.
    pairs = resistance_and_velocity(session / "bag")
    moving = [(tau, v) for tau, v in pairs if abs(v) > 0.15]
    assert len(pairs) >= 5 and moving, pairs
    for tau, v in moving:
        assert tau * v < 0.0, f"resistance {tau} N·m does not oppose the velocity {v} rad/s"
        assert tau == pytest.approx(-damping * v, abs=0.05 + 0.3 * abs(damping * v)), (tau, v)
    assert all(abs(tau) <= fields["resistive_max_torque"] + 1e-6 for tau, _ in pairs)


def test_path_guidance_session_keeps_the_hand_near_the_path(tmp_path, domain_id):
    """The shipped path_guidance example through two waypoints, with the limb's weight supported: the
    session completes; the report gives the path-length ratio and the largest deviation of the cuff from
    the path, which the channel keeps within its width plus what its spring yields to the patient's push
    and the forearm's weight. (Without weight support: the next test.)"""
    protocol, fields = shipped_protocol(tmp_path, "path_guidance_reach", repetitions=1, weight_support=1.0)
    report = completed_report(*run(tmp_path, domain_id, protocol, GUIDED_PATIENT))
    assert report["exercise"]["controller_mode"] == "path_guidance"
    assert report["exercise"]["joints"] == ["shoulder_flexion", "elbow_flexion"]
    (rep,) = report["repetitions"]
    assert [m["target"] for m in rep["movements"]] == [fields["waypoints"][1], fields["waypoints"][0]]
    metrics = rep["metrics"]
    assert metrics["rom"]["shoulder_flexion"]["range"] > 0.1 and metrics["rom"]["elbow_flexion"]["range"] > 0.1, \
        "the patient moved along the path, both joints together"
    assert metrics["path_length_ratio"] is not None and metrics["path_length_ratio"] >= 1.0
    deviation = metrics["max_path_deviation"]
    assert deviation is not None and deviation > 0.0
    bound = fields["channel_width"] + (metrics["peak_interaction_force"] + FOREARM_WEIGHT) / fields["guidance_stiffness"]
    assert deviation <= bound + 0.01, f"deviation {deviation:.3f} m beyond the channel's bound {bound:.3f} m"
    assert report["session_metrics"]["max_path_deviation"] == pytest.approx(deviation)


def peak_joint_speed(bag: Path) -> float:
    """Largest |velocity| [rad/s] of any joint in the bag's joint_states."""
    peak = 0.0
    with AnyReader([bag]) as reader:
        connections = [c for c in reader.connections if c.topic == "/joint_states"]
        for connection, _, raw in reader.messages(connections=connections):
            msg = reader.deserialize(raw, connection.msgtype)
            peak = max([peak, *(abs(v) for v in msg.velocity)])
    return peak


def test_path_guidance_demo_without_weight_support_has_no_spasm_and_no_stop(tmp_path, domain_id):
    """The shipped path_guidance example as `rehab-robot demo --exercise path_guidance` runs it (the demo
    patient, no weight support), one repetition: no false spasm during the approach (no target shows
    while the robot brings the arm to the path), and the limb dropping into the channel stays below the
    supervisor's speed limit (1.25 x the patient's 1 rad/s): the session completes without a stop or a
    controller event (measured: elbow at most 1.02 rad/s in 9 demo runs)."""
    protocol, fields = shipped_protocol(tmp_path, "path_guidance_reach", repetitions=1)
    assert fields.get("weight_support", 0.0) == 0.0
    status, output, session = run(tmp_path, domain_id, protocol, DEMO_PATIENT)
    report = completed_report(status, output, session)
    assert not [e for e in report["events"] if e["event"].startswith(("motion interrupted", "spasm"))]
    assert peak_joint_speed(session / "bag") < 1.25
