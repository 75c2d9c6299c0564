"""Assist-as-needed: the assistance gain adapts after every repetition from the tracking error.

The update is the error-based learning law of Emken et al. (2007), which models how the
motor system (and an assisting robot) adapts: the next assistance is the last one,
slightly forgotten, plus a share of the error just made,

    g[k+1] = clip(f * g[k] + l * e[k], 0, 1)

with ``f`` the forgetting factor (0 < f <= 1; f < 1 makes the assistance decay when the
patient tracks well) and ``l`` the learning rate [1/rad]. ``e[k]`` is the tracking error
of repetition k [rad] (e.g. the RMS lag behind the minimum-jerk reference). With e = 0 the
gain decays geometrically toward zero; a steady error e settles it at l e / (1 - f).

Reference: J. L. Emken, R. Benitez, A. Sideris, J. E. Bobrow, D. J. Reinkensmeyer,
"Motor adaptation as a greedy optimization of error and effort", J. Neurophysiol. 97
(2007) 3997-4006; applied to robot assistance in J. L. Emken, J. E. Bobrow,
D. J. Reinkensmeyer, "Robotic movement training as an optimization problem: designing a
controller that assists only as needed", Proc. IEEE ICORR 2005, 307-312.
"""

from __future__ import annotations

import math

__all__ = ["adapt_assistance_gain"]


def adapt_assistance_gain(gain: float, tracking_error: float, forgetting_factor: float,
                          learning_rate: float) -> float:
    """Return the assistance gain for the next repetition, in [0, 1].

    Args:
        gain: Gain of the repetition just done, in [0, 1].
        tracking_error: Its tracking error [rad], >= 0.
        forgetting_factor: f, in (0, 1].
        learning_rate: l [1/rad], >= 0.

    Raises:
        ValueError: naming the argument that is not finite or out of its range.
    """
    for name, value, low, high in (
        ("gain", gain, 0.0, 1.0),
        ("tracking_error", tracking_error, 0.0, math.inf),
        ("forgetting_factor", forgetting_factor, 0.0, 1.0),
        ("learning_rate", learning_rate, 0.0, math.inf),
    ):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
            raise ValueError(f"{name} must be a finite number from {low:g} to {high:g}, got {value!r}")
    if forgetting_factor == 0.0:
        raise ValueError("forgetting_factor must be above 0 (0 forgets all assistance at once), got 0")
    return min(1.0, max(0.0, forgetting_factor * gain + learning_rate * tracking_error))
