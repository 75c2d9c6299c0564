"""The interaction modes in closed loop with the simulated arm and the virtual patient,
stepped in simulated time (deterministic): the benchmark's key claims, asserted.

Each scenario lives in :mod:`rehab_robot.control.closed_loop`; bench/bench_interaction.py
prints the same numbers for more settings.
"""

from __future__ import annotations

import pytest

from rehab_robot.control import closed_loop


@pytest.mark.parametrize("mass, damping", [(2.0, 10.0), (1.0, 5.0)])
def test_transparency_of_active_mode(mass, damping):
    """Moving the elbow 1 rad in 1 s takes at most 6 N at the cuff; the rendered damping is within 15 %."""
    result = closed_loop.transparency(mass, damping)
    assert result["elbow_travel"] > 0.9, result
    assert result["peak_cuff_force"] <= 6.0, result
    assert result["peak_equivalent_force"] <= 6.0, result
    assert result["apparent_damping"] == pytest.approx(damping, rel=0.15), result
    assert result["events"] == 0


@pytest.mark.parametrize("latency_cycles", [1, 3])
def test_stable_with_light_virtual_mass_while_the_patient_holds_the_cuff(latency_cycles):
    """1 kg and 5 N·s/m: no sustained oscillation (below 1 mm and 0.01 rad from 1 s after a move)."""
    result = closed_loop.stability(1.0, 5.0, latency_cycles=latency_cycles)
    assert result["elbow_travel"] > 0.2, "the patient did move the arm"
    assert result["joint_p2p"] < 0.01 and result["cuff_p2p"] < 0.001, result


@pytest.mark.parametrize("reaction", ["compliant_hold", "return_to_start"])
def test_spasm_is_detected_and_answered_within_50_ms(reaction):
    result = closed_loop.spasm_reaction(reaction)
    assert result["event"] is not None, "no spasm detected"
    assert result["event"].values["joint"] == "elbow_flexion"
    assert result["onset_to_reaction"] <= 0.050 and result["start_to_reaction"] <= 0.050, result
    assert result["reaction"] == reaction
    # The passive ROM went on to 1.3 rad without the spasm; the reaction stopped it well short.
    assert result["elbow_after"] < 0.8, result
    if reaction == "return_to_start":
        assert result["elbow_after"] == pytest.approx(0.3, abs=0.05), "back at the start posture"


def test_assist_as_needed_gain_decays_for_a_healthy_patient_and_carries_a_paralysed_one():
    """With the error tolerance above a healthy patient's tracking error (reference from the onset, as
    the session does), the gain decays geometrically (f^k) and the robot's share of the work with it;
    a patient without voluntary motion is carried through the range."""
    law = {"forgetting_factor": 0.8, "learning_rate": 2.0, "error_tolerance": 0.06}
    healthy = closed_loop.assist_as_needed(0.0, repetitions=4, strength=5.0, **law)
    assert all(r["error"] < 0.06 for r in healthy[2:]), healthy
    assert healthy[0]["gain"] == 1.0 > healthy[1]["gain"] > healthy[2]["gain"]
    assert healthy[3]["gain"] == pytest.approx(0.8 * healthy[2]["gain"]), "within the tolerance: f g"
    assert healthy[3]["robot_share"] < healthy[2]["robot_share"] < healthy[1]["robot_share"] < 0.1
    assert all(r["patient_work"] > 2.0 for r in healthy)
    # No voluntary motion: the reference starts at the onset timeout and the pull, whose
    # deadband closes at the end, carries the limb (weight supported, default assist settings)
    # to within the session's target tolerance (0.05 rad) of both ends.
    paralysed = closed_loop.assist_as_needed(1.0, repetitions=2, strength=5.0, weight_support=1.0, **law)
    assert all(r["patient_work"] == 0.0 and r["robot_share"] == 1.0 for r in paralysed)
    assert all(r["reached"] > 1.3 - 0.05 and r["lowest"] < 0.3 + 0.05 for r in paralysed), paralysed


def test_assist_as_needed_error_and_robot_share_fall_for_a_patient_who_learns():
    """Impairment 0.5, a patient who starts at 30 % effort and tries harder after each miss
    (virtual patient ``learning``): the tracking error and the robot's share of the work both
    fall over the repetitions, and so does the gain."""
    law = {"forgetting_factor": 0.8, "learning_rate": 2.0, "error_tolerance": 0.06}
    results = closed_loop.assist_as_needed(0.5, repetitions=6, strength=5.0,
                                           patient={"effort": 0.3, "learning": {"rate": 0.3}}, **law)
    for name in ("error", "robot_share", "gain"):
        series = [r[name] for r in results]
        assert all(a > b for a, b in zip(series, series[1:])), (name, series)
    assert results[-1]["effort"] > results[0]["effort"] + 0.2
