"""The interactive exercise runner (rehab_robot.session.exercises): plain Python, simulated time."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from rehab_robot import JOINT_NAMES
from rehab_robot.session.exercises import (
    CONTROLLER_MODES, NOT_AT_REST, PARAMETER_TIMEOUT, REST_RETRY, REST_WAIT, InteractiveRunner, controller_parameters, plan_phases,
)
from rehab_robot.session.profiles import parse_patient, parse_protocol
from rehab_robot.session.runner import SessionState

JOINT_LIMITS = {
    "shoulder_flexion": (-0.6, 2.6),
    "shoulder_abduction": (-0.3, 2.2),
    "shoulder_rotation": (-1.2, 1.2),
    "elbow_flexion": (0.0, 2.4),
}
VELOCITY_LIMITS = {joint: 2.0 for joint in JOINT_NAMES}
ELBOW = JOINT_NAMES.index("elbow_flexion")
DT = 0.02
#: The controller node's ``start_tolerance`` [rad]: largest gap between a trajectory's first point and the setpoint.
START_TOLERANCE = 0.05

PATIENT = parse_patient({"patient": {
    "id": "P-0042", "side": "right", "max_velocity": 1.0, "max_joint_torque": 10.0, "limb_masses": [2.0, 1.6],
    "rom_limits": {"elbow_flexion": [0.2, 2.0], "shoulder_flexion": [0.0, 1.4]},
}}, "patient", JOINT_LIMITS)

BASE = {"name": "ex", "joint": "elbow_flexion", "start_angle": 0.6, "end_angle": 1.2, "repetitions": 2,
        "movement_timeout": 3.0, "target_tolerance": 0.05}


def protocol(kind: str, **fields):
    """A validated protocol of ``kind``."""
    base = {} if kind in ("isometric", "path_guidance") else dict(BASE)
    if kind in ("active_assist", "assist_as_needed"):
        base["movement_duration"] = 1.5
    base.update(name="ex", type=kind, repetitions=fields.pop("repetitions", 2))
    base.update(fields)
    return parse_protocol({"protocol": base}, "test", PATIENT, JOINT_LIMITS, VELOCITY_LIMITS)


class Patient:
    """A plain simulated arm and patient: the exercised joint approaches the shown target at
    ``speed`` [rad/s] once ``delay`` [s] passed; the approach follows the runner's motion."""

    def __init__(self, speed: float = 0.8, delay: float = 0.2, moves: bool = True):
        self.q = np.array([0.2, 0.0, 0.0, 0.4])
        self.v = np.zeros(4)
        self.speed, self.delay, self.moves = speed, delay, moves
        self.segment, self.segment_start = None, 0.0
        self.target_since = (None, 0.0)
        self.motions = []

    def step(self, now: float, runner: InteractiveRunner, joints) -> None:
        previous = self.q.copy()
        segment = runner.take_motion()
        if segment is not None:
            self.motions.append((now, runner.step_index, segment))
        if segment is not None and runner.step_index == 0:
            self.segment, self.segment_start = segment, now
        if runner.step_index == 0 and self.segment is not None:
            position, _, _ = self.segment.sample(min(now - self.segment_start, self.segment.duration))
            for k, j in enumerate(joints):
                self.q[j] = position[k]
        elif self.moves:
            target = runner.target_position()
            if target is not None:
                if self.target_since[0] is None or not np.allclose(self.target_since[0], target):
                    self.target_since = (target.copy(), now)
                if now - self.target_since[1] >= self.delay:
                    step = np.clip(target - self.q, -self.speed * DT, self.speed * DT)
                    self.q += step
        self.v = (self.q - previous) / DT


def run(runner: InteractiveRunner, patient: Patient, until: float = 120.0, answer=True, effort=None,
        on_tick=None) -> list[dict]:
    """Drive ``runner`` with ``patient`` in simulated time; answer parameter calls; return the calls."""
    calls = []
    now = 0.0
    joints = [JOINT_NAMES.index(n) for n in runner.moved_joints]
    ok, message = runner.start(now, patient.q, True)
    assert ok, message
    while not runner.state.finished and now < until:
        now += DT
        patient.step(now, runner, joints)
        params = runner.take_parameters()
        if params is not None:
            calls.append(params)
            reply = answer(now, params) if callable(answer) else answer
            if reply is True:
                runner.parameters_result(now, patient.q, True)
            elif reply is not None:
                runner.parameters_result(now, patient.q, False, reply)
        tau = effort(now, runner) if effort else None
        if on_tick is not None:
            on_tick(now, runner, patient)
        runner.update(now, patient.q.copy(), 2.0, True, velocity=patient.v.copy(), effort=tau)
    return calls


def make_runner(proto, **kwargs) -> InteractiveRunner:
    def parameters(posture, gain):
        return controller_parameters(proto, PATIENT, JOINT_NAMES, JOINT_LIMITS, posture,
                                     cuff_waypoints=np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0]]), gain=gain)
    return InteractiveRunner(proto, PATIENT, JOINT_NAMES, proto.max_velocity, make_parameters=parameters,
                             cuff_position=lambda q: np.array([q[0], q[3], 0.0]), **kwargs)


