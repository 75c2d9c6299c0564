"""The Net F/T emulator in its own process, spoken to over localhost UDP with the driver's core module.

No ROS here: these tests check that the emulator behaves as the manual's RDT server and that
rehab_robot.sensors.netft reads it (both were written from the manual, independently).
"""

from __future__ import annotations

import json
import socket
import time

import numpy as np
import pytest

from rehab_robot.emulators.netft import Profile, ProfileError, main
from rehab_robot.sensors.netft import (
    CMD_SET_SOFTWARE_BIAS, CMD_START_REALTIME, CMD_STOP, Calibration, SaturationCheck, SequenceTracker,
    encode_request, parse_record,
)
from rehab_robot.testing_emulators import EmulatorProcess

CAL = Calibration(1e6, 1e6)


@pytest.fixture
def emulator(tmp_path):
    started = []

    def start(*args: str) -> EmulatorProcess:
        emu = EmulatorProcess("netft", ["--port", "0", "--control-port", "0", *args], tmp_path)
        started.append(emu)
        return emu

    yield start
    for emu in started:
        emu.stop()


@pytest.fixture
def host():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(1.0)
    yield sock
    sock.close()


def receive(sock, count: int) -> list:
    """Receive ``count`` records (fails on a 1 s silence)."""
    return [parse_record(sock.recv(100)) for _ in range(count)]


def silent(sock, seconds: float = 0.2, within: float = 2.0) -> bool:
    """True once nothing has arrived for ``seconds``, within ``within`` [s]; False if it kept streaming."""
    deadline = time.monotonic() + within
    sock.settimeout(seconds)
    try:
        while time.monotonic() < deadline:
            try:
                sock.recv(100)
            except socket.timeout:
                return True
        return False
    finally:
        sock.settimeout(1.0)


def fresh(sock):
    """Drop what is queued and return the next record to arrive."""
    sock.setblocking(False)
    try:
        while True:
            sock.recv(100)
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(1.0)
    time.sleep(0.01)  # a record queued before the command could still be in flight
    sock.setblocking(False)
    try:
        while True:
            sock.recv(100)
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(1.0)
    return receive(sock, 1)[0]


def test_streams_the_profile_after_start_and_stops_on_stop(emulator, host):
    emu = emulator("--wrench", "1.5,-2,10,0.1,-0.2,0.05")
    rdt = ("127.0.0.1", emu.ports[0])
    host.sendto(encode_request(CMD_START_REALTIME), rdt)
    records = receive(host, 50)
    sequences = [r.rdt_sequence for r in records]
    assert sequences == list(range(sequences[0], sequences[0] + 50))
    assert all(r.status == 0 for r in records)
    np.testing.assert_allclose(CAL.to_wrench(records[-1].counts), [1.5, -2, 10, 0.1, -0.2, 0.05])
    assert records[-1].ft_sequence > records[0].ft_sequence
    host.sendto(encode_request(CMD_STOP), rdt)
    assert silent(host)


def test_sample_count_and_sequence_wrap_around(emulator, host):
    """Asked for 12 records starting 5 below the uint32 limit: exactly 12, wrapping through 0, none lost."""
    emu = emulator("--start-sequence", str(2**32 - 5))
    host.sendto(encode_request(CMD_START_REALTIME, 12), ("127.0.0.1", emu.ports[0]))
    tracker = SequenceTracker()
    for record in receive(host, 12):
        assert tracker.update(record.rdt_sequence)
    assert tracker.last == 7 and tracker.lost == 0
    assert silent(host)


def test_software_bias_command_zeroes_the_reading(emulator, host):
    emu = emulator("--wrench", "3,0,-4,0,0,0.5")
    rdt = ("127.0.0.1", emu.ports[0])
    host.sendto(encode_request(CMD_START_REALTIME), rdt)
    assert receive(host, 1)[0].counts[0] == 3_000_000
    host.sendto(encode_request(CMD_SET_SOFTWARE_BIAS), rdt)
    time.sleep(0.05)
    assert fresh(host).counts == (0, 0, 0, 0, 0, 0)


