"""The Dynamixel emulator: Protocol 2.0 framing against the spec's examples, servo rules."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rehab_robot.emulators import dynamixel as emu

# Example packets of the ROBOTIS e-manual, "DYNAMIXEL Protocol 2.0" (instruction and status).
SPEC_INSTRUCTIONS = [
    # (id, instruction, params, packet)
    (1, emu.INST_PING, "", "FF FF FD 00 01 03 00 01 19 4E"),
    (1, emu.INST_READ, "84 00 04 00", "FF FF FD 00 01 07 00 02 84 00 04 00 1D 15"),
    (1, emu.INST_WRITE, "74 00 00 02 00 00", "FF FF FD 00 01 09 00 03 74 00 00 02 00 00 CA 89"),
    (1, emu.INST_REBOOT, "", "FF FF FD 00 01 03 00 08 2F 4E"),
    (0xFE, emu.INST_SYNC_READ, "84 00 04 00 01 02", "FF FF FD 00 FE 09 00 82 84 00 04 00 01 02 CE FA"),
    (0xFE, emu.INST_SYNC_WRITE, "74 00 04 00 01 96 00 00 00 02 AA 00 00 00",
     "FF FF FD 00 FE 11 00 83 74 00 04 00 01 96 00 00 00 02 AA 00 00 00 82 87"),
]
SPEC_STATUSES = [
    # (id, error, params, packet)
    (1, 0, "06 04 26", "FF FF FD 00 01 07 00 55 00 06 04 26 65 5D"),  # ping: model 1030, fw 38
    (2, 0, "06 04 26", "FF FF FD 00 02 07 00 55 00 06 04 26 6F 6D"),
    (1, 0, "A6 00 00 00", "FF FF FD 00 01 08 00 55 00 A6 00 00 00 8C C0"),  # read: 166
    (2, 0, "1F 08 00 00", "FF FF FD 00 02 08 00 55 00 1F 08 00 00 BA BE"),  # sync read: 2079
    (1, 0, "", "FF FF FD 00 01 04 00 55 00 A1 0C"),  # write / reboot
]


@pytest.mark.parametrize("servo_id, instruction, params, packet", SPEC_INSTRUCTIONS)
def test_instruction_packets_match_the_spec(servo_id, instruction, params, packet):
    """Building the spec's instruction packets gives its bytes, CRC included; parsing undoes it."""
    raw = bytes.fromhex(packet)
    assert emu.build_packet(servo_id, instruction, bytes.fromhex(params)) == raw
    [parsed] = emu.PacketReader().feed(raw, 0.0)
    assert (parsed.servo_id, parsed.instruction, parsed.params, parsed.crc_ok) == (
        servo_id, instruction, bytes.fromhex(params), True)


@pytest.mark.parametrize("servo_id, error, params, packet", SPEC_STATUSES)
def test_status_packets_match_the_spec(servo_id, error, params, packet):
    """The emulator's status packets are the spec's, byte for byte."""
    assert emu.build_status(servo_id, error, bytes.fromhex(params)) == bytes.fromhex(packet)


def test_crc_table_is_the_spec_polynomial():
    """The literal CRC table is CRC-16 with polynomial 0x8005 (spot checks of the spec table)."""
    assert emu.CRC_TABLE[:4] == (0x0000, 0x8005, 0x800F, 0x000A)
    assert emu.CRC_TABLE[-1] == 0x0202 and len(emu.CRC_TABLE) == 256


def test_reader_skips_noise_waits_for_split_packets_and_flags_bad_crc():
    """Garbage before a header is skipped; a packet split across reads is joined; a bad CRC is flagged."""
    raw = bytes.fromhex(SPEC_INSTRUCTIONS[1][3])
    reader = emu.PacketReader()
    assert reader.feed(b"\x00\x12\xff" + raw[:5], 0.0) == []
    [packet] = reader.feed(raw[5:], 0.001)
    assert packet.crc_ok and packet.params == bytes.fromhex("84 00 04 00")
    bad = raw[:-1] + bytes((raw[-1] ^ 0x01,))
    [packet] = reader.feed(bad, 0.002)
    assert not packet.crc_ok


def test_reader_drops_a_packet_left_incomplete():
    """Like a servo's packet timeout: a stale partial packet does not glue onto the next one."""
    raw = bytes.fromhex(SPEC_INSTRUCTIONS[0][3])
    reader = emu.PacketReader(timeout=0.05)
    assert reader.feed(raw[:6], 0.0) == []
    [packet] = reader.feed(raw, 1.0)
    assert packet.crc_ok and packet.instruction == emu.INST_PING


def test_byte_stuffing_example():
    """FF FF FD inside the parameters goes on the wire as FF FF FD FD, the length counts it."""
    params = bytes.fromhex("10 00 FF FF FD 01")
    raw = emu.build_packet(1, emu.INST_WRITE, params)
    assert bytes.fromhex("FF FF FD FD 01") in raw[7:]
    assert raw[5] | raw[6] << 8 == 1 + len(params) + 1 + 2
    [packet] = emu.PacketReader().feed(raw, 0.0)
    assert packet.crc_ok and packet.params == params


@settings(max_examples=200, deadline=None)
@given(servo_id=st.integers(0, 252), instruction=st.sampled_from([1, 2, 3, 8, 0x82, 0x83]),
       params=st.one_of(st.binary(max_size=40),
                        st.lists(st.sampled_from([0xFF, 0xFD, 0x00]), max_size=40).map(bytes)))
