"""Unit tests of the canopen backend's plain modules: configuration, units, PDO layouts,
CiA 402 state machine, bus load, EMCY texts and error frames; and the backend's PDO
encoding and decoding with a recording stand-in for the bus (no bus, no process)."""

from __future__ import annotations

import collections
import math
import struct
import threading

import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from rehab_robot import JOINT_NAMES
from rehab_robot.errors import ConfigError, HardwareError
from rehab_robot.hardware.canopen import cia402
from rehab_robot.hardware.canopen.backend import CanopenArm, check_bus_load
from rehab_robot.hardware.canopen.bus_load import bus_load, frame_bits, layout_bus_load
from rehab_robot.hardware.canopen.config import LAYOUTS, JointConfig, default_config_path, load_config
from rehab_robot.hardware.canopen.emcy import emcy_text, error_frame, register_text
from rehab_robot.hardware.interface import JointCommand
from rehab_robot.hardware.registry import backend_class, backend_options


def _write(tmp_path, changes=None, joint_changes=None, drop=()):
    """The shipped configuration with changes, as a file; returns its path."""
    data = yaml.safe_load(default_config_path().read_text())
    data["eds"] = str(default_config_path().parent / data["eds"])
    data.update(changes or {})
    for joint, fields in (joint_changes or {}).items():
        data["joints"][joint].update(fields)
    for joint, field in drop:
        if field is None:
            del data["joints"][joint]
        else:
            del data["joints"][joint][field]
    path = tmp_path / "arm.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# -- configuration -----------------------------------------------------------------


def test_shipped_configuration_loads_for_the_urdf_joints():
    """The example for the 4-DOF arm names every URDF joint once, in order, with distinct nodes."""
    config = load_config(default_config_path())
    assert tuple(j.name for j in config.joints) == JOINT_NAMES
    assert len({j.node_id for j in config.joints}) == 4
    assert all(j.eds.is_file() for j in config.joints)
    assert config.layout is LAYOUTS["compact"]


@pytest.mark.parametrize("changes, joint_changes, drop, expected", [
    ({}, {"elbow_flexion": {"node_id": 1}}, (), "joints.elbow_flexion.node_id = 1: already the node id of joint shoulder_flexion"),
    ({}, {}, (("shoulder_rotation", "node_id"),), "joints.shoulder_rotation.node_id is missing"),
    ({}, {"shoulder_flexion": {"gear_ratio": 0}}, (), "joints.shoulder_flexion.gear_ratio = 0: must be a number > 0"),
    ({}, {"shoulder_flexion": {"gear_ratio": -2.0}}, (), "gear_ratio = -2.0: must be a number > 0"),
    ({}, {"elbow_flexion": {"counts_per_revolution": 0}}, (), "counts_per_revolution = 0: must be a number > 0"),
    ({}, {"elbow_flexion": {"node_id": 128}}, (), "node_id = 128: must be an integer from 1 to 127"),
    ({}, {"elbow_flexion": {"direction": 2}}, (), "direction = 2: must be 1 or -1"),
    ({}, {"elbow_flexion": {"eds": "missing.eds"}}, (), "joints.elbow_flexion.eds = 'missing.eds': no such file"),
    ({}, {"elbow_flexion": {"rated_torque": 1.0}}, (), "rated_torque and torque_constant are both given"),
    ({}, {"shoulder_flexion": {"rated_torque": math.nan}}, (), "rated_torque = nan: must be a number > 0"),
    ({}, {}, (("elbow_flexion", None),), "joint 'elbow_flexion' is missing"),
    ({"bitrate": 123}, {}, (), "bitrate = 123: must be one of"),
    ({"pdo_layout": "huge"}, {}, (), "pdo_layout = 'huge': must be one of full, compact"),
    ({"quick_stop_option_code": 2}, {}, (), "quick_stop_option_code = 2: must be one of 5, 6, 7, 8"),
    ({"max_bus_load": 0.9}, {}, (), "max_bus_load = 0.9: must be between 0.05 and 0.6"),
    ({"heartbeat_timeout": 0.06}, {}, (), "heartbeat_timeout = 0.06: must be between 1.5 x heartbeat_time"),
    ({"colour": "red"}, {}, (), "unknown field 'colour'"),
])
def test_bad_configuration_is_one_line_naming_file_and_field(tmp_path, changes, joint_changes, drop, expected):
    """Each bad value: a ConfigError naming the file, the field and what is allowed."""
    path = _write(tmp_path, changes, joint_changes, drop)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message and expected in message, message
    assert "\n" not in message


