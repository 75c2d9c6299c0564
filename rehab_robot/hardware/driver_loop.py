"""The hardware driver's control cycle and its state machine, free of ROS.

Every cycle reads the backend, asks the :class:`~rehab_robot.safety.gate.MotionGate`
whether the arm may follow its command, and writes the command or holds. States::

    STARTING --heartbeat permits--> HOLDING <--gate closes / opens--> FOLLOWING
        \\                              |                               /
         `---- backend error, NaN sample, cycle over budget -----> FAULT
                                                                      |
            HOLDING <-- clear_fault() succeeded, after safety/reset --'

* STARTING: the backend is up; the safety supervisor has not yet permitted motion.
* HOLDING: the drives hold the arm (``disable()``): quick stop to rest, hold against gravity.
* FOLLOWING: the drives follow the motion commands (``enable()`` + ``write()``).
* FAULT: the backend reported a fault. The drives hold, or stay disabled when the device
  is gone; nothing is written until the operator's ``safety/reset`` makes the driver call
  ``clear_fault()`` (never automatically).

The cycle runs on its own thread (:class:`~rehab_robot.periodic.PeriodicLoop`); the
node's callbacks only feed the gate's latest-value slots and read :meth:`status`.
"""

from __future__ import annotations

import enum
import math
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from rehab_robot.errors import HardwareError
from rehab_robot.hardware.interface import (BUDGET_FAULT_CYCLES, BUDGET_FAULT_CYCLES_HOLDING, HardwareInterface,
                                            JointSample)
from rehab_robot.safety.gate import MotionGate


class DriverState(str, enum.Enum):
    """What the drives are doing."""

    STARTING = "starting"
    HOLDING = "holding"
    FOLLOWING = "following"
    FAULT = "fault"
    #: Said once, last, on ``hardware/status`` by a driver that shuts down (the loop never is).
    SHUT_DOWN = "shut_down"


@dataclass(frozen=True)
class DriverStatus:
    """A snapshot of the driver, for diagnostics and the ``hardware/status`` topic.

    Attributes:
        state: The driver state.
        reason: Why the drives hold (the gate's reason or the fault), "" when following.
        fault_id: Number of faults entered since start; a new value is a new fault.
        fault_joint: Joint of the current fault, "" for the whole device or none.
        device_lost: True when the current fault says the device no longer answers.
        over_budget_cycles: Cycles whose read()+write() took longer than the budget.
        quick_stops: Times the drives went from following to holding.
        last_cycle_time: Duration of the last read()+write() [s].
    """

    state: DriverState
    reason: str
    fault_id: int
    fault_joint: str
    device_lost: bool
    over_budget_cycles: int
    quick_stops: int
    last_cycle_time: float


