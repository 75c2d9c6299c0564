"""``active_assist``: assistance only when the patient lags behind the minimum-jerk reference.

The patient moves the arm through the admittance. After the movement's *onset*, a joint
that lags behind the reference by more than the deadband is pulled toward it:

    lag_j = s_j (q_ref_j - q_j)                  s_j: the joint's direction of motion
    tau_j = g (K (lag_j - d) s_j + D (v_ref_j - v_j))   if lag_j > d, else 0
    d = deadband (1 - 10 p^3 + 15 p^4 - 6 p^5)   p = min(elapsed / duration, 1)

with ``g = assist.gain`` (adapted per repetition by the session,
:func:`~rehab_robot.control.adaptation.adapt_assistance_gain`), ``K = assist.stiffness``,
``D = assist.damping``, ``deadband = assist.deadband``. The pull (spring and feed-forward)
is bounded by ``assist.max_torque`` per joint and faded in over :data:`FADE_IN` after onset
(a step of assistance would jerk the arm).

* A patient ahead of the reference is never held back; but through the target is not
  ahead: a joint past the end posture by more than the deadband is pulled back,
  ``tau_j = -g K (s_j (q_j - q_end_j) - deadband) s_j`` (a limb that gravity drops through
  the lower target).
* The deadband closes smoothly as the reference arrives (p: its share of time done, through
  the minimum-jerk progress curve): the patient may lag on the way without help, but at
  the end the pull holds the limb at the target itself, not a deadband short of it,
  against what the controller does not model (the limb's passive stiffness, a weight not
  supported).
* Onset is the first of: the cuff force along the motion rising by :data:`ONSET_FORCE`
  above its value when the reference started, a joint speed along the motion above
  :data:`ONSET_SPEED`, or ``assist.onset_timeout`` after the reference started, so that a
  patient who cannot start at all is still carried ("triggered assistance", Kahn et al.
  2006). A session that starts the reference at the patient's onset itself (or at its own
  timeout) sets ``assist.onset_timeout`` to 0: the reference's start is then the onset.

References: L. E. Kahn, M. L. Zygman, W. Z. Rymer, D. J. Reinkensmeyer, "Robot-assisted
reaching exercise promotes arm movement recovery in chronic hemiparetic stroke", J. Neuroeng.
Rehabil. 3:12, 2006; L. Marchal-Crespo, D. J. Reinkensmeyer, "Review of control strategies
for robotic movement training after neurologic injury", J. Neuroeng. Rehabil. 6:20, 2009.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from rehab_robot.control.modes.base import ControlMode, Effort, bounded

#: Rise of the cuff force along the motion [N] that marks the patient's onset.
ONSET_FORCE = 2.0
#: Joint speed along the motion [rad/s] that marks the patient's onset.
ONSET_SPEED = 0.05
#: Time [s] over which the assistance fades in after onset (raised cosine).
FADE_IN = 0.3
#: Range [rad] below which a joint counts as not moving in the reference.
_STILL = 1e-3


class ActiveAssistMode(ControlMode):
    """Assist-as-needed toward the reference (see module docstring)."""

    name = "active_assist"

    def reset(self, state, setpoint, reference) -> None:
        """Forget the onset and the baseline force: a new start needs a new onset."""
        self._reference_key: Optional[tuple] = None
        self._onset = False
        self._onset_time = 0.0
        self._baseline: Optional[float] = None
        self.torque = np.zeros(self.n)

    def effort(self, state, kinematics, velocity, reference) -> Effort:
        """Assistance torque and damping (zero before onset, within the deadband, or ahead)."""
        self.torque = np.zeros(self.n)
        if reference is None:
            return self.no_effort()
        key = (tuple(np.round(reference.start, 6)), tuple(np.round(reference.end, 6)), reference.duration)
        if key != self._reference_key or reference.elapsed < 0.0:
            self._reference_key, self._onset, self._baseline = key, False, None
            self._onset_time = 0.0
        travel = reference.end - reference.start
        error = reference.position - state.q
        direction = np.where(np.abs(travel) > _STILL, np.sign(travel), np.sign(error))
        if not self._onset:
            self._onset = self._detect_onset(state, kinematics, reference, direction)
            if not self._onset:
                return self.no_effort()
            self._onset_time = state.t
        s = self.settings
        fade = min(max((state.t - self._onset_time) / FADE_IN, 0.0), 1.0)
        gain = s.assist_gain * 0.5 * (1.0 - np.cos(np.pi * fade))
        lag = direction * error
        deadband = s.assist_deadband * (1.0 - _progress(reference))
        behind = lag > deadband
        # Past the end posture is no longer "ahead": a limb that falls through the target
        # (gravity on the way down) is pulled back beyond the full deadband.
        past = direction * (state.q - reference.end) - s.assist_deadband
        active = behind | (past > 0.0)
        if gain == 0.0 or not np.any(active):
            return self.no_effort()
        spring = gain * s.assist_stiffness * np.where(behind, lag - deadband, -past) * direction
        feedforward = gain * s.assist_damping * np.where(behind, reference.velocity, 0.0)
        # The pull toward the reference is bounded; the damping only dissipates, so it stays
        # on (implicit, stable at any virtual mass) and keeps a saturated pull from racing.
        pull, _ = bounded(np.where(active, spring + feedforward, 0.0), s.assist_max_torque)
        damping = np.where(active, gain * s.assist_damping, 0.0)
        self.torque = pull - damping * velocity
        return Effort(pull, np.diag(damping))

    def _detect_onset(self, state, kinematics, reference, direction) -> bool:
        if reference.elapsed >= self.settings.assist_onset_timeout:
            return True
        if np.any(direction * state.v > ONSET_SPEED):
            return True
        if state.wrench is None:
            return False
        # Cuff force along the reference's motion direction (its joint-space direction mapped to the cuff).
        motion = kinematics.cuff_jacobian[:3] @ (reference.end - reference.start)
        norm = np.linalg.norm(motion)
        if norm < 1e-6:
            return False
        along = float(kinematics.force_in_base(state.wrench) @ (motion / norm))
        if self._baseline is None:
            self._baseline = along
        return along - self._baseline > ONSET_FORCE

    def values(self) -> dict[str, str]:
        """The assistance torque now [N·m] and whether the onset was seen."""
        return {"assist_torque": " ".join(f"{x:.2f}" for x in self.torque), "assist_onset": str(self._onset)}


def _progress(reference) -> float:
    """Minimum-jerk progress 0..1 of the reference at its elapsed time (1 once it has ended)."""
    if reference.duration <= 0.0:
        return 1.0
    p = min(max(reference.elapsed / reference.duration, 0.0), 1.0)
    return p**3 * (10.0 - 15.0 * p + 6.0 * p * p)
