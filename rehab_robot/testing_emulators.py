"""Helper for tests and benchmarks: an emulated device (``rehab-robot emulate DEVICE``) as its own process."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional


class EmulatorProcess:
    """``rehab-robot emulate DEVICE ARGS`` in a process of its own, its output kept for failure messages.

    The emulator's first line of output names its ports (``... on HOST:PORT ...``); they are
    parsed into :attr:`ports` in the order printed.

    Args:
        device: Emulator name (``rehab_robot.emulators.DEVICE``).
        args: Its options.
        log_dir: Where ``<device>-emulator.log`` is written.
        timeout: How long to wait for the first line [s].

    Raises:
        RuntimeError: if the emulator exits or says nothing within ``timeout``.
    """

    def __init__(self, device: str, args: list[str], log_dir: Path, timeout: float = 20.0) -> None:
        self.device = device
        self.log_path = log_dir / f"{device}-emulator.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rehab_robot.launcher", "emulate", device, *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        self._lines: list[str] = []
        self._first = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._first.wait(timeout) or not self._lines:
            self.stop()
            raise RuntimeError(f"{device} emulator did not start:\n{self.output()}")
        self.ports = [int(p) for p in re.findall(r":(\d+)", self._lines[0])]
        if not self.ports:
            self.stop()
            raise RuntimeError(f"{device} emulator printed no port:\n{self.output()}")

    def _read(self) -> None:
        with open(self.log_path, "w") as log:
            for line in self.process.stdout:
                self._lines.append(line)
                log.write(line)
                log.flush()
                self._first.set()
        self._first.set()

    def output(self) -> str:
        """Everything the emulator printed so far."""
        return "".join(self._lines)

    def command(self, text: str, port: Optional[int] = None, timeout: float = 2.0) -> str:
        """Send one control command as a UDP datagram to ``port`` (default: the second port printed)
        on localhost and return the reply.

        Raises:
            RuntimeError: if no reply arrives within ``timeout`` [s].
        """
        port = self.ports[1] if port is None else port
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.sendto(text.encode(), ("127.0.0.1", port))
            try:
                return sock.recv(4096).decode()
            except socket.timeout:
                raise RuntimeError(f"{self.device} emulator did not answer {text!r}:\n{self.output()}") from None

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout`` [s]; return the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        deadline = time.monotonic() + 1.0
        while self._reader.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.process.returncode