@pytest.mark.parametrize("kind", ["active", "active_assist", "assist_as_needed", "resistive"])
def test_active_types_complete_with_a_moving_patient(kind):
    """A patient who reaches every target completes every repetition, every movement reached,
    with per-movement and per-repetition metrics; the controller gets the type's mode at rest."""
    proto = protocol(kind)
    runner = make_runner(proto)
    calls = run(runner, Patient())
    assert runner.state is SessionState.COMPLETED, runner.end_reason
    assert calls[0]["mode"] == CONTROLLER_MODES[kind]
    assert calls[0]["soft_wall.lower"][ELBOW] == 0.2 and calls[0]["soft_wall.upper"][ELBOW] == 2.0
    # A joint without ROM limits is walled in at its start posture.
    assert calls[0]["soft_wall.upper"][1] - calls[0]["soft_wall.lower"][1] == pytest.approx(0.1)
    assert len(runner.repetitions) == 2 and all(r["reached"] for r in runner.repetitions)
    assert runner.take_parameters() == {"mode": "position"}  # at the end: back to holding
    for rep in runner.repetitions:
        assert [m["target"]["elbow_flexion"] for m in rep["movements"]] == [1.2, 0.6]
        metrics = rep["metrics"]
        # Each target counts once within target_tolerance (0.05 rad) of it.
        assert 0.6 - 2 * 0.05 <= metrics["rom"]["elbow_flexion"]["range"] <= 0.6
        assert 0.7 <= metrics["peak_speed"] <= 0.85  # the simulated patient moves at 0.8 rad/s
        assert metrics["sparc"] is not None and metrics["sparc"] < 0
        assert metrics["ldlj"] is not None
        assert metrics["peak_interaction_force"] == 2.0
    report = runner.exercise_report()
    assert report["session_metrics"]["repetitions_reached"] == 2


def test_assisted_types_send_the_reference_at_onset():
    """active_assist: nothing is sent before the patient starts; at the onset a minimum-jerk reference
    from where the joint is to the target, of movement_duration for the full distance."""
    proto = protocol("active_assist")
    runner = make_runner(proto)
    patient = Patient(delay=0.5)
    run(runner, patient)
    references = [(now, segment) for now, step, segment in patient.motions if step > 0]
    assert runner.state is SessionState.COMPLETED
    assert len(references) >= 4  # one per movement
    first = references[0][1]
    assert first.end[0] == pytest.approx(1.2)
    assert first.duration == pytest.approx(1.5, abs=0.2)


def test_a_patient_who_does_not_start_gets_the_reference_after_onset_timeout():
    """Triggered assistance: without an onset, the reference starts onset_timeout after the target
    showed, from where the joint is; the controller is told not to wait for an onset of its own."""
    proto = protocol("active_assist", onset_timeout=0.5, movement_timeout=3.0)
    runner = make_runner(proto)
    patient = Patient(moves=False)
    shown = []

    def watch(now, runner, patient):
        target = runner.target_position()
        if target is not None and (not shown or not np.allclose(shown[-1][1], target)):
            shown.append((now, target.copy()))

    calls = run(runner, patient, on_tick=watch, until=30.0)
    assert all(c["assist.onset_timeout"] == 0.0 for c in calls if "assist.onset_timeout" in c), calls
    references = [(now, segment) for now, step, segment in patient.motions if step > 0]
    assert len(references) >= 2, references
    for now, segment in references[:2]:
        since = max(t for t, _ in shown if t <= now)
        assert now - since == pytest.approx(0.5, abs=3 * DT), (now, since)
        assert segment.sample(0.0)[0][0] == pytest.approx(patient.q[3], abs=1e-9), "from where the joint is"


@pytest.mark.parametrize("kind", ["active", "active_assist"])
@pytest.mark.parametrize("glitch_at", [1.2, 2.0, 3.0, 3.8])
def test_an_automatic_resume_redoes_the_interrupted_movement_and_keeps_every_record(kind, glitch_at):
    """A 90 ms loss of motion permission (a late joint_commands) pauses the exercise; it resumes by
    itself and the interrupted phase starts over: every repetition still has both movements, in
    order (the passive step logic once ran on the re-entered step and skipped it, losing its record)."""
    runner = make_runner(protocol(kind, movement_timeout=5.0), auto_resume_limit=3)
    patient = Patient()
    now = 0.0
    joints = [JOINT_NAMES.index(n) for n in runner.moved_joints]
    runner.start(now, patient.q, True)
    while not runner.state.finished and now < 60.0:
        now += DT
        patient.step(now, runner, joints)
        if runner.take_parameters() is not None:
            runner.parameters_result(now, patient.q, True)
        permitted = not glitch_at <= now < glitch_at + 0.09
        runner.update(now, patient.q.copy(), 2.0, permitted, "" if permitted else "joint_commands stale (90 ms old)",
                      velocity=patient.v.copy())
    assert runner.state is SessionState.COMPLETED, runner.events
    assert any(e["event"].startswith("resumed automatically") for e in runner.events), runner.events
    targets = [[m["target"]["elbow_flexion"] for m in rep["movements"]] for rep in runner.repetitions]
    assert targets == [[1.2, 0.6], [1.2, 0.6]], (targets, runner.events)


