"""Input checks shared by the metrics: every bad input is a ValueError naming the problem."""

from __future__ import annotations

import numpy as np

#: Largest relative spread of the sampling steps that still counts as uniform.
UNIFORM_TOLERANCE = 0.01


def times(t, name: str = "t", min_samples: int = 2) -> np.ndarray:
    """Return time stamps [s] as a 1-D float array: finite, strictly increasing, long enough.

    Raises:
        ValueError: naming the problem.
    """
    arr = np.asarray(t, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of time stamps [s], got shape {arr.shape}")
    if len(arr) < min_samples:
        raise ValueError(f"{name} is too short: {len(arr)} samples, at least {min_samples} needed")
    bad = np.flatnonzero(~np.isfinite(arr))
    if len(bad):
        raise ValueError(f"{name} holds NaN or inf (first at sample {bad[0]})")
    steps = np.diff(arr)
    if np.any(steps <= 0.0):
        k = int(np.flatnonzero(steps <= 0.0)[0])
        raise ValueError(f"{name} must be strictly increasing; sample {k + 1} ({arr[k + 1]}) "
                         f"does not come after sample {k} ({arr[k]})")
    return arr


def series(x, name: str, n: int | None = None, min_samples: int = 1,
           columns: tuple[int, ...] | None = None) -> np.ndarray:
    """Return samples as a float array of shape (N,) or (N, d): finite, N matching ``n``.

    Args:
        x: The samples.
        name: Its name for messages.
        n: Required number of samples (the length of the time stamps), if any.
        min_samples: Fewest samples accepted.
        columns: Allowed numbers of columns of a 2-D array (None: any).

    Raises:
        ValueError: naming the problem.
    """
    arr = np.asarray(x, dtype=float)
    if arr.ndim not in (1, 2) or arr.ndim == 2 and arr.shape[1] == 0:
        raise ValueError(f"{name} must have shape (N,) or (N, d), got {arr.shape}")
    if arr.ndim == 2 and columns is not None and arr.shape[1] not in columns:
        raise ValueError(f"{name} must have {' or '.join(map(str, columns))} columns, got shape {arr.shape}")
    if n is not None and len(arr) != n:
        raise ValueError(f"{name} has {len(arr)} samples but the time stamps have {n}")
    if len(arr) < min_samples:
        raise ValueError(f"{name} is too short: {len(arr)} samples, at least {min_samples} needed")
    bad = np.flatnonzero(~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1))
    if len(bad):
        raise ValueError(f"{name} holds NaN or inf (first at sample {bad[0]})")
    return arr


def magnitude(arr: np.ndarray) -> np.ndarray:
    """|x| of a 1-D array, or the Euclidean norm of each row of a 2-D array."""
    return np.abs(arr) if arr.ndim == 1 else np.linalg.norm(arr, axis=1)


def uniform_rate(t: np.ndarray, name: str = "t") -> float:
    """Return the sampling rate [Hz] of uniformly sampled stamps ``t`` [s].

    Raises:
        ValueError: if the steps differ by more than UNIFORM_TOLERANCE of their mean.
    """
    steps = np.diff(t)
    mean = float(np.mean(steps))
    if np.max(np.abs(steps - mean)) > UNIFORM_TOLERANCE * mean:
        raise ValueError(
            f"{name}: non-uniform sampling: steps range from {steps.min():.6g} to {steps.max():.6g} s "
            f"(more than {UNIFORM_TOLERANCE:.0%} around their mean {mean:.6g} s); resample first "
            "(rehab_robot.metrics.resample)")
    return 1.0 / mean


def positive(value, name: str, allowed: str = "a finite number > 0") -> float:
    """Return ``value`` as a float if finite and > 0, else raise ValueError."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} = {value!r}: must be {allowed}") from None
    if not np.isfinite(number) or number <= 0.0:
        raise ValueError(f"{name} = {value!r}: must be {allowed}")
    return number
