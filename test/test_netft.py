"""Unit tests of the Net F/T RDT protocol and receive pipeline (rehab_robot.sensors.netft)."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rehab_robot.errors import ConfigError, HardwareError
from rehab_robot.sensors.netft import (
    CMD_SET_SOFTWARE_BIAS, CMD_START_REALTIME, CMD_STOP, Calibration, NetFTStream, SaturationCheck,
    SequenceTracker, TareWindow, cuff_gravity_wrench, describe_status, encode_request, parse_record,
    sequence_gap,
)


def record_bytes(rdt=1, ft=1, status=0, counts=(0, 0, 0, 0, 0, 0)) -> bytes:
    """A record packed by hand here, independent of the module's own struct."""
    out = b"".join(v.to_bytes(4, "big") for v in (rdt, ft, status))
    return out + b"".join(int(c).to_bytes(4, "big", signed=True) for c in counts)


def rot_x(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=float)


# --- requests ---------------------------------------------------------------------------

def test_requests_are_the_manuals_eight_bytes():
    """Header 0x1234, command and count, big-endian."""
    assert encode_request(CMD_START_REALTIME) == bytes.fromhex("1234000200000000")
    assert encode_request(CMD_STOP) == bytes.fromhex("1234000000000000")
    assert encode_request(CMD_SET_SOFTWARE_BIAS) == bytes.fromhex("1234004200000000")
    assert encode_request(CMD_START_REALTIME, 10) == bytes.fromhex("123400020000000a")


@pytest.mark.parametrize("command, count", [(0x0001, 0), (0x0099, 0), (CMD_START_REALTIME, -1),
                                            (CMD_START_REALTIME, 2**32)])
def test_bad_requests_are_refused(command, count):
    """An unknown command or an out-of-range count is a ValueError, never garbage on the wire."""
    with pytest.raises(ValueError, match="RDT"):
        encode_request(command, count)


# --- records ----------------------------------------------------------------------------

def test_record_fields_signed_and_big_endian():
    """Sequence and status are unsigned; the six counts are signed int32."""
    data = record_bytes(rdt=0xFFFFFFFF, ft=7, status=0x80000000,
                        counts=(1, -1, 2**31 - 1, -(2**31), 1000, -123456))
    record = parse_record(data)
    assert record.rdt_sequence == 0xFFFFFFFF
    assert record.ft_sequence == 7
    assert record.status == 0x80000000
    assert record.counts == (1, -1, 2**31 - 1, -(2**31), 1000, -123456)


@pytest.mark.parametrize("length", [0, 8, 35, 37, 72])
def test_wrong_length_is_a_clear_error(length):
    """Anything but exactly one 36-byte record is refused, naming the length received."""
    with pytest.raises(HardwareError, match=f"{length} bytes received.*exactly 36"):
        parse_record(bytes(length))


def test_non_bytes_are_refused():
    with pytest.raises(HardwareError, match="must be bytes"):
        parse_record("x" * 36)


@given(st.binary(min_size=36, max_size=36))
def test_any_36_bytes_decode_to_their_fields(data):
    """Every 36-byte datagram parses, and re-packing the fields gives the same bytes."""
    r = parse_record(data)
    assert struct.pack(">III6i", r.rdt_sequence, r.ft_sequence, r.status, *r.counts) == data


@given(st.binary(max_size=100).filter(lambda b: len(b) != 36))
def test_any_other_length_raises_hardware_error(data):
    with pytest.raises(HardwareError):
        parse_record(data)


def test_describe_status():
    assert describe_status(0) == "0x00000000 (healthy)"
    assert describe_status(0x80010000) == "0x80010000 (bits 31, 16)"
    assert describe_status(0x4) == "0x00000004 (bit 2)"


# --- conversions ------------------------------------------------------------------------

