"""``sim_faults``: the simulated arm with faults injected on command, for tests and drills.

It behaves exactly like ``sim`` until told otherwise through a local UNIX datagram
socket (option ``fault_socket``; nothing leaves the machine, nothing touches the disk
in the control loop). One command per datagram, UTF-8 text:

==========================  ==================================================================
``read_raise_once [JOINT]``  the next ``read()`` raises :class:`HardwareError` (a glitch on the wire)
``read_raise [JOINT]``       every ``read()`` raises until ``clear``
``write_raise [JOINT]``      every ``write()`` raises until ``clear``
``read_block SECONDS``       every ``read()`` takes this much longer, until ``clear``
``nan JOINT``                the next sample holds NaN in that joint's position
``device_lost``              the device stops answering: every call raises with ``device_lost``
``clear``                    the fault condition is gone; ``clear_fault()`` then succeeds
==========================  ==================================================================

While a persistent condition lasts, ``clear_fault()`` raises, as a real drive whose
fault is still present refuses a fault reset. The physics keeps running underneath
(the simulated drives hold on their own, as real ones do), so the arm's behaviour
after a fault is the real stack's response, not the emulator's.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Optional

import numpy as np

from rehab_robot.errors import ConfigError, HardwareError
from rehab_robot.hardware.interface import JointCommand, JointSample
from rehab_robot.hardware.sim import SimulatedArm

COMMANDS = ("read_raise_once", "read_raise", "write_raise", "read_block", "nan", "device_lost", "clear")


class FaultInjectingArm(SimulatedArm):
    """:class:`SimulatedArm` plus commanded faults (see the module docstring).

    Args:
        fault_socket: Path of the UNIX datagram socket this backend binds to receive commands.
        cycle_budget: The read()+write() budget it declares [s] (default: ``sim``'s).
        **options: The options of :class:`SimulatedArm`.

    Raises:
        ConfigError: for a bad option; the message names it.
    """

    def __init__(self, fault_socket: str, cycle_budget: Optional[float] = None, **options) -> None:
        self.check_socket_option(fault_socket, cycle_budget)
        super().__init__(**options)
        if cycle_budget is not None:
            self.cycle_budget = float(cycle_budget)
        if os.path.exists(fault_socket):
            os.unlink(fault_socket)
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(fault_socket)
        self._socket.setblocking(False)
        self._path = fault_socket
        self._once: Optional[str] = None
        self._persistent: Optional[str] = None
        self._joint: Optional[str] = None
        self._block = 0.0
        self._nan_joint: Optional[int] = None
        self.commands_received = 0

    @staticmethod
    def check_socket_option(fault_socket, cycle_budget) -> None:
        """Validate the options this backend adds to ``sim``'s.

        Raises:
            ConfigError: naming the option and what is allowed.
        """
        if not isinstance(fault_socket, str) or not fault_socket:
            raise ConfigError("hardware option 'fault_socket' must be a socket path")
        if not os.path.isdir(os.path.dirname(os.path.abspath(fault_socket))):
            raise ConfigError(f"hardware option 'fault_socket' = {fault_socket!r}: its folder does not exist")
        if cycle_budget is not None and not (
            isinstance(cycle_budget, (int, float)) and np.isfinite(cycle_budget) and cycle_budget > 0
        ):
            raise ConfigError(f"hardware option 'cycle_budget' = {cycle_budget!r}: a positive number of seconds")

    @classmethod
    def check_options(cls, fault_socket: str = "", cycle_budget: Optional[float] = None, **options) -> None:
        """Validate the options without binding the socket."""
        cls.check_socket_option(fault_socket, cycle_budget)
        super().check_options(**options)

    # --- commands ---------------------------------------------------------------------

    def _poll_commands(self) -> None:
        while True:
            try:
                text = self._socket.recv(256).decode("utf-8", "replace").split()
            except (BlockingIOError, OSError):
                return
            if not text or text[0] not in COMMANDS:
                continue  # an unknown command changes nothing
            self.commands_received += 1
            command, args = text[0], text[1:]
            joint = args[0] if args and args[0] in self.joint_names else None
            if command == "clear":
                self._once = self._persistent = self._joint = self._nan_joint = None
                self._block = 0.0
            elif command == "read_raise_once":
                self._once, self._joint = command, joint
            elif command in ("read_raise", "write_raise", "device_lost"):
                self._persistent, self._joint = command, joint
            elif command == "read_block":
                self._block = float(args[0]) if args else 0.01
            elif command == "nan" and joint is not None:
                self._nan_joint = self.joint_names.index(joint)

    def _fault(self, what: str) -> HardwareError:
        return HardwareError(f"injected fault: {what}", joint=self._joint, device_lost=self._persistent == "device_lost")

    # --- HardwareInterface ------------------------------------------------------------

    def read(self) -> JointSample:
        """Step the physics, then apply whatever fault is commanded."""
        self._poll_commands()
        sample = super().read()
        if self._block:
            time.sleep(self._block)
        if self._persistent in ("read_raise", "device_lost"):
            raise self._fault("read() failed" if self._persistent == "read_raise" else "device not answering")
        if self._once:
            self._once = None
            raise self._fault("read() failed once")
        if self._nan_joint is not None:
            position = sample.position.copy()
            position[self._nan_joint] = np.nan
            self._nan_joint = None
            return JointSample(sample.stamp, position, sample.velocity, sample.effort, sample.wrench, sample.at_rest)
        return sample

    def write(self, command: JointCommand) -> None:
        """Apply the setpoint, or fail as commanded."""
        if self._persistent in ("write_raise", "device_lost"):
            raise self._fault("write() failed")
        super().write(command)

    def clear_fault(self) -> None:
        """Succeed once the commanded condition is gone, as a drive's fault reset does."""
        self._poll_commands()
        if self._persistent or self._block:
            raise self._fault(f"{self._persistent or 'read_block'} still present")

    def diagnostics(self) -> dict[str, str]:
        """The commanded condition, for /diagnostics."""
        return {"injected": self._persistent or ("read_block" if self._block else "none"),
                "commands_received": str(self.commands_received)}

    def close(self) -> None:
        """Close the simulation and the command socket."""
        super().close()
        if self._socket.fileno() >= 0:
            self._socket.close()
            if os.path.exists(self._path):
                os.unlink(self._path)


def send_fault(path: str, command: str) -> None:
    """Send one command to a :class:`FaultInjectingArm` listening on ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(command.encode("utf-8"), path)