def test_injected_faults_reach_the_wire(emulator, host):
    emu = emulator()
    rdt = ("127.0.0.1", emu.ports[0])
    host.sendto(encode_request(CMD_START_REALTIME), rdt)
    tracker = SequenceTracker()
    for r in receive(host, 5):
        tracker.update(r.rdt_sequence)
    assert emu.command("burst 25").startswith("ok")
    for r in receive(host, 100):  # records queued before the command come first
        tracker.update(r.rdt_sequence)
    assert tracker.lost >= 25
    assert json.loads(emu.command("stats")[3:])["dropped"] == 25

    assert emu.command("truncate 2").startswith("ok")
    lengths = [len(host.recv(100)) for _ in range(200)]  # some were queued before the command
    first = lengths.index(20)
    assert lengths[first:first + 3] == [20, 20, 36] and lengths.count(20) == 2

    assert emu.command("status 80000000").startswith("ok")
    assert fresh(host).status == 0x80000000
    assert emu.command("saturate Tx").startswith("ok")
    record = fresh(host)
    assert SaturationCheck(counts_limit=2_000_000_000).saturated_axes(record) == ("Tx",)

    assert emu.command("stop").startswith("ok")
    assert silent(host)
    host.sendto(encode_request(CMD_START_REALTIME), rdt)
    assert silent(host), "a stopped (silent) sensor must not answer requests"
    assert emu.command("clear").startswith("ok")
    record = receive(host, 1)[0]
    assert record.status == 0 and record.counts == (0,) * 6


def test_bad_requests_and_commands_are_refused(emulator, host):
    emu = emulator()
    rdt = ("127.0.0.1", emu.ports[0])
    host.sendto(b"\x12\x34\x00", rdt)
    host.sendto(b"\xab\xcd\x00\x02\x00\x00\x00\x00", rdt)
    host.sendto(b"\x12\x34\x00\x07\x00\x00\x00\x00", rdt)
    assert silent(host)
    assert json.loads(emu.command("stats")[3:])["ignored_requests"] == 3
    assert emu.command("saturate Fw").startswith("error: unknown axis 'Fw'")
    assert emu.command("loss 150").startswith("error")
    assert emu.command("explode").startswith("error: unknown command")
    assert emu.command("wrench 1 2").startswith("error")
    assert "3-byte request" in emu.output()


def test_profiles():
    """Sine and steps follow their definitions; bad profiles name what is wrong."""
    sine = Profile({"profile": "sine", "wrench": [0, 0, 10, 0, 0, 0], "amplitude": [2, 0, 0, 0, 0, 0],
                    "frequency": 1.0})
    assert sine.at(0.25)[0] == pytest.approx(2.0) and sine.at(0.25)[2] == 10
    steps = Profile({"profile": "steps", "steps": [{"duration": 1, "wrench": [1, 0, 0, 0, 0, 0]},
                                                   {"duration": 0.5, "wrench": [2, 0, 0, 0, 0, 0]}]})
    assert [steps.at(t)[0] for t in (0.5, 1.2, 1.6)] == [2 - 1, 2, 1]
    with pytest.raises(ProfileError, match="unknown; allowed: constant, sine, steps"):
        Profile({"profile": "ramp"})
    with pytest.raises(ProfileError, match="frequency must be a number > 0"):
        Profile({"profile": "sine", "amplitude": [0] * 6, "frequency": -1})
    with pytest.raises(ProfileError, match="6 numbers"):
        Profile({"profile": "constant", "wrench": [1, 2, 3]})
    with pytest.raises(ProfileError, match="NaN"):
        Profile({"profile": "constant", "wrench": [float("nan")] * 6})
    with pytest.raises(ProfileError, match=r"steps\[0\].duration"):
        Profile({"profile": "steps", "steps": [{"duration": 0, "wrench": [0] * 6}]})


def test_bad_options_exit_2_naming_the_problem(tmp_path, capsys):
    bad = tmp_path / "p.yaml"
    bad.write_text("profile: sine\nwrench: [0, 0, 0, 0, 0, 0]\namplitude: [1, 1]\nfrequency: 1\n")
    with pytest.raises(SystemExit) as exc:
        main(["--profile", str(bad)])
    assert exc.value.code == 2
    assert "amplitude: expected a list of 6 numbers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--rate", "0"])
    assert "--rate must be" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--port", "70000"])
    assert "--port must be 0 (any free port) to 65535" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--wrench=-1,2,x,0,0,0"])
    assert "option: wrench: expected 6 numbers" in capsys.readouterr().err
