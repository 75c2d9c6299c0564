"""The emulated CiA 402 drive and SLCAN adapter, frame by frame (no process, no backend)."""

from __future__ import annotations

import io
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rehab_robot.emulators import canopen as emu
from rehab_robot.hardware.canopen.bus_load import frame_bits


class Wire:
    """Collects the frames a drive sends."""

    def __init__(self):
        self.frames = []

    def __call__(self, can_id, data):
        self.frames.append((can_id, bytes(data)))

    def take(self):
        frames, self.frames = self.frames, []
        return frames


@pytest.fixture
def drive():
    wire = Wire()
    d = emu.Drive(emu.DriveSpec(node=3, counts_per_revolution=4096, gear=10.0, direction=-1, zero=100), 0, wire)
    d.wire = wire
    assert wire.take() == [(0x703, b"\x00")]  # boot-up
    return d


def sdo(d, request: bytes):
    d.on_sdo(request.ljust(8, b"\0"))
    frames = d.wire.take()
    assert len(frames) == 1 and frames[0][0] == 0x583, frames
    return frames[0][1]


def upload(d, index, sub=0):
    return sdo(d, bytes((0x40, index & 0xFF, index >> 8, sub)))


def download(d, index, sub, data: bytes):
    cmd = 0x23 | ((4 - len(data)) << 2)
    return sdo(d, bytes((cmd, index & 0xFF, index >> 8, sub)) + data)


def abort_code(reply):
    assert reply[0] == 0x80, reply.hex()
    return struct.unpack("<I", reply[4:8])[0]


def test_boot_up_and_nmt(drive):
    """Boot-up message at power-on; NMT start/stop/pre-operational; heartbeat with the state."""
    wire = Wire()
    d = emu.Drive(emu.DriveSpec(node=5), 0, wire)
    assert wire.take() == [(0x705, b"\x00")]
    d.on_nmt(b"\x01\x05")
    assert d.nmt == emu.NMT_OPERATIONAL
    d.on_nmt(b"\x80\x00")  # broadcast
    assert d.nmt == emu.NMT_PRE_OPERATIONAL
    d.on_nmt(b"\x02\x06")  # another node
    assert d.nmt == emu.NMT_PRE_OPERATIONAL
    d.put(0x1017, 0, 20)
    d.tick(100.0)
    assert wire.take() == [(0x705, b"\x7f")]
    d.tick(100.01)
    assert wire.take() == []
    d.tick(100.021)
    assert wire.take() == [(0x705, b"\x7f")]


def test_sdo_expedited_and_segmented(drive):
    """Expedited upload/download, segmented upload and download with toggle bits, aborts."""
    reply = upload(drive, 0x1000)
    assert reply[0] == 0x43 and struct.unpack("<I", reply[4:8])[0] == 0x00020192
    assert download(drive, 0x1017, 0, struct.pack("<H", 50))[0] == 0x60
    assert drive.get(0x1017) == 50
    assert abort_code(download(drive, 0x1000, 0, b"\0\0\0\0")) == emu.ABORT_READ_ONLY
    assert abort_code(upload(drive, 0x6FFF)) == emu.ABORT_NO_OBJECT
    assert abort_code(upload(drive, 0x1018, 9)) == emu.ABORT_NO_SUBINDEX
    assert abort_code(download(drive, 0x6060, 0, b"\x01")) == emu.ABORT_RANGE  # profile position: not supported
    assert abort_code(download(drive, 0x1017, 0, b"\x01\x02\x03\x04")) == emu.ABORT_LENGTH
    # Segmented upload of the device name: 7 bytes per segment, toggling.
    reply = upload(drive, 0x1008)
    size = struct.unpack("<I", reply[4:8])[0]
    assert reply[0] == 0x41 and size == len(b"rehab emulated CiA 402 servo drive")
    text, toggle = b"", 0
    while True:
        seg = sdo(drive, bytes((0x60 | toggle << 4,)))
        assert (seg[0] >> 4) & 1 == toggle
        text += seg[1:8 - ((seg[0] >> 1) & 7)]
        toggle ^= 1
        if seg[0] & 1:
            break
    assert text == b"rehab emulated CiA 402 servo drive"
    # Segmented download of 10 bytes; a wrong toggle aborts.
    assert sdo(drive, bytes((0x21, 0x00, 0x20, 0)) + struct.pack("<I", 10))[0] == 0x60
    assert sdo(drive, bytes((0x00,)) + b"left el")[0] == 0x20
    assert sdo(drive, bytes((0x10 | (4 << 1) | 1,)) + b"bow")[0] == 0x30
    assert drive.get(0x2000) == b"left elbow"
    sdo(drive, bytes((0x21, 0x00, 0x20, 0)) + struct.pack("<I", 10))
    assert abort_code(sdo(drive, bytes((0x10,)) + b"xxxxxxx")) == emu.ABORT_TOGGLE