def test_unknown_joint_is_refused(tmp_path):
    data = yaml.safe_load(default_config_path().read_text())
    data["joints"]["wrist"] = dict(data["joints"]["elbow_flexion"], node_id=9)
    path = tmp_path / "arm.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="unknown joint 'wrist'; allowed: shoulder_flexion"):
        load_config(path)


def test_check_options_refuses_a_missing_channel_and_a_bus_too_full(tmp_path):
    """check_options opens nothing: a missing channel and an over-full bus are one line each."""
    path = _write(tmp_path, {"interface": "socketcan", "channel": "can7"})
    with pytest.raises(ConfigError, match="channel = 'can7': no such socketcan interface"):
        CanopenArm.check_options(config=str(path))
    path = _write(tmp_path, {"interface": "slcan", "channel": str(tmp_path / "ttyACM9")})
    with pytest.raises(ConfigError, match="no such serial device"):
        CanopenArm.check_options(config=str(path))
    path = _write(tmp_path, {"interface": "nonsense", "channel": "x"})
    with pytest.raises(ConfigError, match="interface = 'nonsense': not a python-can interface"):
        CanopenArm.check_options(config=str(path))
    # A bus carried as UDP multicast leaves the machine: refused before anything opens.
    path = _write(tmp_path, {"interface": "udp_multicast", "channel": "239.74.163.2"})
    with pytest.raises(ConfigError, match="interface = 'udp_multicast': not allowed, it sends the bus's frames onto the network"):
        CanopenArm.check_options(config=str(path))
    # The full layout does not fit 500 Hz on 1 Mbit/s; compact does; full fits at 250 Hz.
    path = _write(tmp_path, {"interface": "virtual", "channel": "x", "pdo_layout": "full"})
    with pytest.raises(ConfigError) as info:
        CanopenArm.check_options(config=str(path), loop_rate=500.0)
    assert "computed bus load 95.3 %" in str(info.value) and "exceeds max_bus_load 60 %" in str(info.value)
    CanopenArm.check_options(config=str(path), loop_rate=250.0)
    path = _write(tmp_path, {"interface": "virtual", "channel": "x", "pdo_layout": "compact"})
    CanopenArm.check_options(config=str(path), loop_rate=500.0)


def test_registry_binds_options_and_checks_them_before_anything_opens(tmp_path):
    """``hardware:=canopen`` is registered; a misspelt option or bad value is refused up front."""
    cls = backend_class("canopen")
    assert cls is CanopenArm
    with pytest.raises(ConfigError, match="allowed options: config, interface, channel, bitrate, loop_rate"):
        backend_options("{chanel: can0}", cls)
    path = _write(tmp_path, {"interface": "virtual", "channel": "x", "pdo_layout": "full"})
    with pytest.raises(ConfigError, match="computed bus load"):
        backend_options(f"{{config: {path}}}", cls, loop_rate=500.0)


# -- units -------------------------------------------------------------------------


def _joint(**changes) -> JointConfig:
    fields = dict(name="elbow_flexion", node_id=4, eds=default_config_path(), counts_per_revolution=524288.0,
                  gear_ratio=80.0, direction=-1, zero_offset=262144, rated_torque=0.64, torque_constant=None)
    fields.update(changes)
    return JointConfig(**fields)