def test_counts_to_newtons_and_newton_metres():
    """Force divides by counts per force, torque by counts per torque."""
    cal = Calibration(counts_per_force=1_000_000, counts_per_torque=1000)
    w = cal.to_wrench((2_500_000, -500_000, 0, 1500, -20, 0))
    np.testing.assert_allclose(w, [2.5, -0.5, 0.0, 1.5, -0.02, 0.0])


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "abc"])
def test_bad_calibration_is_refused(bad):
    with pytest.raises(ConfigError, match="counts_per_force.*finite number > 0"):
        Calibration(bad, 1000)
    with pytest.raises(ConfigError, match="counts_per_torque"):
        Calibration(1000, bad)


# --- sequence gaps ----------------------------------------------------------------------

@pytest.mark.parametrize("previous, current, gap", [
    (5, 6, 0), (5, 9, 3), (0xFFFFFFFF, 0, 0), (0xFFFFFFFE, 1, 2), (0xFFFFFFF0, 0x10, 0x1F),
    (7, 7, -1), (7, 5, -1), (2, 0xFFFFFFFF, -1),
])
def test_sequence_gap_wraps_around(previous, current, gap):
    assert sequence_gap(previous, current) == gap


def test_tracker_counts_losses_across_the_wrap_and_drops_late_datagrams():
    tracker = SequenceTracker()
    accepted = [tracker.update(s) for s in (0xFFFFFFFE, 0xFFFFFFFF, 2, 1, 3, 3)]
    assert accepted == [True, True, True, False, True, False]
    assert tracker.lost == 2  # 0 and 1 had not arrived when 2 did
    assert tracker.late == 2  # the late 1 and the repeated 3
    assert tracker.received == 6


# --- saturation -------------------------------------------------------------------------

def test_saturation_by_counts_limit_and_status_bits():
    check = SaturationCheck(counts_limit=1000, status_mask=0x00010000)
    assert check.saturated_axes(parse_record(record_bytes(counts=(999, -1000, 0, 0, 0, 5000)))) == ("Fy", "Tz")
    assert check.saturated_axes(parse_record(record_bytes(status=0x00010000))) == ("status",)
    assert check.saturated_axes(parse_record(record_bytes(status=0x80000000, counts=(999,) * 6))) == ()
    assert SaturationCheck().saturated_axes(parse_record(record_bytes(counts=(2**31 - 1,) * 6))) == ()


@pytest.mark.parametrize("limit, mask", [(-1, 0), (1.5, 0), (0, -1), (0, 2**32)])
def test_bad_saturation_settings_are_refused(limit, mask):
    with pytest.raises(ConfigError, match="saturation"):
        SaturationCheck(limit, mask)


# --- gravity ----------------------------------------------------------------------------

def test_gravity_sensor_upright():
    """Sensor z up, cuff 3 cm below: pure -z force m*g, no torque (the lever is vertical)."""
    w = cuff_gravity_wrench(np.eye(3), 0.3, (0, 0, -0.03))
    np.testing.assert_allclose(w, [0, 0, -2.943, 0, 0, 0], atol=1e-12)


def test_gravity_sensor_tilted_90_deg_about_x():
    """Sensor y points up (base z), its z along base -y: weight along sensor -y and a lever of 3 cm.

    By hand: force (0, -0.3*9.81, 0) = (0, -2.943, 0) N; torque c x f with c = (0, 0, -0.03) m:
    x = c_y f_z - c_z f_y = 0 - (-0.03)(-2.943) = -0.08829 N·m.
    """
    w = cuff_gravity_wrench(rot_x(math.pi / 2), 0.3, (0, 0, -0.03))
    np.testing.assert_allclose(w, [0, -2.943, 0, -0.08829, 0, 0], atol=1e-12)


def test_gravity_sensor_upside_down_with_side_offset():
    """Rotated 180 deg about x: weight along sensor +z; a 2 cm x offset gives torque about sensor y.

    By hand: f = (0, 0, 0.5*9.81) = (0, 0, 4.905); c = (0.02, 0, 0): c x f = (0, -0.02*4.905, 0).
    """
    w = cuff_gravity_wrench(rot_x(math.pi), 0.5, (0.02, 0, 0))
    np.testing.assert_allclose(w, [0, 0, 4.905, 0, -0.0981, 0], atol=1e-12)


