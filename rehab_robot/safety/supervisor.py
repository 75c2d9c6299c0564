"""The safety supervisor's latch: when motion is permitted, and how a stop is cleared.

Motion is permitted only while
  * the arm's state and the F/T reading have arrived and are fresh,
  * the last state breaks no rule,
  * no stop is latched.
A violation or an e-stop request latches a stop. Only :meth:`SafetyLatch.reset`
clears it, and only once the cause is gone.

A signal that goes stale stops motion for as long as it is missing, without
latching: the rules cannot be checked, so the heartbeat says stop. The stop is
still never undone by itself, because every node downstream treats the gap as an
interruption (the drives hold, the controller drops its trajectory, the session
pauses until it is resumed). Latching it too would turn a start-up discovery
hiccup into a stop that needs a clinician's reset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from rehab_robot.safety.rules import Violation


@dataclass
class SafetyLatch:
    """Latching stop logic of the safety supervisor.

    Args:
        signal_timeouts: Per required signal (topic name), the age [s] after which it
            counts as missing. ``joint_commands`` has a shorter timeout than the driver's
            own, so that every command gap the driver reacts to also reaches the whole
            graph through the heartbeat.
    """

    signal_timeouts: dict[str, float] = field(
        default_factory=lambda: {"joint_states": 0.1, "ft_sensor/wrench": 0.1, "joint_commands": 0.08}
    )
    latched: bool = False
    causes: list[str] = field(default_factory=list)
    _last_seen: dict[str, float] = field(default_factory=dict)
    _violations: list[Violation] = field(default_factory=list)

    def _latch(self, cause: str) -> None:
        self.latched = True
        if cause not in self.causes:
            self.causes.append(cause)

    def on_state(self, now: float, violations: Sequence[Violation]) -> None:
        """Record a checked joint state received at ``now`` [s] and latch on violations."""
        self.on_signal("joint_states", now)
        self._violations = list(violations)
        for violation in violations:
            self._latch(str(violation))

    def on_signal(self, name: str, now: float) -> None:
        """Record that required signal ``name`` arrived at ``now`` [s]."""
        self._last_seen[name] = now

    def estop(self, reason: str = "e-stop requested") -> None:
        """Latch a stop now."""
        self._latch(reason)

    def _missing_signals(self, now: float) -> list[str]:
        missing = []
        for name, timeout in self.signal_timeouts.items():
            stamp = self._last_seen.get(name)
            if stamp is None:
                missing.append(f"no {name} received yet")
            elif now - stamp > timeout:
                missing.append(f"{name} stale ({(now - stamp) * 1e3:.0f} ms old)")
        return missing

    def motion_permitted(self, now: float) -> bool:
        """Return True when every guard agrees that the arm may move at ``now`` [s]."""
        return not self.latched and not self._violations and not self._missing_signals(now)

    def reset(self, now: float) -> tuple[bool, str]:
        """Clear the latch if its cause is gone; return ``(cleared, explanation)``."""
        blocking = [str(v) for v in self._violations] + self._missing_signals(now)
        if blocking:
            return False, "stop not cleared, cause still present: " + "; ".join(blocking)
        previous = "; ".join(self.causes) or "nothing latched"
        self.latched = False
        self.causes = []
        return True, f"stop cleared (was: {previous})"

    def describe(self, now: float) -> str:
        """Return one sentence on why motion is or is not permitted at ``now`` [s]."""
        if self.latched:
            return "stop latched: " + "; ".join(self.causes)
        reasons = [str(v) for v in self._violations] + self._missing_signals(now)
        return "waiting: " + "; ".join(reasons) if reasons else "motion permitted"