def test_unit_conversions_by_hand():
    """Position, velocity and torque conversions against hand-computed values."""
    joint = _joint()
    # 1 rad at the joint = 524288 * 80 / (2 pi) = 6675442.1 increments, negative direction.
    assert joint.position_to_counts(1.0) == 262144 - 6675442
    assert joint.counts_to_position(262144) == 0.0
    assert joint.counts_to_position(262144 - 524288 * 80) == pytest.approx(2 * math.pi)
    assert joint.velocity_to_counts(0.5) == -3337721
    # 1000 per mille of 0.64 N·m at the motor = 0.64 * 80 = 51.2 N·m at the joint.
    assert joint.permille_to_torque(1000, 0.64) == pytest.approx(-51.2)
    assert joint.torque_to_permille(-51.2, 0.64) == 1000
    assert joint.torque_to_permille(1e9, 0.64) == -32768  # int16 clamp (direction -1), never a wrap-around
    assert joint.torque_to_permille(-1e9, 0.64) == 32767
    assert joint.position_to_counts(-1e12) == 2**31 - 1


@given(angle=st.floats(-3.0, 3.0), gear=st.floats(1.0, 200.0), direction=st.sampled_from([1, -1]),
       zero=st.integers(-2**20, 2**20))
def test_position_round_trip_is_within_one_increment(angle, gear, direction, zero):
    joint = _joint(gear_ratio=gear, direction=direction, zero_offset=zero)
    back = joint.counts_to_position(joint.position_to_counts(angle))
    assert abs(back - angle) <= 0.51 / joint.counts_per_radian


# -- PDO layouts ---------------------------------------------------------------------


def test_layouts_fit_classic_frames_and_carry_the_cyclic_objects():
    """Every PDO <= 64 bits; each layout carries controlword, target, statusword, position, torque."""
    for layout in LAYOUTS.values():
        for pdo in (*layout.rpdos, *layout.tpdos):
            assert sum(m.bits for m in pdo) <= 64
        assert {"controlword", "target_position", "torque_offset", "statusword", "position", "torque"} <= layout.roles()
    assert {"velocity_offset", "velocity"} <= LAYOUTS["full"].roles()
    compact = LAYOUTS["compact"]
    assert [(m.index, m.bits) for m in compact.rpdos[0]] == [(0x6040, 16), (0x607A, 32), (0x60B2, 16)]
    assert [(m.index, m.bits) for m in compact.tpdos[0]] == [(0x6041, 16), (0x6064, 32), (0x6077, 16)]


# -- bus load ------------------------------------------------------------------------


def test_frame_bits_worst_case_by_hand():
    """47 + 8n bits plus floor((34 + 8n - 1) / 4) stuff bits: 55 (SYNC), 115 (6 bytes), 135 (8 bytes)."""
    assert frame_bits(0) == 55
    assert frame_bits(6) == 95 + 20
    assert frame_bits(8) == 111 + 24
    with pytest.raises(ValueError):
        frame_bits(9)


def test_bus_load_of_four_axes_at_500_hz_by_hand():
    """Hand count for 4 drives, 500 Hz, 1 Mbit/s, 50 ms heartbeats (docs/hardware/canopen.md).

    full:    SYNC 55 + 4 x (4 x 115) = 1895 bit/cycle -> 947500 bit/s + heartbeats 4 x 65 x 20 = 5200
    compact: SYNC 55 + 4 x (2 x 135) = 1135 bit/cycle -> 567500 bit/s + 5200
    """
    full = layout_bus_load(LAYOUTS["full"], 4, 500.0, 1000000, 0.05)
    assert full.per_cycle_bits == 1895
    assert full.bits_per_second == pytest.approx(947500 + 5200)
    assert full.frames_per_second == pytest.approx(500 * 17 + 80)
    compact = layout_bus_load(LAYOUTS["compact"], 4, 500.0, 1000000, 0.05)
    assert compact.per_cycle_bits == 1135
    assert compact.load == pytest.approx(0.5727)
    assert bus_load([8], [8], 1, 1000.0, 500000, 1.0).bits_per_second == pytest.approx(1000 * (55 + 270) + 65)


def test_bus_load_check_names_the_figure(tmp_path):
    config = load_config(_write(tmp_path, {"pdo_layout": "full"}))
    with pytest.raises(ConfigError, match=r"computed bus load 95\.3 % \(952700 bit/s"):
        check_bus_load(config, 500.0)
    check_bus_load(config, 300.0)