@given(st.floats(-math.pi, math.pi), st.floats(0.0, 2.0))
def test_gravity_force_has_the_weight_as_norm(angle, mass):
    w = cuff_gravity_wrench(rot_x(angle), mass, (0.01, 0.02, -0.03))
    assert np.linalg.norm(w[:3]) == pytest.approx(mass * 9.81, abs=1e-9)


def test_gravity_refuses_bad_rotation():
    with pytest.raises(ValueError, match="3x3"):
        cuff_gravity_wrench(np.eye(4), 0.3, (0, 0, 0))
    with pytest.raises(ValueError, match="3x3"):
        cuff_gravity_wrench(np.full((3, 3), np.nan), 0.3, (0, 0, 0))


# --- the pipeline -----------------------------------------------------------------------

CAL = Calibration(1_000_000, 1_000_000)


def stream(**kw) -> NetFTStream:
    kw.setdefault("saturation", SaturationCheck(counts_limit=100_000_000))
    return NetFTStream(CAL, stale_timeout=0.05, **kw)


def counts_of(wrench) -> tuple[int, ...]:
    return tuple(int(round(x * 1_000_000)) for x in wrench)


def test_stream_converts_and_reports_ok():
    s = stream()
    w = s.on_datagram(record_bytes(rdt=1, counts=(1_000_000, 2_000_000, -3_000_000, 100_000, 0, 0)), 10.0)
    np.testing.assert_allclose(w, [1, 2, -3, 0.1, 0, 0])
    assert s.health(10.01).state == "ok"


def test_tare_averages_the_window_and_zeroes_the_output():
    s = stream()
    s.on_datagram(record_bytes(rdt=1, counts=(5_000_000,) * 6), 0.0)
    s.start_tare(4)
    for i, fz in enumerate((1_000_000, 2_000_000, 3_000_000, 6_000_000)):
        assert s.tare_result() is None
        s.on_datagram(record_bytes(rdt=2 + i, counts=(0, 0, fz, 0, 0, 0)), 0.001 * i)
    assert "4 records" in s.tare_result()
    np.testing.assert_allclose(s.bias, [0, 0, 3.0, 0, 0, 0])
    w = s.on_datagram(record_bytes(rdt=6, counts=(0, 0, 3_500_000, 0, 0, 0)), 0.01)
    np.testing.assert_allclose(w, [0, 0, 0.5, 0, 0, 0])


def test_tare_skips_records_that_are_not_published():
    """A saturated or faulty record never enters the bias."""
    s = stream()
    s.start_tare(2)
    s.on_datagram(record_bytes(rdt=1, counts=(1_000_000, 0, 0, 0, 0, 0)), 0.0)
    s.on_datagram(record_bytes(rdt=2, status=0x80000000, counts=(90_000_000, 0, 0, 0, 0, 0)), 0.001)
    s.on_datagram(record_bytes(rdt=3, counts=(200_000_000, 0, 0, 0, 0, 0)), 0.002)
    assert s.tare_result() is None
    s.on_datagram(record_bytes(rdt=4, counts=(3_000_000, 0, 0, 0, 0, 0)), 0.003)
    np.testing.assert_allclose(s.bias[0], 2.0)


