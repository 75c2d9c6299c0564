"""Assist-as-needed: the assistance gain adapts after every repetition from the tracking error.

The update is the error-based learning law of Emken et al. (2007), which models how the
motor system (and an assisting robot) adapts: the next assistance is the last one,
slightly forgotten, plus a share of the error just made beyond a tolerance,

    g[k+1] = clip(f * g[k] + l * max(0, e[k] - e_tol), 0, 1)

with ``f`` the forgetting factor (0 < f <= 1; f < 1 makes the assistance decay when the
patient tracks well), ``l`` the learning rate [1/rad] and ``e_tol`` the error tolerance
[rad]. ``e[k]`` is the tracking error of repetition k [rad] (e.g. the RMS lag behind the
minimum-jerk reference).

Without a tolerance (``e_tol = 0``, the law of Emken et al.) a steady error e settles the
gain at ``l e / (1 - f)``, never at zero: a patient whose error has a floor the robot
cannot remove (a reaction delay, sensor noise, the reference's own demands) keeps being
assisted however well they do. The tolerance is a deadband (the deadzone of the adaptive
assist-as-needed controller of Wolbrecht et al. 2008): an error at or below ``e_tol``
counts as success, so the forgetting factor alone acts and the gain decays geometrically
toward zero (``g[k] = f^k g[0]``); above it, the gain grows by ``l`` per rad of excess
error and settles at ``l (e - e_tol) / (1 - f)``.

References: J. L. Emken, R. Benitez, A. Sideris, J. E. Bobrow, D. J. Reinkensmeyer,
"Motor adaptation as a greedy optimization of error and effort", J. Neurophysiol. 97
(2007) 3997-4006; applied to robot assistance in J. L. Emken, J. E. Bobrow,
D. J. Reinkensmeyer, "Robotic movement training as an optimization problem: designing a
controller that assists only as needed", Proc. IEEE ICORR 2005, 307-312; the deadzone:
E. T. Wolbrecht, V. Chan, D. J. Reinkensmeyer, J. E. Bobrow, "Optimizing compliant,
model-based robotic assistance to promote neurorehabilitation", IEEE Trans. Neural Syst.
Rehabil. Eng. 16(3) (2008) 286-297.
"""

from __future__ import annotations

import math

__all__ = ["adapt_assistance_gain"]


def adapt_assistance_gain(gain: float, tracking_error: float, forgetting_factor: float,
                          learning_rate: float, error_tolerance: float = 0.0) -> float:
    """Return the assistance gain for the next repetition, in [0, 1].

    Args:
        gain: Gain of the repetition just done, in [0, 1].
        tracking_error: Its tracking error [rad], >= 0.
        forgetting_factor: f, in (0, 1].
        learning_rate: l [1/rad], >= 0.
        error_tolerance: e_tol [rad], >= 0: an error up to it counts as no error
            (0, the default, is the law of Emken et al. 2007 without a deadband).

    Raises:
        ValueError: naming the argument that is not finite or out of its range.
    """
    for name, value, low, high in (
        ("gain", gain, 0.0, 1.0),
        ("tracking_error", tracking_error, 0.0, math.inf),
        ("forgetting_factor", forgetting_factor, 0.0, 1.0),
        ("learning_rate", learning_rate, 0.0, math.inf),
        ("error_tolerance", error_tolerance, 0.0, math.inf),
    ):
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                or not low <= value <= high):
            raise ValueError(f"{name} must be a finite number from {low:g} to {high:g}, got {value!r}")
    if forgetting_factor == 0.0:
        raise ValueError("forgetting_factor must be above 0 (0 forgets all assistance at once), got 0")
    excess = max(0.0, tracking_error - error_tolerance)
    return min(1.0, max(0.0, forgetting_factor * gain + learning_rate * excess))
