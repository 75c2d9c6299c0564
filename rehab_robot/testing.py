"""Helpers for tests and benchmarks that run rehab_robot nodes as real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from rehab_robot.ros_env import localhost_env


class NodeProcess:
    """A rehab_robot node running as its own process, its output kept for failure messages."""

    def __init__(self, module: str, name: str, parameters: dict, domain: int, log_dir: Path):
        """Start ``rehab_robot.nodes.<module>`` as node ``name`` on ROS domain ``domain``.

        Parameters are given as ``-p name:=value``; the output goes to ``<log_dir>/<name>.log``.
        """
        args = [sys.executable, "-m", f"rehab_robot.nodes.{module}", "--ros-args", "-r", f"__node:={name}"]
        for key, value in parameters.items():
            if isinstance(value, bool):
                value = "true" if value else "false"
            args += ["-p", f"{key}:={value}"]
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            args, env=localhost_env(domain), stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        """Everything the node printed so far."""
        self._log.flush()
        return self.log_path.read_text()

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the node."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signum)

    def stop(self, timeout: float = 5.0) -> int:
        """SIGINT, then SIGKILL after ``timeout`` [s]; return the exit status."""
        self.signal(signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()
        return self.process.returncode


class BackgroundSpinner:
    """Spins ``node`` in a daemon thread until :meth:`stop` (for test and benchmark clients).

    Uses :func:`rehab_robot.nodes.common.make_executor`. The loop checks a flag between
    short ``spin_once`` calls because rclpy's EventsExecutor cannot be shut down from
    another thread while it spins.
    """

    def __init__(self, node, context) -> None:
        from rehab_robot.nodes.common import make_executor  # rclpy only where a client spins

        self.executor = make_executor(context)
        self.executor.add_node(node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def stop(self) -> None:
        """Stop spinning and release the executor."""
        self._stop.set()
        self._thread.join(timeout=5)
        self.executor.shutdown()