def test_a_patient_who_does_not_move_does_not_hang_the_session():
    """Each movement times out, is recorded as not reached, and the session ends on its own."""
    proto = protocol("active", movement_timeout=2.0)
    runner = make_runner(proto)
    run(runner, Patient(moves=False), until=60.0)
    assert runner.state is SessionState.COMPLETED
    assert runner.repetitions_completed == 2
    assert not any(r["reached"] for r in runner.repetitions)
    out = runner.repetitions[0]["movements"][0]
    assert out["reached"] is False and out["duration"] == pytest.approx(2.0, abs=0.05)
    assert any("not reached within 2 s" in e["event"] for e in runner.events)


def test_assist_as_needed_adapts_the_gain_and_sets_it_before_each_repetition():
    """The gain follows adapt_assistance_gain after each repetition; each later repetition starts with a
    parameter call that sets it; a start gain from the history replaces the protocol's."""
    proto = protocol("assist_as_needed", repetitions=3, forgetting_factor=0.5, learning_rate=1.0)
    runner = make_runner(proto, initial_gain=0.8)
    calls = run(runner, Patient(speed=0.5))
    assert runner.state is SessionState.COMPLETED
    gains = [c["assist.gain"] for c in calls]
    assert gains[0] == 0.8
    assert len(gains) == 3
    # Later repetitions set the gain only: the mode stays (a mode change needs the arm at rest).
    assert calls[0]["mode"] == "active_assist" and all(set(c) == {"assist.gain"} for c in calls[1:])
    errors = [r["metrics"]["tracking_error"] for r in runner.repetitions]
    expected = 0.8
    for k, error in enumerate(errors):
        assert runner.repetitions[k]["metrics"]["assistance_gain"] == pytest.approx(expected, abs=1e-5)
        expected = min(1.0, max(0.0, 0.5 * expected + 1.0 * error))
        if k + 1 < len(gains):
            assert gains[k + 1] == pytest.approx(expected)
    assert runner.gain == pytest.approx(expected)
    assert runner.exercise_report()["exercise"]["final_assistance_gain"] == pytest.approx(expected, abs=1e-5)


def test_assist_as_needed_applies_the_protocols_error_tolerance():
    """With error_tolerance above every repetition's tracking error the gain only decays (f^k); the
    tolerance is subtracted from the error otherwise."""
    proto = protocol("assist_as_needed", repetitions=3, forgetting_factor=0.5, learning_rate=1.0,
                     error_tolerance=0.5)
    runner = make_runner(proto, initial_gain=0.8)
    calls = run(runner, Patient(speed=0.5))
    assert runner.state is SessionState.COMPLETED
    errors = [r["metrics"]["tracking_error"] for r in runner.repetitions]
    assert all(0.0 < e < 0.5 for e in errors), errors
    assert [c["assist.gain"] for c in calls] == pytest.approx([0.8, 0.4, 0.2])
    assert runner.gain == pytest.approx(0.1)
    # A tolerance below the errors: only the excess is learned.
    proto = protocol("assist_as_needed", repetitions=2, forgetting_factor=0.5, learning_rate=1.0,
                     error_tolerance=0.01)
    runner = make_runner(proto, initial_gain=0.8)
    calls = run(runner, Patient(speed=0.5))
    error = runner.repetitions[0]["metrics"]["tracking_error"]
    assert error > 0.01
    assert calls[1]["assist.gain"] == pytest.approx(0.4 + (error - 0.01))


def test_a_refused_parameter_call_aborts_with_the_controllers_reason():
    proto = protocol("active")
    runner = make_runner(proto)
    run(runner, Patient(), answer="parameter 'mode': 'active' is not allowed; allowed: position")
    assert runner.state is SessionState.ABORTED
    assert "refused the exercise parameters: parameter 'mode'" in runner.end_reason


NOT_SETTLED = ("parameter 'mode' = 'active' refused: a trajectory is under way; allowed: a mode change "
               "only while the arm is at rest")


def test_a_mode_change_refused_until_the_arm_settles_is_asked_again():
    """The controller's last trajectory may end a little after the session's: ask again, briefly."""
    proto = protocol("active")
    runner = make_runner(proto)
    refusals = []

    def answer(now, params):
        if "mode" in params and params["mode"] != "position" and len(refusals) < 2:
            refusals.append(now)
            return NOT_SETTLED
        return True

    calls = run(runner, Patient(), answer=answer)
    assert len(refusals) == 2 and refusals[1] - refusals[0] >= REST_RETRY - 1e-9
    assert runner.state is SessionState.COMPLETED, runner.end_reason
    assert sum(1 for c in calls if c.get("mode") == "active") == 3


def test_a_mode_change_refused_for_longer_than_the_rest_wait_aborts():
    proto = protocol("active")
    runner = make_runner(proto)
    calls = run(runner, Patient(), answer=lambda now, params: NOT_SETTLED, until=30.0)
    assert runner.state is SessionState.ABORTED
    assert "only while the arm is at rest" in runner.end_reason
    assert len(calls) >= REST_WAIT / REST_RETRY / 2


def test_an_unanswered_parameter_call_aborts():
    proto = protocol("active")
    runner = make_runner(proto)
    run(runner, Patient(), answer=None, until=30.0)
    assert runner.state is SessionState.ABORTED
    assert f"did not answer the parameter call within {PARAMETER_TIMEOUT:g} s" in runner.end_reason