def _map(d, comm, mapping, cob, objects):
    assert download(d, comm, 1, struct.pack("<I", cob | emu.COB_INVALID))[0] == 0x60
    assert download(d, mapping, 0, b"\x00")[0] == 0x60
    for k, (index, sub, bits) in enumerate(objects, 1):
        assert download(d, mapping, k, struct.pack("<I", index << 16 | sub << 8 | bits))[0] == 0x60
    assert download(d, mapping, 0, bytes((len(objects),)))[0] == 0x60
    assert download(d, comm, 2, b"\x01")[0] == 0x60
    assert download(d, comm, 1, struct.pack("<I", cob))[0] == 0x60


def test_pdo_mapping_rules(drive):
    """Mapping only while the PDO is invalid and sub-index 0 is 0; unmappable or > 64 bits refused."""
    assert abort_code(download(drive, 0x1A00, 0, b"\x00")) == emu.ABORT_STATE  # TPDO1 valid by default
    download(drive, 0x1801, 1, struct.pack("<I", 0x283 | emu.COB_INVALID))
    download(drive, 0x1A01, 1, struct.pack("<I", 0x60410010))
    download(drive, 0x1A01, 2, struct.pack("<I", 0x60640020))
    download(drive, 0x1A01, 3, struct.pack("<I", 0x606C0020))
    assert abort_code(download(drive, 0x1A01, 0, b"\x03")) == emu.ABORT_PDO_LENGTH  # 80 bits
    download(drive, 0x1A01, 3, struct.pack("<I", 0x60760020))  # rated torque: not mappable
    assert abort_code(download(drive, 0x1A01, 0, b"\x03")) == emu.ABORT_NOT_MAPPABLE
    assert download(drive, 0x1A01, 0, b"\x02")[0] == 0x60
    assert abort_code(download(drive, 0x1A01, 1, struct.pack("<I", 0x60410010))) == emu.ABORT_STATE
    # A valid PDO's COB-ID cannot change without invalidating it first.
    assert abort_code(download(drive, 0x1800, 1, struct.pack("<I", 0x190))) == emu.ABORT_RANGE


def _operational_csp(d):
    _map(d, 0x1400, 0x1600, 0x203, [(0x6040, 0, 16), (0x607A, 0, 32), (0x60B2, 0, 16)])
    _map(d, 0x1800, 0x1A00, 0x183, [(0x6041, 0, 16), (0x6064, 0, 32), (0x6077, 0, 16)])
    download(d, 0x6060, 0, b"\x08")
    download(d, 0x605A, 0, struct.pack("<h", 6))
    d.on_nmt(b"\x01\x03")


def _cycle(d, controlword, target=0, torque=0):
    d.on_rpdo(0, struct.pack("<Hih", controlword, target, torque))
    tpdos = d.on_sync()
    assert len(tpdos) == 1 and tpdos[0][0] == 0x183
    return struct.unpack("<Hih", tpdos[0][1])


def test_cia402_state_machine_over_pdos(drive):
    """Shutdown, switch on, enable, quick stop (hold), enable again (16); fault and fault reset."""
    _operational_csp(drive)
    drive.update_actual(0.0, 0.0, 0.0)
    assert emu.Drive.statusword(drive, False) & 0x4F == 0x40
    steps = [(0x06, emu.READY, 0x21), (0x07, emu.SWITCHED_ON, 0x23), (0x0F, emu.OPERATION_ENABLED, 0x27),
             (0x02, emu.QUICK_STOP, 0x07), (0x0F, emu.OPERATION_ENABLED, 0x27), (0x00, emu.SWITCH_ON_DISABLED, 0x40)]
    for word, state, bits in steps:
        status, _, _ = _cycle(drive, word)
        assert drive.state == state and status & 0x6F == bits, (hex(word), drive.state, hex(status))
    # Quick stop from Switched on goes to Switch on disabled, not Quick stop active.
    for word in (0x06, 0x07):
        _cycle(drive, word)
    _cycle(drive, 0x02)
    assert drive.state == emu.SWITCH_ON_DISABLED
    # A fault: EMCY with code and error register; only a rising bit 7 clears it.
    drive.wire.take()
    drive.fault(0x2310, now=0.0)
    assert drive.wire.take() == [(0x83, struct.pack("<HB", 0x2310, 0x03) + b"\0" * 5)]
    drive.tick(1.0)
    assert drive.state == emu.FAULT
    assert _cycle(drive, 0x0F)[0] & 0x4F == 0x08
    assert drive.state == emu.FAULT
    _cycle(drive, 0x80)
    assert drive.state == emu.SWITCH_ON_DISABLED and drive.get(0x603F) == 0
    assert (0x83, b"\0" * 8) in drive.wire.take()