# -- CiA 402 state machine -------------------------------------------------------------


@pytest.mark.parametrize("statusword, state", [
    (0x0000, cia402.NOT_READY), (0x0250, cia402.SWITCH_ON_DISABLED), (0x0231, cia402.READY),
    (0x0233, cia402.SWITCHED_ON), (0x1237, cia402.OPERATION_ENABLED), (0x0617, cia402.QUICK_STOP_ACTIVE),
    (0x021F, cia402.FAULT_REACTION_ACTIVE), (0x0218, cia402.FAULT), (0x0208, cia402.FAULT),
])
def test_statusword_decoding(statusword, state):
    assert cia402.state(statusword) == state


def test_controlword_climbs_to_holding_only_when_allowed():
    """Start-up climbs SOD -> ready -> switched on -> enabled -> quick stop; running, never."""
    climb = [cia402.controlword(s, follow=False, climb=True) for s in
             (cia402.SWITCH_ON_DISABLED, cia402.READY, cia402.SWITCHED_ON, cia402.OPERATION_ENABLED,
              cia402.QUICK_STOP_ACTIVE)]
    assert climb == [0x06, 0x07, 0x0F, 0x02, 0x02]
    # Following: quick stop active -> operation enabled (transition 16) and stay there.
    assert cia402.controlword(cia402.QUICK_STOP_ACTIVE, follow=True, climb=False) == 0x0F
    assert cia402.controlword(cia402.OPERATION_ENABLED, follow=True, climb=False) == 0x0F
    assert cia402.controlword(cia402.OPERATION_ENABLED, follow=False, climb=False) == 0x02
    # A drive that dropped out is not climbed back while running, and a fault is never reset here.
    for state in (cia402.SWITCH_ON_DISABLED, cia402.READY, cia402.SWITCHED_ON):
        word = cia402.controlword(state, follow=True, climb=False)
        assert word not in (0x06 if state == cia402.SWITCH_ON_DISABLED else -1, 0x0F)
    for state in (cia402.FAULT, cia402.FAULT_REACTION_ACTIVE):
        for follow in (True, False):
            for climb in (True, False):
                assert not cia402.controlword(state, follow, climb) & cia402.FAULT_RESET


def test_device_type_check():
    assert cia402.is_device_type_402(0x00020192)
    assert cia402.is_device_type_402(0x0192)
    assert not cia402.is_device_type_402(0x00020191)
    assert not cia402.is_device_type_402(0x01920000)


# -- EMCY --------------------------------------------------------------------------------


def test_emcy_texts():
    assert emcy_text(0x2310) == "continuous over-current"
    assert emcy_text(0x8130) == "life guard or heartbeat error"
    assert emcy_text(0x4310) == "excess temperature drive"
    assert emcy_text(0x2399) == "current error (code not listed)"
    assert emcy_text(0xFF42) == "device specific error (code not listed)"
    assert register_text(0x03) == "generic, current"
    assert register_text(0) == "none"


def test_error_frames_are_classified():
    """Bus-off leaves the bus; error passive fails it; a single error is only counted."""
    assert error_frame(0x040, b"") == ("bus-off", "bus-off")
    text, severity = error_frame(0x004, bytes((0, 0x20)))
    assert severity == "passive" and text == "controller problem, TX error passive"
    assert error_frame(0x004, bytes((0, 0x08)))[1] == "counted"  # a warning only
    assert error_frame(0x088, b"")[1] == "counted"
    assert error_frame(0x020, b"")[0] == "no ACK on transmission"


class _Network:
    """Records what the backend sends (no bus)."""

    def __init__(self):
        self.sent = []

    def send_message(self, can_id, data):
        self.sent.append((can_id, bytes(data)))