def test_a_spasm_pauses_until_a_manual_resume_and_sets_the_mode_again():
    """A controller spasm event pauses the exercise (never resumed automatically), is recorded in the
    events and in the repetition; resume sets the controller parameters again and the movement restarts."""
    proto = protocol("active", repetitions=1)
    runner = make_runner(proto, auto_resume_limit=3)
    fired = []

    def spasm(now, runner, patient):
        if not fired and runner.current_step.endswith("to end angle") and runner._configured:
            fired.append(now)
            runner.controller_event(now, patient.q, "spasm", "elbow_flexion: 35 N against the motion",
                                    {"joint": "elbow_flexion", "force": "35.0", "onset": "1.5",
                                     "reaction": "compliant_hold"})
        if fired and runner.state is SessionState.PAUSED and now - fired[0] > 3.0:
            ok, _ = runner.resume(now, patient.q, True)
            assert ok
    calls = run(runner, Patient(), on_tick=spasm)
    assert runner.state is SessionState.COMPLETED
    assert len(calls) == 2 and calls[1]["mode"] == "active"
    assert any(e["event"].startswith("spasm: elbow_flexion: 35 N") for e in runner.events)
    assert runner.repetitions[0]["interruptions"][0]["event"] == "spasm"
    assert runner.exercise_report()["controller_events"][0]["reaction"] == "compliant_hold"


def test_isometric_records_peak_and_sustained_torque():
    """The patient's torque is the motor torque's change from the rest before the contraction;
    held above 90 % of the target for hold_time, the contraction is reached."""
    proto = protocol("isometric", joint="elbow_flexion", hold_angle=1.0, target_torque=4.0, hold_time=1.0,
                     rest_duration=1.0, contraction_timeout=5.0)
    runner = make_runner(proto)
    pushes = []

    def effort(now, runner):
        tau = np.array([0.0, 0.0, 0.0, 3.0])  # gravity holding torque at rest
        if runner.current_step.endswith("push and hold"):
            if not pushes:
                pushes.append(now)
            # The patient pushes up to 5 N·m in 0.5 s: the motor holds against it.
            tau[ELBOW] -= min(5.0, 10.0 * (now - pushes[-1]))
        elif pushes and runner.current_step.endswith("rest"):
            pushes.clear()
        return tau
    run(runner, Patient(moves=False), effort=effort)
    assert runner.state is SessionState.COMPLETED, runner.end_reason
    for rep in runner.repetitions:
        assert rep["reached"]
        assert rep["metrics"]["isometric_peak_torque"] == pytest.approx(5.0, abs=0.05)
        # The contraction ends once held: its best 1 s starts where the torque crossed 3.6 N·m.
        assert 3.55 <= rep["metrics"]["sustained_torque"] <= 4.2
        # Reached after 0.36 s of rising to 3.6 N·m, then 1 s of holding.
        assert rep["movements"][0]["duration"] == pytest.approx(1.36, abs=0.1)


def test_isometric_target_points_toward_the_push_inside_the_rom():
    proto = protocol("isometric", joint="elbow_flexion", hold_angle=1.9, target_torque=4.0, hold_time=1.0)
    runner = make_runner(proto)
    shown = []
    run(runner, Patient(moves=False), until=6.0,
        on_tick=lambda now, r, p: shown.append((r.current_step, r.target_position())))
    contraction = [t for step, t in shown if t is not None and step.endswith("push and hold")]
    assert contraction and contraction[0][ELBOW] == pytest.approx(2.0)  # 1.9 + 0.2 clipped to the ROM
    rest = [t for step, t in shown if t is not None and step.endswith("rest")]
    assert rest[0][ELBOW] == pytest.approx(1.9)


def test_path_guidance_visits_every_waypoint_and_back():
    proto = protocol("path_guidance", waypoints=[
        {"shoulder_flexion": 0.3, "elbow_flexion": 1.3},
        {"shoulder_flexion": 0.5, "elbow_flexion": 1.0},
        {"shoulder_flexion": 0.7, "elbow_flexion": 0.8}], repetitions=1, movement_timeout=4.0)
    runner = make_runner(proto)
    calls = run(runner, Patient())
    assert runner.state is SessionState.COMPLETED, runner.end_reason
    assert calls[0]["mode"] == "path_guidance"
    targets = [m["target"] for m in runner.repetitions[0]["movements"]]
    assert [t["elbow_flexion"] for t in targets] == [1.0, 0.8, 1.0, 1.3]
    metrics = runner.repetitions[0]["metrics"]
    assert metrics["path_length_ratio"] is not None and metrics["path_length_ratio"] >= 1.0
    assert metrics["max_path_deviation"] is not None


def test_plans_have_no_hold_after_the_last_movement():
    phases = plan_phases(protocol("active", hold_duration=0.5), JOINT_NAMES)
    assert phases[-1].kind == "move" and phases[-1].completes_repetition
    assert sum(p.completes_repetition for p in phases) == 2


