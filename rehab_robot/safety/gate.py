"""The hardware driver's motion gate: the last line of the fail-safe chain.

The driver applies a motion command only when the gate opens. It opens only while
  * the safety heartbeat is fresh and says motion is permitted,
  * a fresh, finite command is at hand,
  * when the arm has been holding, the command starts where the arm is
    (so motion resumes without a jump),
  * and, while following, the command stays within ``following_tolerance`` of the
    arm: a setpoint that jumps away (a controller acting on stale measurements, a
    corrupted or misrouted command) would make the drives slam the arm toward it.
Anything else keeps (or puts) the drives in quick-stop and hold.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from rehab_robot.hardware.interface import JointCommand


@dataclass(frozen=True)
class GateDecision:
    """What the driver does this cycle.

    Attributes:
        move: True to write ``command`` to the drives, False to quick-stop and hold.
        reason: Why the gate is closed ("" when open).
        command: The command to write when ``move`` is True, its position carried
            forward along its velocity to the decision time.
    """

    move: bool
    reason: str
    command: Optional[JointCommand] = None


class HeartbeatMonitor:
    """Tracks the safety heartbeat: motion is permitted only while it is fresh and True.

    Besides the current verdict it remembers *interruptions*: a heartbeat saying stop,
    a gap between two heartbeats longer than the timeout, or the drives reported
    stopped by the driver. Every node that checks the heartbeat at its own rate then
    agrees that motion was interrupted, even when the gap fell between two of its checks.

    Args:
        timeout: Age [s] beyond which the heartbeat counts as lost, and gap between two
            heartbeats that counts as an interruption.
    """

    def __init__(self, timeout: float = 0.05) -> None:
        self.timeout = timeout
        self._last: Optional[tuple[float, bool]] = None
        #: When [s] the last heartbeat that permitted motion was received.
        self.last_permitted_at = -float("inf")
        self._interrupted = False
        #: What the last interruption was: a heartbeat gap (with its length) or a stop.
        self.interruption = ""
        # Heartbeats arrive on the executor thread, checks run on loop threads.
        self._lock = threading.Lock()

    def on_heartbeat(self, now: float, permitted: bool) -> None:
        """Record a heartbeat received at ``now`` [s]."""
        with self._lock:
            if self._last is not None and now - self._last[0] > self.timeout:
                self._interrupted = True
                self.interruption = f"safety heartbeat lost ({(now - self._last[0]) * 1e3:.0f} ms gap)"
            elif self._last is not None and not permitted:
                self._interrupted = True
                self.interruption = "safety supervisor stop"
            self._last = (now, bool(permitted))
            if permitted:
                self.last_permitted_at = now

    def on_drives_stopped(self, reason: str) -> None:
        """Record that the driver stopped following commands, for ``reason``."""
        with self._lock:
            self._interrupted = True
            self.interruption = f"drives stopped: {reason}"

    def closed_reason(self, now: float) -> str:
        """Return why motion is not permitted at ``now`` [s], or "" when it is."""
        last = self._last
        if last is None:
            return "no safety heartbeat yet"
        stamp, permitted = last
        if now - stamp > self.timeout:
            reason = f"safety heartbeat lost ({(now - stamp) * 1e3:.0f} ms old)"
            with self._lock:
                self._interrupted = True
                self.interruption = reason
            return reason
        if not permitted:
            return "safety supervisor stop"
        return ""

    def permits(self, now: float) -> bool:
        """Return True when the heartbeat permits motion at ``now`` [s]."""
        return not self.closed_reason(now)

    def take_interruption(self) -> bool:
        """Return True if motion was interrupted since the last call, and forget it."""
        with self._lock:
            interrupted, self._interrupted = self._interrupted, False
        return interrupted


class MotionGate:
    """Decides each driver cycle whether the arm may follow its command.

    Leaving hold takes a command that *moves* (some joint commanded faster than
    ``engage_speed``) and starts where the arm is. A controller that merely follows the
    arm while its session is paused therefore never takes the arm out of the drives'
    hold, even once the safety stop has been reset: the arm holds until the session
    resumes and a motion begins.

    Args:
        heartbeat_timeout: Age [s] beyond which the safety heartbeat counts as lost.
        command_timeout: Age [s] beyond which the last command counts as lost.
        resume_tolerance: Largest gap [rad] between commanded and measured position
            accepted when leaving hold.
        engage_speed: Commanded speed [rad/s] a command needs to take the arm out of hold.
        following_tolerance: Largest gap [rad] between the (carried-forward) commanded and
            the measured position while following; a larger one is a following error.
        joint_names: Names of the joints, for the reasons given.
    """

    def __init__(
        self,
        heartbeat_timeout: float = 0.05,
        command_timeout: float = 0.1,
        resume_tolerance: float = 0.05,
        engage_speed: float = 1e-3,
        following_tolerance: float = 0.1,
        joint_names: Optional[Sequence[str]] = None,
    ) -> None:
        self.heartbeat = HeartbeatMonitor(heartbeat_timeout)
        self.following_tolerance = following_tolerance
        self.joint_names = list(joint_names) if joint_names is not None else None
        self.command_timeout = command_timeout
        self.resume_tolerance = resume_tolerance
        self.engage_speed = engage_speed
        self._command: Optional[tuple[float, JointCommand]] = None
        self.engaged = False

    def on_heartbeat(self, now: float, permitted: bool) -> None:
        """Record a safety heartbeat received at ``now`` [s]."""
        self.heartbeat.on_heartbeat(now, permitted)

    def on_command(self, now: float, command: JointCommand) -> None:
        """Record a motion command received at ``now`` [s].

        Raises:
            ValueError: if the command holds NaN or inf (it is not recorded).
        """
        if not command.is_finite():
            raise ValueError("joint command holds NaN or inf")
        self._command = (now, command)

    def decide(self, now: float, measured_position: np.ndarray) -> GateDecision:
        """Return whether to move at ``now`` [s], given the measured positions [rad]."""
        reason, position = self._closed_reason(now, measured_position)
        self.engaged = not reason
        if reason:
            return GateDecision(False, reason)
        command = self._command[1]
        return GateDecision(True, "", JointCommand(position, command.velocity, command.effort))

    def _closed_reason(self, now: float, measured_position: np.ndarray) -> tuple[str, Optional[np.ndarray]]:
        """Return why the gate is closed ("" if open) and, with a fresh command, its position setpoint [rad]."""
        reason = self.heartbeat.closed_reason(now)
        if self.heartbeat.take_interruption() and not reason:
            reason = "safety heartbeat interrupted"
        if reason:
            return reason, None
        if self._command is None:
            return "no motion command yet", None
        stamp, command = self._command
        if now - stamp > self.command_timeout:
            return f"motion commands lost ({(now - stamp) * 1e3:.0f} ms old)", None
        # Commands arrive with jitter; a drive that held the old position until the next
        # one would lag and then be yanked forward. Carry the setpoint along its velocity.
        position = command.position + command.velocity * (now - stamp)
        if self.engaged:
            gap = np.abs(position - measured_position)
            j = int(np.argmax(gap))
            if gap[j] > self.following_tolerance:
                name = self.joint_names[j] if self.joint_names else f"joint {j}"
                return (f"following error: {name} commanded {command.position[j]:.3f} rad, measured "
                        f"{measured_position[j]:.3f} rad ({gap[j]:.3f} rad apart; allowed "
                        f"{self.following_tolerance:.3f} rad)"), position
        else:
            gap = float(np.max(np.abs(command.position - measured_position)))
            if gap > self.resume_tolerance:
                return f"command {gap:.3f} rad away from the arm; waiting for a matching command", position
            if float(np.max(np.abs(command.velocity))) <= self.engage_speed:
                return "holding until a motion starts (the commands do not move the arm)", position
        return "", position

    def disengage(self) -> None:
        """Forget that the drives were following: the next motion must start from the arm."""
        self.engaged = False