class DriverLoop:
    """The driver's cycle: measure, decide, command, with faults contained.

    Args:
        hardware: The backend.
        gate: The motion gate fed by the node's subscriptions.
        budget: Longest read()+write() time [s] per cycle (the backend's ``cycle_budget``).
        publish: Called with each fresh sample, on the loop thread; must not block.
        log: Called with ``(level, text)`` for state changes; must not block.
        clock: Monotonic clock [s].
    """

    def __init__(
        self,
        hardware: HardwareInterface,
        gate: MotionGate,
        budget: float,
        publish: Callable[[JointSample], None],
        log: Callable[[str, str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hardware = hardware
        self.gate = gate
        self.budget = budget
        self._publish = publish
        self._log = log
        self._clock = clock
        self.state = DriverState.STARTING
        self.reason = "starting: waiting for the safety supervisor"
        self.fault: Optional[HardwareError] = None
        self.fault_id = 0
        self.quick_stops = 0
        self.over_budget_cycles = 0
        self._over_budget_in_a_row = 0
        self.last_cycle_time = 0.0
        self.last_sample: Optional[JointSample] = None
        self._clear_requested = False
        self._lock = threading.Lock()

    # --- requests from other threads ------------------------------------------------

    def request_fault_clear(self) -> None:
        """Ask the loop to call ``clear_fault()`` at its next cycle (the operator's reset)."""
        with self._lock:
            self._clear_requested = self.state is DriverState.FAULT

    def status(self) -> DriverStatus:
        """Return a consistent snapshot of the driver."""
        with self._lock:
            fault = self.fault
            return DriverStatus(
                self.state, self.reason, self.fault_id,
                (fault.joint or "") if fault else "", bool(fault and fault.device_lost),
                self.over_budget_cycles, self.quick_stops, self.last_cycle_time,
            )

    # --- the cycle --------------------------------------------------------------------

    def cycle(self, now: float) -> None:
        """Run one control cycle at ``now`` [s]."""
        if self.state is DriverState.FAULT:
            self._fault_cycle(now)
            return
        started = self._clock()
        try:
            sample = self._read()
            decision = self.gate.decide(now, sample.position)
            if decision.move:
                if not self.hardware.enabled:
                    self.hardware.enable()
                    self._log("info", "motion permitted: drives follow commands")
                self.hardware.write(decision.command)
                self._set_state(DriverState.FOLLOWING, "")
            else:
                if self.hardware.enabled:
                    self.hardware.disable()
                    self.quick_stops += 1
                    self._log("warning", f"quick stop and hold: {decision.reason}")
                self._set_state(self._holding_state(decision.reason), decision.reason)
        except HardwareError as exc:
            self._enter_fault(exc)
            return
        except ValueError as exc:  # a command the backend refuses (wrong size) is a fault too
            self._enter_fault(HardwareError(f"backend refused the command: {exc}"))
            return
        self._check_budget(self._clock() - started)
        self._publish(sample)

    def _holding_state(self, reason: str) -> DriverState:
        if self.state is DriverState.STARTING and self.gate.heartbeat.closed_reason(self._clock()).startswith("no "):
            return DriverState.STARTING
        return DriverState.HOLDING

    def _read(self) -> JointSample:
        sample = self.hardware.read()
        for field in ("position", "velocity", "effort", "wrench"):
            values = np.asarray(getattr(sample, field), dtype=float)
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                names = self.hardware.joint_names
                where = names[bad[0]] if field != "wrench" and bad[0] < len(names) else f"component {bad[0]}"
                raise HardwareError(
                    f"read() returned {values[bad[0]]} in {field} ({where}); finite values are required",
                    joint=where if field != "wrench" else None,
                )
        self.last_sample = sample
        return sample

    def _check_budget(self, elapsed: float) -> None:
        self.last_cycle_time = elapsed
        if elapsed <= self.budget:
            self._over_budget_in_a_row = 0
            return
        self.over_budget_cycles += 1
        self._over_budget_in_a_row += 1
        following = self.state is DriverState.FOLLOWING
        if not following and self._over_budget_in_a_row == BUDGET_FAULT_CYCLES:
            self._log("warning", f"read()+write() took {elapsed * 1e3:.1f} ms, over the backend's budget of "
                                 f"{self.budget * 1e3:.1f} ms, {BUDGET_FAULT_CYCLES} cycles in a row while "
                                 f"holding; a fault if it lasts {BUDGET_FAULT_CYCLES_HOLDING} cycles, or "
                                 f"{BUDGET_FAULT_CYCLES} while following")
        if self._over_budget_in_a_row >= (BUDGET_FAULT_CYCLES if following else BUDGET_FAULT_CYCLES_HOLDING):
            self._enter_fault(HardwareError(
                f"read()+write() took {elapsed * 1e3:.1f} ms, over the backend's budget of "
                f"{self.budget * 1e3:.1f} ms, {self._over_budget_in_a_row} cycles in a row"
            ))

    def _fault_cycle(self, now: float) -> None:
        with self._lock:
            clear, self._clear_requested = self._clear_requested, False
        if clear:
            self._try_clear()
            return
        if self.fault is not None and self.fault.device_lost:
            return  # nothing to read: joint_states stop, so every node sees the arm as missing
        try:
            sample = self._read()
        except HardwareError:
            return  # still faulty: the fault already named is what the operator sees
        self._publish(sample)

    def _try_clear(self) -> None:
        try:
            self.hardware.clear_fault()
            if self.hardware.enabled:
                self.hardware.disable()
        except HardwareError as exc:
            self._enter_fault(exc, prefix="fault not cleared: ")
            return
        previous = str(self.fault)
        with self._lock:
            self.fault = None
            self.state = DriverState.HOLDING
            self.reason = "fault cleared; holding until a matching motion command"
        self.gate.disengage()
        self._over_budget_in_a_row = 0
        self._log("info", f"hardware fault cleared (was: {previous}); drives holding")

    def _enter_fault(self, error: HardwareError, prefix: str = "") -> None:
        if not error.device_lost:
            try:
                self.hardware.disable()
            except HardwareError as exc:
                error = HardwareError(f"{error.reason}; then disable() failed: {exc.reason}", error.joint, True)
        if self.state is DriverState.FOLLOWING:
            self.quick_stops += 1
        with self._lock:
            self.fault = error
            self.fault_id += 1
            self.state = DriverState.FAULT
            self.reason = f"hardware fault: {prefix}{error}"
            self._clear_requested = False
        self.gate.disengage()
        self._log("error", f"{self.reason}; drives {'disabled (device lost)' if error.device_lost else 'holding'}; "
                           "motion refused until safety/reset")

    def _set_state(self, state: DriverState, reason: str) -> None:
        if state is not self.state or reason != self.reason:
            with self._lock:
                self.state, self.reason = state, reason


def default_budget(loop_rate: float, declared: Optional[float]) -> float:
    """Return the read()+write() budget [s]: the backend's own, else half the loop period.

    Raises:
        ValueError: if the declared budget is not a positive finite number.
    """
    if declared is None:
        return 0.5 / loop_rate
    if not (isinstance(declared, (int, float)) and math.isfinite(declared) and declared > 0):
        raise ValueError(f"cycle_budget {declared!r} must be a positive number of seconds")
    return float(declared)