def test_exercise_report_matches_the_documented_schema():
    """A report with the exercise part (repetitions, session metrics, controller events) validates against
    docs/report.schema.json; a repetition without its metrics does not."""
    import json

    import jsonschema

    from rehab_robot.session.report import build_report

    schema = json.loads((Path(__file__).resolve().parent.parent / "docs" / "report.schema.json").read_text())
    proto = protocol("assist_as_needed")
    runner = make_runner(proto)

    def spasm(now, runner, patient):
        if runner.current_step == "repetition 2: to end angle" and not runner.controller_events:
            runner.controller_event(now, patient.q, "spasm", "35 N", {"joint": "elbow_flexion", "force": "35.0"})
            runner.resume(now, patient.q, True)
    run(runner, Patient(), on_tick=spasm)
    assert runner.state is SessionState.COMPLETED
    report = build_report("s", "P-0042", proto.name, runner.outcome(), runner.metrics)
    report.update(runner.exercise_report())
    report["history"] = {"file": "h/P-0042.json", "updated": True, "problem": ""}
    report = json.loads(json.dumps(report, allow_nan=False))
    jsonschema.validate(report, schema)
    assert report["rom_reached"]["elbow_flexion"]["range"] > 0.4
    broken = json.loads(json.dumps(report))
    del broken["repetitions"][0]["metrics"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_the_mode_is_set_only_once_the_arm_is_at_rest():
    """After the approach the parameter call waits for the joints to be still (< 0.02 rad/s), at most 3 s."""
    proto = protocol("active", repetitions=1)
    runner = make_runner(proto)
    built = runner.make_parameters
    asked = []
    runner.make_parameters = lambda posture, gain: asked.append((clock[0], runner._speed)) or built(posture, gain)
    clock = [0.0]

    def watch(now, runner, patient):
        clock[0] = now
        if now < 2.0:
            patient.v[:] = 0.5  # still moving when the approach ends (about 1 s), then at rest
    run(runner, Patient(), on_tick=watch)
    assert runner.state is SessionState.COMPLETED
    assert len(asked) == 1 and asked[0][0] >= 2.0 and asked[0][1] < 0.02

    # A joint that never settles: the call goes out after REST_WAIT all the same.
    runner = make_runner(proto)
    built = runner.make_parameters
    asked.clear()
    runner.make_parameters = lambda posture, gain: asked.append((clock[0], runner._speed)) or built(posture, gain)

    def restless(now, runner, patient):
        clock[0] = now
        patient.v[:] = 0.5
    run(runner, Patient(), on_tick=restless, until=8.0)
    assert len(asked) == 1 and asked[0][1] == 0.5


@pytest.mark.parametrize("kind, keys", [
    ("active", set()),
    ("active_assist", {"assist.gain", "assist.stiffness", "assist.deadband", "assist.max_torque", "assist.onset_timeout"}),
    ("assist_as_needed", {"assist.gain", "assist.stiffness", "assist.deadband", "assist.max_torque",
                          "assist.onset_timeout"}),
    ("resistive", {"resistive.damping", "resistive.stiffness", "resistive.max_torque"}),
    ("isometric", set()),
    ("path_guidance", {"path_guidance.waypoints", "path_guidance.width", "path_guidance.stiffness"}),
])
def test_controller_parameters_of_each_type(kind, keys):
    """Contract A: the common parameters plus the type's own, in SI units, from the protocol and profile."""
    fields = {"path_guidance": {"waypoints": [{"elbow_flexion": 1.0}, {"elbow_flexion": 1.5}]},
              "isometric": {"joint": "elbow_flexion", "hold_angle": 1.0, "target_torque": 3.0, "hold_time": 1.0},
              "resistive": {"resistive_damping": 1.5}}.get(kind, {})
    proto = protocol(kind, **fields)
    cuff = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    params = controller_parameters(proto, PATIENT, JOINT_NAMES, JOINT_LIMITS, [0.0, 0.1, 0.0, 1.0], cuff)
    common = {"mode", "admittance.damping", "admittance.max_speed", "weight_support", "limb_masses",
              "soft_wall.lower", "soft_wall.upper", "spasm.reaction"}
    assert set(params) == common | keys
    assert params["mode"] == CONTROLLER_MODES[kind] and params["limb_masses"] == [2.0, 1.6]
    assert params["admittance.max_speed"] == PATIENT.max_velocity
    assert params["soft_wall.lower"][0] == 0.0 and params["soft_wall.upper"][0] == 1.4  # shoulder ROM
    assert params["soft_wall.lower"][2] == pytest.approx(-0.05)  # held joint: ± 0.05 rad around it
    assert all(isinstance(v, (str, float)) or all(isinstance(x, float) for x in v) for v in params.values())
    if kind == "path_guidance":
        assert params["path_guidance.waypoints"] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    if kind == "resistive":
        assert params["resistive.damping"] == 1.5
    if kind in ("active_assist", "assist_as_needed"):
        assert params["assist.gain"] == 1.0


def test_a_target_counts_within_the_protocols_tolerance():
    """A patient who stops 0.1 rad short of each target reaches it with target_tolerance 0.15, not with 0.05."""
    class ShortPatient(Patient):
        def step(self, now, runner, joints):
            super().step(now, runner, joints)
            target = runner.target_position()
            if runner.step_index > 0 and target is not None:
                gap = target[ELBOW] - self.q[ELBOW]
                if abs(gap) < 0.1:  # never closer than 0.1 rad
                    self.q[ELBOW] = target[ELBOW] - math.copysign(0.1, gap or 1.0)

    for tolerance, reached in ((0.15, True), (0.05, False)):
        runner = make_runner(protocol("active", repetitions=1, target_tolerance=tolerance, movement_timeout=3.0))
        run(runner, ShortPatient())
        assert runner.state is SessionState.COMPLETED
        assert [m["reached"] for m in runner.repetitions[0]["movements"]] == [reached, reached]


def test_no_target_shows_during_the_approach_and_then_the_start_until_the_mode_is_set():
    """The robot brings the arm to the start posture with nothing shown to the patient (who relaxes);
    after it, until the exercise's mode is set at rest, the start of the path shows (where the arm is),
    not the next waypoint ahead; then the waypoints in turn."""
    proto = protocol("path_guidance", waypoints=[
        {"shoulder_flexion": 0.3, "elbow_flexion": 1.3},
        {"shoulder_flexion": 0.7, "elbow_flexion": 0.8}], repetitions=1, movement_timeout=4.0)
    runner = make_runner(proto)
    shown = []

    def watch(now, runner, patient):
        shown.append((runner.step_index, runner._configured, runner.target_position(), runner.current_target()))
    # The controller refuses the mode until 3 s (the arm not settled): the start shows meanwhile.
    run(runner, Patient(), on_tick=watch,
        answer=lambda now, params: True if now > 3.0 else f"parameter 'mode' refused: {NOT_AT_REST}")
    assert runner.state is SessionState.COMPLETED, runner.end_reason
    approach = [(t, status) for step, _, t, status in shown if step == 0]
    assert approach and all(t is None for t, _ in approach)
    assert all(status == 0.3 for _, status in approach)  # the status still names where the arm goes (shoulder)
    waiting = [t for step, configured, t, _ in shown if step == 1 and not configured]
    assert waiting, "the parameter call was answered at once"
    for t in waiting:
        assert (t[0], t[ELBOW]) == (0.3, 1.3)
    moving = [t for step, configured, t, _ in shown if step == 1 and configured]
    assert moving and (moving[0][0], moving[0][ELBOW]) == (0.7, 0.8)


def test_a_controller_spasm_during_the_approach_sends_no_brake_motion():
    """The controller reacts to a spasm itself (compliant hold or return to start): the session
    pauses without sending a stop trajectory, which would be planned from where the approach
    should have been, not from where the arm yielded to."""
    proto = protocol("active", repetitions=1)
    runner = make_runner(proto)
    sent = []

    def spasm(now, runner, patient):
        if runner.step_index == 0 and 0.3 < now and runner.state is SessionState.RUNNING:
            runner.take_motion()
            runner.controller_event(now, patient.q, "spasm", "elbow_flexion: 31 N against the motion",
                                    {"joint": "elbow_flexion", "force": "31.0", "onset": "0.3",
                                     "reaction": "compliant_hold"})
            sent.append(runner.take_motion())
    run(runner, Patient(), on_tick=spasm, until=2.0)
    assert runner.state is SessionState.PAUSED
    assert sent == [None]


# --- the runner in the closed loop: SimulatedArm with the virtual patient + InteractionController ----------


class _SessionLoop:
    """The session node's part, in process: the runner's motions become the controller's reference, its
    parameters are set (a mode only at rest, as the controller node does), its target is shown to the
    virtual patient, and the controller's spasm events reach it. Session tick 50 Hz, controller 500 Hz."""

    def __init__(self, protocol_file: str, virtual_patient: dict, tick: float = 0.02):
        from rehab_robot import resources
        from rehab_robot.control.closed_loop import ClosedLoop
        from rehab_robot.session.profiles import load_patient, load_protocol

        self.loop = ClosedLoop(virtual_patient=virtual_patient)
        self.loop.reference = self.reference
        model = self.loop.arm.robot
        limits = {n: (float(lo), float(hi)) for n, lo, hi in zip(JOINT_NAMES, model.lower, model.upper)}
        speeds = {n: float(v) for n, v in zip(JOINT_NAMES, model.velocity_limit)}
        patient = load_patient(resources.example_patient(), limits)
        proto = load_protocol(resources.share_dir() / "config" / "protocols" / protocol_file, patient, limits, speeds)
        self.cuff = lambda q: model.forward_kinematics(q, "cuff_link")[:3, 3]

        def parameters(posture, gain):
            cuff = None
            if proto.type == "path_guidance":
                cuff = np.array([self.cuff(_posture_at(posture, w)) for w in proto.waypoints])
            return controller_parameters(proto, patient, JOINT_NAMES, limits, posture, cuff_waypoints=cuff, gain=gain)
        self.runner = InteractiveRunner(proto, patient, JOINT_NAMES, proto.max_velocity, make_parameters=parameters,
                                        cuff_position=self.cuff)
        self.joints = [JOINT_NAMES.index(n) for n in self.runner.moved_joints]
        self.trajectory = None  # (segment, base posture, start time)
        self.tick = tick
        self.events = []
        self.refused = []  # (time [s], step, gap [rad]) of the trajectories the controller refused
        self.gaps = []  # gap [rad] between each trajectory's first point and the controller's setpoint

    def reference(self):
        from rehab_robot.control.modes import Reference
        if self.trajectory is None:
            return None
        segment, base, t0 = self.trajectory
        elapsed = self.loop.now - t0
        q, v, a = segment.sample(min(max(elapsed, 0.0), segment.duration))
        position, velocity, acceleration, start, end = base.copy(), np.zeros(4), np.zeros(4), base.copy(), base.copy()
        position[self.joints], start[self.joints], end[self.joints] = q, segment.sample(0.0)[0], segment.end
        if elapsed < segment.duration:
            velocity[self.joints], acceleration[self.joints] = v, a
        return Reference(position, velocity, acceleration, start, end, elapsed, segment.duration)

    def run(self, duration: float) -> None:
        loop, runner = self.loop, self.runner
        if runner.state is SessionState.IDLE:
            ok, message = runner.start(loop.now, loop.arm.read().position, True)
            assert ok, message
        next_tick = loop.now
        end = loop.now + duration
        while loop.now < end and not runner.state.finished:
            loop.run(loop.dt)
            q, v = loop.record.q[-1].copy(), loop.record.v[-1].copy()
            for event in loop.record.events[len(self.events):]:
                self.events.append(event)
                runner.controller_event(loop.now, q, event.name, event.message, event.values)
            if loop.now + 1e-9 < next_tick:
                continue
            next_tick += self.tick
            runner.update(loop.now, q, 0.0, True, velocity=v)
            while (segment := runner.take_motion()) is not None:
                # The controller node's check: a first point at t = 0 away from the setpoint is refused.
                gap = float(np.max(np.abs(segment.sample(0.0)[0] - loop.controller.setpoint[self.joints])))
                self.gaps.append(gap)
                if gap > START_TOLERANCE:
                    self.refused.append((loop.now, runner.current_step, gap))
                else:
                    self.trajectory = (segment, loop.controller.setpoint.copy(), loop.now)
            params = runner.take_parameters()
            if params is not None:
                ref = self.reference()
                if "mode" in params and (not loop.controller.at_rest(v) or (ref is not None and ref.moving)):
                    runner.parameters_result(loop.now, q, False, f"parameter 'mode' refused: {NOT_AT_REST}")
                else:
                    if "mode" in params:
                        self.trajectory = None  # a mode set drops the previous trajectory
                    loop.configure(params)
                    runner.parameters_result(loop.now, q, True)
            target = runner.target_position()
            if target is not None:
                loop.arm.set_patient_target(target, loop.now)


def _posture_at(posture, waypoint) -> np.ndarray:
    q = np.array(posture, dtype=float)
    for name, angle in waypoint.items():
        q[JOINT_NAMES.index(name)] = angle
    return q


def test_path_guidance_demo_approach_is_no_spasm_in_the_closed_loop():
    """The shipped path_guidance example with the demo's virtual patient: the approach to the path's
    start (1 rad of elbow, 0.3 rad of shoulder at the patient's 1 rad/s, position mode) and the start
    of the first movement raise no spasm event. Before the fix the patient, shown the first waypoint
    during the approach and slower than it (0.8 rad/s, 0.2 s reaction), pushed back at the 30 N
    threshold (a spasm 0.9 s into the approach in the closed loop and in `rehab-robot demo`)."""
    from rehab_robot.session.exercises import DEMO_VIRTUAL_PATIENT
    session = _SessionLoop("path_guidance_reach.yaml", dict(DEMO_VIRTUAL_PATIENT))
    session.run(3.0)
    assert session.runner.step_index >= 1 and session.runner._ever_configured, session.runner.events
    assert [e.name for e in session.events if e.name != "mode"] == [], session.runner.events
    assert session.runner.state is SessionState.RUNNING, session.runner.end_reason


def test_a_real_spasm_during_the_approach_is_still_detected():
    """A scripted elbow spasm (-15 N·m, against the approach's flexion) half-way through the approach is
    detected by the controller (position mode), and the session pauses in the approach."""
    from rehab_robot.session.exercises import DEMO_VIRTUAL_PATIENT
    patient = dict(DEMO_VIRTUAL_PATIENT, events=[{"type": "spasm", "time": 0.8, "duration": 0.5,
                                                   "torque": {"elbow_flexion": -15.0}}])
    session = _SessionLoop("path_guidance_reach.yaml", patient)
    session.run(1.2)
    spasms = [e for e in session.events if e.name == "spasm"]
    assert len(spasms) == 1 and spasms[0].values["joint"] == "elbow_flexion"
    assert 0.8 <= float(spasms[0].values["onset"]) <= 0.85
    assert session.runner.state is SessionState.PAUSED and session.runner.step_index == 0
    assert session.runner.controller_events[0]["event"] == "spasm"


def test_resistive_start_posture_trajectory_starts_where_the_sagged_arm_is():
    """Between repetitions the limb sags (here: it settles 0.07 rad below every target, inside the
    0.08 rad tolerance). Each repetition's trajectory giving the controller the start posture starts
    where the arm is, within the controller's start_tolerance (0.05 rad; else it is refused), and
    ends at the start angle: the anchor of the elastic resistance."""
    class SaggingPatient(Patient):
        def step(self, now, runner, joints):
            before, sent = self.q.copy(), len(self.motions)
            super().step(now, runner, joints)
            if len(self.motions) > sent:
                self.motions[-1] += (before,)
            target = runner.target_position()
            if runner.step_index > 0 and target is not None and abs(target[ELBOW] - self.q[ELBOW]) < 0.07:
                self.q[ELBOW] = target[ELBOW] - 0.07

    proto = protocol("resistive", repetitions=3, target_tolerance=0.08, resistive_stiffness=10.0)
    runner = make_runner(proto)
    patient = SaggingPatient()
    run(runner, patient)
    assert runner.state is SessionState.COMPLETED, runner.end_reason
    anchors = [(segment, q) for _, step, segment, q in patient.motions if step > 0]
    assert len(anchors) == 3  # one per repetition
    for segment, q in anchors:
        assert abs(segment.sample(0.0)[0][0] - q[ELBOW]) <= START_TOLERANCE
        assert segment.end[0] == pytest.approx(0.6)
        assert np.max(np.abs(segment.sample(segment.duration / 2)[1])) <= PATIENT.max_velocity + 1e-9
        assert segment.duration <= max(0.1, 1.875 * abs(0.6 - q[ELBOW]) / PATIENT.max_velocity) + 1e-9
    assert abs(anchors[-1][1][ELBOW] - 0.6) > START_TOLERANCE, "the arm had sagged beyond the tolerance"


def test_resistive_start_posture_is_sent_again_after_the_mode_is_set_again():
    """An interruption sets the mode again, which drops the controller's trajectory: the restarted
    movement (here the one back, which starts no repetition) sends the start posture again."""
    proto = protocol("resistive", repetitions=1)
    runner = make_runner(proto)
    fired = []

    def spasm(now, runner, patient):
        if not fired and runner.current_step.endswith("to start angle") and runner._configured:
            fired.append((now, patient.q.copy()))
            runner.controller_event(now, patient.q, "spasm", "elbow_flexion: 35 N", {"joint": "elbow_flexion"})
        if fired and not runner._configured:
            patient.q[:], patient.v[:] = fired[0][1], 0.0  # the controller holds the arm until the mode is set
        if fired and runner.state is SessionState.PAUSED and now - fired[0][0] > 1.0:
            assert runner.resume(now, patient.q, True)[0]
    patient = Patient()
    run(runner, patient, on_tick=spasm)
    assert runner.state is SessionState.COMPLETED, runner.end_reason
    anchors = [(step, segment) for _, step, segment in patient.motions if step > 0]
    assert [runner.steps[step].label for step, _ in anchors] == ["repetition 1: to end angle",
                                                               "repetition 1: to start angle"]
    assert all(segment.end[0] == pytest.approx(0.6) for _, segment in anchors)


def test_path_guidance_demo_without_weight_support_stays_below_the_supervisors_speed_limit():
    """The shipped path_guidance example (no weight support) with the demo's virtual patient, whole
    session in the closed loop: the limb dropping into the channel is held to the patient's speed cap
    (admittance.max_speed): every joint stays below the supervisor's limit (1.25 x max_velocity, a
    latched stop), no controller event, no trajectory refused (measured: elbow 1.00 rad/s at most)."""
    from rehab_robot.session.exercises import DEMO_VIRTUAL_PATIENT
    session = _SessionLoop("path_guidance_reach.yaml", dict(DEMO_VIRTUAL_PATIENT))
    assert session.runner.protocol.weight_support == 0.0
    session.run(60.0)
    assert session.runner.state is SessionState.COMPLETED, session.runner.end_reason
    assert [e.name for e in session.events if e.name != "mode"] == [] and session.refused == []
    speed = np.abs(np.array(session.loop.record.v)).max()
    assert speed < 1.25 * session.runner.patient.max_velocity


def test_resistive_demo_session_has_every_trajectory_accepted():
    """The shipped resistive example with the demo's virtual patient, whole session in the closed loop:
    each repetition's start-posture trajectory is accepted by the controller's start check."""
    from rehab_robot.session.exercises import DEMO_VIRTUAL_PATIENT
    session = _SessionLoop("resistive_elbow.yaml", dict(DEMO_VIRTUAL_PATIENT))
    session.run(60.0)
    assert session.runner.state is SessionState.COMPLETED, session.runner.end_reason
    assert session.refused == [] and [e.name for e in session.events if e.name != "mode"] == []


def test_resistive_start_posture_is_planned_from_the_measurement_it_is_sent_with():
    """The node's tick updates the runner, sends its motions, then hands it the controller's answer:
    the start-posture trajectory is planned from the next measurement, sent right after it, not from
    the one before the answer (the limb falls once the mode is set; 0.05 rad in the demo)."""
    proto = protocol("resistive", repetitions=1)
    runner = make_runner(proto)
    q = np.array([0.2, 0.0, 0.0, 0.6])
    assert runner.start(0.0, q, True)[0]
    assert runner.take_motion() is not None  # the approach
    now, params = 0.0, None
    while params is None and now < 3.0:
        now += DT
        runner.update(now, q, 0.0, True, velocity=np.zeros(4))
        assert runner.take_motion() is None
        params = runner.take_parameters()
    assert params is not None and params["mode"] == "resistive"
    runner.parameters_result(now, q, True)  # between two ticks
    fallen = q - np.array([0.0, 0.0, 0.0, 0.04])
    runner.update(now + DT, fallen, 0.0, True, velocity=np.array([0.0, 0.0, 0.0, -0.6]))
    anchor = runner.take_motion()
    assert anchor is not None
    assert anchor.sample(0.0)[0][0] == pytest.approx(fallen[ELBOW]) and anchor.end[0] == pytest.approx(0.6)
