"""Resampling a recording onto a uniform time grid (for SPARC and LDLJ)."""

from __future__ import annotations

import numpy as np

from rehab_robot.metrics import _checks


def resample(t, values, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Linearly interpolate ``values`` sampled at ``t`` onto a uniform grid.

    Recorded ``joint_states`` carry the jitter of the driver loop; the spectral and
    derivative metrics need uniform sampling. The grid starts at ``t[0]`` and steps
    by 1 / rate up to ``t[-1]``.

    Args:
        t: Time stamps [s], strictly increasing, shape (N,).
        values: Samples, shape (N,) or (N, d).
        rate: Sampling rate of the grid [Hz].

    Returns:
        (uniform time stamps [s], interpolated values of the same number of columns).

    Raises:
        ValueError: for NaN/inf, fewer than 2 samples, mismatched lengths, a bad rate.
    """
    t = _checks.times(t)
    x = _checks.series(values, "values", len(t))
    rate = _checks.positive(rate, "rate", "a sampling rate > 0 [Hz]")
    count = int(np.floor((t[-1] - t[0]) * rate + 1e-9)) + 1
    grid = t[0] + np.arange(count) / rate
    if x.ndim == 1:
        return grid, np.interp(grid, t, x)
    return grid, np.column_stack([np.interp(grid, t, column) for column in x.T])
