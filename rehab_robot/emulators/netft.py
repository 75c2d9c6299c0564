"""Emulated ATI Net F/T: an RDT server on a local UDP port, with fault injection.

Built from ATI's Net F/T manual (UDP interface using RDT), not from the driver:

* it listens for 8-byte requests (uint16 header 0x1234, uint16 command, uint32 sample
  count; network byte order) and answers the address the request came from;
* command 0x0002 starts real-time streaming (one 36-byte record per datagram:
  uint32 rdt_sequence, uint32 ft_sequence, uint32 status, int32 Fx Fy Fz Tx Ty Tz) at
  the RDT output rate, for ``sample count`` records or, with 0, until told to stop;
  0x0000 stops; 0x0042 sets the software bias (the current reading becomes zero);
  anything else is ignored, as the sensor does;
* forces and torques are sent in counts: value [N or N·m] x counts per force/torque.

The force comes from a scripted profile (``--wrench``, ``--profile FILE``, ``--clock-probe``).
Faults are injected by text commands sent as UDP datagrams to ``--control-port``
(each is answered with ``ok ...`` or ``error ...``)::

    wrench FX FY FZ TX TY TZ   constant wrench from now on [N, N·m]
    saturate [AXIS]            pin AXIS (Fx..Tz, default Fz) at int32 full scale
    loss PERCENT               drop PERCENT % of datagrams at random (sequence numbers still advance)
    burst N                    drop the next N datagrams
    status HEX                 status code sent in every record (0: healthy)
    truncate [N]               cut the next N datagrams (default 1) to 20 bytes (a corrupted datagram)
    stop                       go silent: stop streaming and ignore requests (cable pulled)
    resume                     undo stop; streaming continues where it was going
    clear                      remove every fault
    stats                      JSON: records sent, dropped, streaming, client

Run: ``rehab-robot emulate netft [--port 49152] [--control-port 0] [--rate 1000] ...``
It prints one line with the bound ports, then runs until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import select
import signal
import socket
import struct
import sys
import time
from typing import Optional

import yaml

HEADER = 0x1234
START_REALTIME, STOP, SOFTWARE_BIAS = 0x0002, 0x0000, 0x0042
REQUEST = struct.Struct("!HHI")
RECORD = struct.Struct("!IIIiiiiii")
INT32_MAX, INT32_MIN = 2**31 - 1, -(2**31)
AXIS_NAMES = ("Fx", "Fy", "Fz", "Tx", "Ty", "Tz")
#: The clock probe's counts wrap here (1000 s in µs), well inside int32.
CLOCK_PROBE_MODULUS = 10**9


class ProfileError(ValueError):
    """A force profile (file or option) that cannot be used; the message says what is wrong."""


def _wrench(value, where: str) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != 6:
        raise ProfileError(f"{where}: expected a list of 6 numbers [Fx, Fy, Fz, Tx, Ty, Tz] (N, N·m), got {value!r}")
    try:
        numbers = [float(v) for v in value]
    except (TypeError, ValueError):
        raise ProfileError(f"{where}: expected 6 numbers, got {value!r}") from None
    if not all(math.isfinite(v) for v in numbers):
        raise ProfileError(f"{where}: NaN and infinity are not allowed, got {value!r}")
    return numbers


class Profile:
    """A scripted wrench over time: constant, sine or repeating steps.

    Args:
        spec: ``{"profile": "constant", "wrench": [6]}``,
            ``{"profile": "sine", "wrench": [6] (offset), "amplitude": [6], "frequency": Hz}`` or
            ``{"profile": "steps", "steps": [{"duration": s, "wrench": [6]}, ...]}`` (repeats).
    """

    def __init__(self, spec, where: str = "profile") -> None:
        if not isinstance(spec, dict):
            raise ProfileError(f"{where}: expected a mapping with a 'profile' key, got {type(spec).__name__}")
        kind = spec.get("profile", "constant")
        allowed = {"constant": {"profile", "wrench"}, "sine": {"profile", "wrench", "amplitude", "frequency"},
                   "steps": {"profile", "steps"}}
        if kind not in allowed:
            raise ProfileError(f"{where}: profile {kind!r} is unknown; allowed: {', '.join(allowed)}")
        unknown = set(spec) - allowed[kind]
        if unknown:
            raise ProfileError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} for a {kind} profile; "
                               f"allowed: {', '.join(sorted(allowed[kind]))}")
        self.kind = kind
        self.offset = _wrench(spec.get("wrench", [0.0] * 6), f"{where}: wrench")
        if kind == "sine":
            self.amplitude = _wrench(spec.get("amplitude"), f"{where}: amplitude")
            frequency = spec.get("frequency")
            if not isinstance(frequency, (int, float)) or not (math.isfinite(frequency) and frequency > 0):
                raise ProfileError(f"{where}: frequency must be a number > 0 [Hz], got {frequency!r}")
            self.frequency = float(frequency)
        if kind == "steps":
            steps = spec.get("steps")
            if not isinstance(steps, list) or not steps:
                raise ProfileError(f"{where}: steps must be a non-empty list of {{duration, wrench}}")
            self.steps = []
            for i, step in enumerate(steps):
                if not isinstance(step, dict) or set(step) != {"duration", "wrench"}:
                    raise ProfileError(f"{where}: steps[{i}] must have exactly the keys duration and wrench")
                duration = step["duration"]
                if not isinstance(duration, (int, float)) or not (math.isfinite(duration) and duration > 0):
                    raise ProfileError(f"{where}: steps[{i}].duration must be a number > 0 [s], got {duration!r}")
                self.steps.append((float(duration), _wrench(step["wrench"], f"{where}: steps[{i}].wrench")))
            self.period = sum(d for d, _ in self.steps)

    def at(self, t: float) -> list[float]:
        """Return the wrench [N, N·m] at ``t`` [s] after start."""
        if self.kind == "sine":
            s = math.sin(2 * math.pi * self.frequency * t)
            return [o + a * s for o, a in zip(self.offset, self.amplitude)]
        if self.kind == "steps":
            t %= self.period
            for duration, wrench in self.steps:
                if t < duration:
                    return wrench
                t -= duration
            return self.steps[-1][1]
        return self.offset


class NetFTEmulator:
    """The emulated sensor: its sockets, its stream and its faults."""

    def __init__(self, args: argparse.Namespace, profile: Profile) -> None:
        self.args = args
        self.profile = profile
        self.rdt = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rdt.bind((args.host, args.port))
        self.control: Optional[socket.socket] = None
        if args.control_port is not None:
            self.control = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.control.bind((args.host, args.control_port))
        self.t0 = time.monotonic()
        self.rdt_sequence = args.start_sequence % 2**32
        self.client: Optional[tuple] = None
        self.remaining = 0  # records still to send; 0 = endless
        self.streaming = False
        self.next_send = 0.0
        self.bias = [0] * 6
        self.sent = 0
        self.dropped = 0
        self.ignored_requests = 0
        self.clear_faults()

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        self.saturated_axis: Optional[int] = None
        self.loss = 0.0
        self.burst = 0
        self.status = 0
        self.silent = False
        self.truncate = 0

    # -- the sensor side ----------------------------------------------------------

    def counts(self, now: float) -> list[int]:
        """Gauge output in counts at ``now``, bias removed and clipped to int32."""
        if self.args.clock_probe:
            raw = [int(now * 1e6) % CLOCK_PROBE_MODULUS, 0, 0, 0, 0, 0]
        else:
            wrench = self.profile.at(now - self.t0)
            raw = [round(w * (self.args.counts_per_force if i < 3 else self.args.counts_per_torque))
                   for i, w in enumerate(wrench)]
        out = [min(INT32_MAX, max(INT32_MIN, c - b)) for c, b in zip(raw, self.bias)]
        if self.saturated_axis is not None:
            out[self.saturated_axis] = INT32_MAX
        return out

    def on_request(self, data: bytes, sender: tuple) -> None:
        """Act on one RDT request, as the manual describes; malformed ones are ignored."""
        if self.silent:
            return
        if len(data) != REQUEST.size:
            self.ignored_requests += 1
            print(f"netft emulator: ignored a {len(data)}-byte request (RDT requests are 8 bytes)",
                  file=sys.stderr, flush=True)
            return
        header, command, count = REQUEST.unpack(data)
        if header != HEADER:
            self.ignored_requests += 1
            print(f"netft emulator: ignored a request with header 0x{header:04x} (expected 0x1234)",
                  file=sys.stderr, flush=True)
            return
        if command == START_REALTIME:
            self.client, self.remaining, self.streaming = sender, count, True
            self.next_send = time.monotonic()
        elif command == STOP:
            self.streaming = False
        elif command == SOFTWARE_BIAS:
            self.bias = [0] * 6
            self.bias = self.counts(time.monotonic())
        else:
            self.ignored_requests += 1
            print(f"netft emulator: ignored unsupported command 0x{command:04x}", file=sys.stderr, flush=True)

    def send_due(self, now: float) -> None:
        """Send every record that is due by ``now`` (never a burst after a stall)."""
        period = 1.0 / self.args.rate
        if now - self.next_send > 10 * period:
            self.next_send = now  # we were descheduled: resume the rate, do not flood
        while self.streaming and not self.silent and now >= self.next_send:
            self.next_send += period
            self.rdt_sequence = (self.rdt_sequence + 1) % 2**32
            ft_sequence = int((now - self.t0) * self.args.internal_rate) % 2**32
            record = RECORD.pack(self.rdt_sequence, ft_sequence, self.status, *self.counts(now))
            if self.burst > 0:
                self.burst -= 1
                self.dropped += 1
            elif self.loss and random.random() * 100 < self.loss:
                self.dropped += 1
            else:
                if self.truncate > 0:
                    self.truncate -= 1
                    record = record[:20]
                try:
                    self.rdt.sendto(record, self.client)
                except OSError:
                    self.dropped += 1  # the client's port is gone; the sensor does not care either
            self.sent += 1
            if self.remaining:
                self.remaining -= 1
                if self.remaining == 0:
                    self.streaming = False

    # -- the control side ---------------------------------------------------------

    def on_control(self, text: str) -> str:
        """Apply one fault-injection command; return the reply."""
        words = text.split()
        if not words:
            return "error: empty command"
        cmd, rest = words[0].lower(), words[1:]
        try:
            if cmd == "wrench":
                self.args.clock_probe = False
                self.profile = Profile({"profile": "constant", "wrench": [float(x) for x in rest]}, "wrench command")
            elif cmd == "saturate":
                axis = rest[0] if rest else "Fz"
                if axis not in AXIS_NAMES:
                    return f"error: unknown axis {axis!r}; allowed: {', '.join(AXIS_NAMES)}"
                self.saturated_axis = AXIS_NAMES.index(axis)
            elif cmd == "loss":
                percent = float(rest[0])
                if not 0 <= percent <= 100:
                    return "error: loss takes a percentage from 0 to 100"
                self.loss = percent
            elif cmd == "burst":
                count = int(rest[0])
                if count < 0:
                    return "error: burst takes a count >= 0"
                self.burst = count
            elif cmd == "status":
                word = int(rest[0], 16)
                if not 0 <= word < 2**32:
                    return "error: status takes a 32-bit hex word"
                self.status = word
            elif cmd == "truncate":
                count = int(rest[0]) if rest else 1
                if count < 0:
                    return "error: truncate takes a count >= 0"
                self.truncate = count
            elif cmd == "stop":
                self.silent = True
            elif cmd == "resume":
                self.silent = False
                self.next_send = time.monotonic()
            elif cmd == "clear":
                self.clear_faults()
                self.next_send = time.monotonic()
            elif cmd == "stats":
                return "ok " + json.dumps({
                    "sent": self.sent, "dropped": self.dropped, "streaming": self.streaming,
                    "silent": self.silent, "rdt_sequence": self.rdt_sequence,
                    "client": list(self.client) if self.client else None,
                    "ignored_requests": self.ignored_requests,
                })
            else:
                return (f"error: unknown command {cmd!r}; allowed: wrench, saturate, loss, burst, status, "
                        "truncate, stop, resume, clear, stats")
        except (IndexError, ValueError) as exc:
            return f"error: {cmd}: {exc or 'missing value'}"
        return f"ok {text.strip()}"

    def run(self) -> None:
        """Serve until interrupted."""
        sockets = [self.rdt] + ([self.control] if self.control else [])
        while True:
            now = time.monotonic()
            timeout = max(0.0, self.next_send - now) if self.streaming and not self.silent else 0.2
            readable, _, _ = select.select(sockets, [], [], timeout)
            for sock in readable:
                data, sender = sock.recvfrom(2048)
                if sock is self.rdt:
                    self.on_request(data, sender)
                else:
                    reply = self.on_control(data.decode("utf-8", errors="replace"))
                    sock.sendto(reply.encode(), sender)
            if self.streaming:
                self.send_due(time.monotonic())

    def close(self) -> None:
        """Release the sockets."""
        self.rdt.close()
        if self.control:
            self.control.close()


def _parse_args(argv: list[str]) -> tuple[argparse.Namespace, Profile]:
    parser = argparse.ArgumentParser(prog="rehab-robot emulate netft",
                                     description="Emulated ATI Net F/T (RDT over UDP) with fault injection.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=49152, help="RDT UDP port (default 49152; 0: any free port)")
    parser.add_argument("--control-port", type=int, default=None,
                        help="UDP port for fault-injection commands (0: any free port; default: none)")
    parser.add_argument("--rate", type=float, default=1000.0, help="RDT output rate [Hz] (default 1000)")
    parser.add_argument("--internal-rate", type=float, default=7000.0,
                        help="internal F/T sample rate that ft_sequence counts [Hz] (default 7000)")
    parser.add_argument("--counts-per-force", type=float, default=1e6, help="counts per N (default 1e6)")
    parser.add_argument("--counts-per-torque", type=float, default=1e6, help="counts per N·m (default 1e6)")
    parser.add_argument("--start-sequence", type=int, default=0,
                        help="rdt_sequence before the first record (e.g. 4294967290 to see it wrap)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--wrench", help="constant wrench 'Fx,Fy,Fz,Tx,Ty,Tz' [N, N·m] (default all 0; "
                        "write --wrench=-1,... when the first value is negative)")
    source.add_argument("--profile", help="YAML file: a constant, sine or steps profile (see the module doc)")
    source.add_argument("--clock-probe", action="store_true",
                        help="latency probe: Fx counts = send time on CLOCK_MONOTONIC in µs modulo 1e9")
    args = parser.parse_args(argv)
    for name in ("rate", "internal_rate", "counts_per_force", "counts_per_torque"):
        value = getattr(args, name)
        if not (math.isfinite(value) and value > 0):
            parser.error(f"--{name.replace('_', '-')} must be a finite number > 0, got {value}")
    for name in ("port", "control_port"):
        value = getattr(args, name)
        if value is not None and not 0 <= value <= 65535:
            parser.error(f"--{name.replace('_', '-')} must be 0 (any free port) to 65535, got {value}")
    if not 1.0 <= args.rate <= 10000.0:
        parser.error(f"--rate must be 1 to 10000 Hz, got {args.rate:g}")
    try:
        if args.profile:
            try:
                with open(args.profile, encoding="utf-8") as f:
                    spec = yaml.safe_load(f)
            except (OSError, yaml.YAMLError) as exc:
                parser.error(f"--profile {args.profile}: cannot read it: {exc}")
            profile = Profile(spec, args.profile)
        elif args.wrench:
            profile = Profile({"profile": "constant", "wrench": args.wrench.split(",")}, "option")
        else:
            profile = Profile({"profile": "constant"})
    except ProfileError as exc:
        parser.error(str(exc))
    return args, profile


def main(argv: Optional[list[str]] = None) -> int:
    """Run the emulator (see the module docstring); returns the exit status."""
    args, profile = _parse_args(sys.argv[1:] if argv is None else argv)
    try:
        emulator = NetFTEmulator(args, profile)
    except OSError as exc:
        print(f"netft emulator: error: cannot bind {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2

    def terminate(signum, frame):  # noqa: ARG001 - signal handler signature
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    host, port = emulator.rdt.getsockname()
    control = f", control on {host}:{emulator.control.getsockname()[1]}" if emulator.control else ""
    print(f"netft emulator: RDT on {host}:{port}{control}, {args.rate:g} Hz", flush=True)
    try:
        emulator.run()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