def _bare_arm(layout: str) -> CanopenArm:
    """A CanopenArm with its state but no bus: for the PDO encoding and decoding alone."""
    arm = CanopenArm.__new__(CanopenArm)
    arm.config = load_config(default_config_path())
    arm.layout = LAYOUTS[layout]
    arm.period = 0.002
    arm._network, arm._lost, arm._frames_sent, arm._cycles = _Network(), None, 0, 10
    arm._rated = np.array([1.27, 1.27, 0.64, 0.64])
    arm._statusword = np.full(4, 0x0617)  # quick stop active
    arm._counts = np.array([100, 200, 300, 400], dtype=np.int64)
    arm._hold_counts = arm._counts.copy()
    arm._follow, arm._command = False, None
    n_tpdo = len(arm.layout.tpdos)
    arm._tpdo_data = [[b""] * n_tpdo for _ in range(4)]
    arm._tpdo_count = np.zeros((4, n_tpdo), dtype=np.int64)
    arm._tpdo_seen = np.zeros((4, n_tpdo), dtype=np.int64)
    arm._missed = np.zeros(4, dtype=int)
    arm._position, arm._velocity, arm._effort = np.zeros(4), np.zeros(4), np.zeros(4)
    arm._sync_times = collections.deque([0.0, 0.002], maxlen=9)
    arm._history = [collections.deque(maxlen=4) for _ in range(4)]
    arm._reported = set()
    arm._lock = threading.Lock()
    return arm


def test_rpdos_encode_the_mapping_the_backend_writes():
    """Hold: quick stop + actual position; follow: enable + setpoint in drive units, per layout."""
    arm = _bare_arm("compact")
    arm._send_rpdos()
    assert arm._network.sent[0] == (0x201, struct.pack("<Hih", 0x02, 100, 0))
    assert [cob for cob, _ in arm._network.sent] == [0x201, 0x202, 0x203, 0x204]
    arm._network.sent.clear()
    arm._follow = True
    arm._command = JointCommand(np.array([0.0, 0.0, 0.0, 0.01]), np.zeros(4), np.array([0, 0, 0, 5.12])) \
        .checked_fields(JOINT_NAMES)
    arm._send_rpdos()
    elbow = arm.config.joints[3]
    word, target, torque = struct.unpack("<Hih", arm._network.sent[3][1])
    assert word == 0x0F and target == elbow.position_to_counts(0.01)
    assert torque == 100  # 5.12 N·m / (80 x 0.64 N·m) = 0.1 = 100 per mille
    full = _bare_arm("full")
    full._follow, full._command = True, arm._command
    full._send_rpdos()
    assert [cob for cob, _ in full._network.sent[:2]] == [0x201, 0x301]
    assert struct.unpack("<ih", full._network.sent[7][1]) == (0, 100)


def test_tpdos_decode_to_si_and_velocity_spans_the_sync_periods():
    """Statusword, position and torque in SI; velocity over the SYNC intervals as they were sent
    (two here, one SYNC late)."""
    arm = _bare_arm("compact")
    elbow = arm.config.joints[3]
    for j, joint in enumerate(arm.config.joints):
        arm._tpdo_data[j][0] = struct.pack("<Hih", 0x0617, joint.position_to_counts(0.2), 500)
        arm._tpdo_count[j, 0] = 1
    arm._take_tpdos(0.0)
    assert arm._position[3] == pytest.approx(0.2, abs=1e-6)
    assert arm._effort[3] == pytest.approx(0.5 * 0.64 * 80)
    arm._tpdo_data[3][0] = struct.pack("<Hih", 0x0617, elbow.position_to_counts(0.204), 500)
    arm._sync_times.extend([0.0045, 0.0065])  # one SYNC sent late: intervals 2.5 ms and 2 ms
    arm._tpdo_count[:, 0] = 3  # two SYNCs answered since the last read
    arm._take_tpdos(0.0)
    assert arm._velocity[3] == pytest.approx(0.004 / 0.0045, rel=1e-3)
    arm._tpdo_data[2][0] = b"\x17\x06\x00"
    arm._tpdo_count[:, 0] = 4
    with pytest.raises(HardwareError, match="TPDO1 has 3 bytes, the mapping written needs 8"):
        arm._take_tpdos(0.0)