def test_gravity_compensation_removes_the_cuff_weight_as_the_arm_turns():
    """Tared upright with an offset; tilted by 90 deg the weight moves to another axis and is removed.

    Raw readings are built by hand: sensor offset + cuff weight in the sensor frame (+ the patient's push).
    """
    mass, com = 0.3, (0.0, 0.0, -0.03)
    offset = np.array([0.4, -0.2, 1.0, 0.01, 0.02, -0.03])
    upright = offset + np.array([0, 0, -2.943, 0, 0, 0])
    tilted = offset + np.array([0, -2.943, 0, -0.08829, 0, 0])
    push = np.array([5.0, 0.0, 2.0, 0.0, 0.1, 0.0])
    s = stream(cuff_mass=mass, cuff_com=com)
    s.start_tare(3)
    for i in range(3):
        s.on_datagram(record_bytes(rdt=i, counts=counts_of(upright)), 0.001 * i, np.eye(3))
    np.testing.assert_allclose(s.bias, offset, atol=2e-6)
    w = s.on_datagram(record_bytes(rdt=3, counts=counts_of(tilted)), 0.004, rot_x(math.pi / 2))
    np.testing.assert_allclose(w, np.zeros(6), atol=2e-6)
    w = s.on_datagram(record_bytes(rdt=4, counts=counts_of(tilted + push)), 0.005, rot_x(math.pi / 2))
    np.testing.assert_allclose(w, push, atol=2e-6)
    assert s.stats()["gravity_compensation"] is True


def test_tare_without_orientation_turns_gravity_compensation_off():
    """A bias taken with the orientation unknown holds the cuff weight: it must not be removed twice."""
    upright = np.array([0, 0, -2.943, 0, 0, 0])
    s = stream(cuff_mass=0.3, cuff_com=(0, 0, -0.03))
    s.start_tare(1)
    s.on_datagram(record_bytes(rdt=1, counts=counts_of(upright)), 0.0, None)
    assert "gravity compensation off" in s.tare_result()
    w = s.on_datagram(record_bytes(rdt=2, counts=counts_of(upright)), 0.001, np.eye(3))
    np.testing.assert_allclose(w, np.zeros(6), atol=2e-6)
    assert s.stats()["gravity_compensation"] is False


def test_status_error_and_saturation_withhold_the_wrench_until_healthy():
    s = stream(saturation=SaturationCheck(counts_limit=10_000_000))
    assert s.on_datagram(record_bytes(rdt=1, status=0x80000000), 0.0) is None
    assert s.health(0.001).state == "status_error"
    assert "0x80000000" in s.health(0.001).message
    assert s.on_datagram(record_bytes(rdt=2, counts=(0, 0, 10_000_000, 0, 0, 0)), 0.002) is None
    health = s.health(0.003)
    assert health.state == "saturated" and "Fz" in health.message and not health.publishing
    assert s.on_datagram(record_bytes(rdt=3, counts=(0, 0, 9_999_999, 0, 0, 0)), 0.004) is not None
    assert s.health(0.005).publishing
    stats = s.stats()
    assert (stats["status_errors"], stats["saturated_records"]) == (1, 1)


def test_stale_stream_counts_as_stopped():
    s = stream()
    assert s.health(0.0).state == "stopped"
    s.on_datagram(record_bytes(rdt=1), 1.0)
    assert s.health(1.04).state == "ok"
    health = s.health(1.2)
    assert health.state == "stopped" and "0.20 s" in health.message


def test_bad_and_late_datagrams_are_counted_not_published():
    s = stream()
    assert s.on_datagram(b"\x12\x34", 0.0) is None
    assert s.on_datagram(record_bytes(rdt=10), 0.0) is not None
    assert s.on_datagram(record_bytes(rdt=13), 0.0) is not None
    assert s.on_datagram(record_bytes(rdt=12), 0.0) is None
    stats = s.stats()
    assert (stats["bad_packets"], stats["lost_packets"], stats["late_packets"]) == (1, 2, 1)
    assert "2 bytes received" in stats["last_bad_packet"]


@pytest.mark.parametrize("kw, match", [
    ({"stale_timeout": 0}, "stale_timeout"), ({"cuff_mass": -1}, "cuff_mass"),
    ({"cuff_mass": float("nan")}, "cuff_mass"), ({"cuff_com": (0, 0)}, "cuff_com"),
])
def test_bad_stream_settings_are_refused(kw, match):
    kw.setdefault("stale_timeout", 0.05)
    with pytest.raises(ConfigError, match=match):
        NetFTStream(CAL, SaturationCheck(), **kw)


def test_tare_window_needs_a_sample():
    with pytest.raises(ValueError):
        TareWindow(0)