def test_rpdo_is_applied_at_the_next_sync_and_units(drive):
    """Synchronous RPDOs take effect at SYNC; actual values use counts, gear, sign, zero, per mille."""
    _operational_csp(drive)
    drive.update_actual(0.5, 0.0, -2.0)
    drive.on_rpdo(0, struct.pack("<Hih", 0x06, 0, 0))
    assert drive.state == emu.SWITCH_ON_DISABLED
    status, position, torque = struct.unpack("<Hih", drive.on_sync()[0][1])
    assert drive.state == emu.READY
    assert position == 100 - round(0.5 * 10 * 4096 / (2 * 3.141592653589793))
    # -2 N·m at the joint, gear 10, direction -1: +0.2 N·m at the motor = 200 per mille of 1 N·m.
    assert torque == 200
    assert drive.torque_si(200) == pytest.approx(-2.0)


@given(data=st.binary(min_size=0, max_size=8), can_id=st.integers(0, 0x7FF))
def test_frame_bits_never_exceed_the_worst_case(data, can_id):
    """The bus-load formula's worst case bounds every real frame's stuffed length."""
    assert emu.can_frame_bits(len(data), data, can_id) <= frame_bits(len(data))


def test_slcan_adapter_commands():
    """Lawicel: bitrate only while closed, open/close, transmit acknowledged with z, BELL on errors."""
    out = io.StringIO()
    e = emu.Emulator([emu.DriveSpec(node=n) for n in (1, 2, 3, 4)], out=out)
    try:
        assert out.getvalue().startswith("PTY /dev/")
        assert e.command_line(b"t0800", 0.0) == emu.BELL  # channel closed
        assert e.command_line(b"S8", 0.0) == emu.OK and e.bitrate == 1000000
        assert e.command_line(b"O", 0.0) == emu.OK
        assert e.command_line(b"S6", 0.0) == emu.BELL  # bitrate only while closed
        assert e.command_line(b"t701105", 0.0) == b"z\r"
        e.tx.clear()
        assert e.command_line(b"t6018" + b"4000100000000000", 0.0) == b"z\r"  # SDO upload 0x1000, node 1
        assert bytes(e.tx) == b"t58184300100092010200\r"
        assert e.command_line(b"F", 0.0) == b"F00\r"
        e.command("busoff on", 0.0)
        assert e.command_line(b"t0800", 0.0) == emu.BELL
        assert e.command_line(b"F", 0.0) == b"FA0\r"
        assert e.command_line(b"t08", 0.0) == emu.BELL  # malformed
    finally:
        e.close_pty()


def test_csp_velocity_feed_forward_from_targets_without_a_velocity_offset(drive):
    """With no 0x60B1 mapped, the drive's velocity setpoint is the target difference per SYNC interval."""
    _operational_csp(drive)
    for word in (0x06, 0x07, 0x0F):
        _cycle(drive, word)
    assert drive.operation_enabled
    drive.on_rpdo(0, struct.pack("<Hih", 0x0F, 1000, 0))
    drive.on_sync(now=1.000)
    drive.on_rpdo(0, struct.pack("<Hih", 0x0F, 1010, 0))
    drive.on_sync(now=1.002)
    assert drive.target_velocity == pytest.approx(10 / 0.002)  # the measured SYNC interval
    download(drive, 0x1006, 0, struct.pack("<I", 4000))  # declared period 4 ms: used instead
    drive.on_rpdo(0, struct.pack("<Hih", 0x0F, 1030, 0))
    drive.on_sync(now=1.0021)
    assert drive.target_velocity == pytest.approx(20 / 0.004)
    _cycle(drive, 0x02)  # quick stop: no feed-forward
    assert drive.target_velocity == 0.0