def test_framing_round_trips_and_agrees_with_the_sdk(servo_id, instruction, params):
    """Any packet survives the wire; its CRC and stuffing equal ROBOTIS's SDK implementation."""
    from dynamixel_sdk import PacketHandler

    raw = emu.build_packet(servo_id, instruction, params)
    [packet] = emu.PacketReader().feed(b"\x00" + raw, 0.0)
    assert (packet.servo_id, packet.instruction, packet.params, packet.crc_ok) == (
        servo_id, instruction, params, True)
    handler = PacketHandler(2.0)
    assert handler.updateCRC(0, list(raw[:-2]), len(raw) - 2) == raw[-2] | raw[-1] << 8
    unstuffed = [0xFF, 0xFF, 0xFD, 0x00, servo_id, (len(params) + 3) & 0xFF, (len(params) + 3) >> 8,
                 instruction, *params, 0, 0]
    assert bytes(handler.addStuffing(unstuffed)[:-2]) == raw[:-2]


@settings(max_examples=200, deadline=None)
@given(noise=st.binary(max_size=64))
def test_reader_never_crashes_on_noise(noise):
    """Bytes from the wire never raise; whatever parses has a length that fits."""
    for packet in emu.PacketReader().feed(noise, 0.0):
        assert isinstance(packet.params, bytes)


# -- servo control-table rules ---------------------------------------------------


def _servo(model=2020) -> emu.Servo:
    return emu.Servo(1, model, 0, 1.0, 1, 0)


def test_eeprom_is_locked_while_torque_is_on():
    """Writing EEPROM (Operating Mode) with torque on is an Access Error; with torque off it works."""
    servo = _servo()
    assert servo.write(512, b"\x01") == 0
    assert servo.write(11, b"\x04") == emu.ERR_ACCESS
    assert servo.write(512, b"\x00") == 0
    assert servo.write(11, b"\x04") == 0 and servo.memory[11] == 4


def test_write_rules():
    """Read-only addresses, values out of range and beyond limits are refused, memory unchanged."""
    servo = _servo(2020)
    assert servo.write(580, b"\x00\x00\x00\x00") == emu.ERR_ACCESS  # Present Position
    assert servo.write(11, b"\x05") == emu.ERR_DATA_RANGE  # Dynamixel-P has no mode 5
    assert servo.write(512, b"\x02") == emu.ERR_DATA_RANGE
    limit = servo.get(38, 2)
    assert servo.write(550, (limit + 1).to_bytes(2, "little")) == emu.ERR_DATA_LIMIT
    assert servo.get(550, 2) == limit
    x = _servo(1120)
    assert x.write(11, b"\x05") == 0 and x.memory[11] == 5


def test_hardware_error_cuts_torque_until_reboot():
    """An overload error turns torque off and refuses torque on; power-on (reboot) clears it."""
    servo = _servo(1120)
    servo.write(64, b"\x01")
    servo.set_hardware_error(0x20)
    assert not servo.torque_on and servo.error_byte == emu.ALERT
    assert servo.write(64, b"\x01") == emu.ERR_RESULT_FAIL
    servo.power_on()
    assert servo.error_byte == 0 and servo.write(64, b"\x01") == 0


def test_input_voltage_error_alerts_without_shutdown():
    """Errors the Shutdown register does not select (input voltage) leave torque on."""
    servo = _servo(1120)
    servo.write(64, b"\x01")
    servo.set_hardware_error(0x01)
    assert servo.torque_on and servo.error_byte == emu.ALERT


def test_bus_instructions_and_injected_faults():
    """Ping, Sync Read in id order, CRC errors answered, dropped and corrupted replies."""
    servos = [emu.Servo(i + 1, 2020, i, 2.0, 1, 0) for i in range(4)]
    emulator = emu.Emulator(servos, out=io.StringIO())
    try:
        emulator.step()
        reader = emu.PacketReader()

        def ask(servo_id, instruction, params=b""):
            raw = emu.build_packet(servo_id, instruction, params)
            [packet] = reader.feed(raw, 0.0)
            return emulator.handle(packet, 1.0)

        assert ask(3, emu.INST_PING) == emu.build_status(3, 0, bytes((0xE4, 0x07, emu.FIRMWARE_VERSION)))
        replies = ask(0xFE, emu.INST_SYNC_READ, bytes((0x44, 0x02, 4, 0, 4, 2)))
        assert [replies[4], replies[15 + 4]] == [4, 2]
        [packet] = reader.feed(emu.build_packet(1, emu.INST_WRITE, b"\x00\x02\x01")[:-1] + b"\x00", 0.0)
        assert emulator.handle(packet, 1.0)[8] == emu.ERR_CRC
        emulator.command("drop 2")
        emulator.command("crc 4")
        replies = ask(0xFE, emu.INST_SYNC_READ, bytes((0x44, 0x02, 4, 0, 2, 4)))
        assert len(replies) == 15 and replies[4] == 4
        assert emu.crc16(replies[:-2]) != replies[-2] | replies[-1] << 8
        assert emulator.out.getvalue().splitlines()[-2:] == ["ok drop 2", "ok crc 4"]
        emulator.command("bogus 1")
        assert "error bogus 1" in emulator.out.getvalue()
    finally:
        emulator.close_pty()


@pytest.mark.timeout(20)
def test_replies_nobody_reads_never_block_the_emulator():
    """With the port closed by the host, status packets pile up; the emulator drops them, never blocks."""
    emulator = emu.Emulator([emu.Servo(1, 2020, 0, 2.0, 1, 0)], out=io.StringIO())
    try:
        for _ in range(20):
            emulator.send(bytes(4000))  # far more than a terminal's input queue holds
    finally:
        emulator.close_pty()
