"""Movement smoothness: spectral arc length (SPARC) and log dimensionless jerk (LDLJ).

Both expect ONE movement (a reach, one way of a repetition), sampled uniformly,
from just before its onset to just after its end: segment a recording first
(:func:`rehab_robot.metrics.movement_bounds`). Both are negative; closer to 0 is
less smooth. Reference for both: S. Balasubramanian, A. Melendez-Calderon,
A. Roby-Brami, E. Burdet, "On the analysis of movement smoothness", J.
NeuroEngineering Rehabil. 12:112, 2015 (and, for SPARC, Balasubramanian et al.,
"A robust and sensitive metric for quantifying movement smoothness", IEEE Trans.
Biomed. Eng. 59(8), 2012).
"""

from __future__ import annotations

import math

import numpy as np

from rehab_robot.metrics import _checks

#: Fewest samples a smoothness metric accepts (the jerk needs two differences).
MIN_SAMPLES = 5


def sparc(t, speed, fc: float = 10.0, amplitude_threshold: float = 0.05, padding: int = 4) -> float:
    """Spectral arc length (SPARC) of a movement's speed profile [dimensionless].

    With V(f) the Fourier magnitude spectrum of the speed, normalised by V(0), the
    arc length of the curve (f / f_c, V(f)/V(0)) over 0 <= f <= f_c:

        SPARC = -sum_k sqrt( (Δf_k / f_c)^2 + (ΔV̂_k)^2 )

    where the adaptive cut-off f_c is the highest frequency <= ``fc`` at which
    V̂ >= ``amplitude_threshold``. The speed is zero-padded to
    2^(ceil(log2 N) + padding) points for the FFT. The value does not depend on the
    amplitude or the duration of the movement; it falls (more negative) with more
    submovements. A minimum-jerk reach gives -1.41.

    Args:
        t: Uniformly spaced time stamps [s], shape (N,).
        speed: Speed [any unit/s], shape (N,); or velocity, shape (N, d), whose row
            norms are used. A 1-D signed velocity is taken by its magnitude.
        fc: Upper limit of the adaptive cut-off [Hz] (10 Hz: above human movement).
        amplitude_threshold: Normalised magnitude that sets the cut-off, in (0, 1).
        padding: Zero-padding level (extra powers of 2), an integer 0..10.

    Raises:
        ValueError: for NaN/inf, fewer than 5 samples, non-uniform or too slow
            sampling (fs < 2 fc), no movement, or a bad parameter; names the problem.
    """
    t = _checks.times(t, min_samples=MIN_SAMPLES)
    s = _checks.magnitude(_checks.series(speed, "speed", len(t)))
    fs = _checks.uniform_rate(t)
    fc = _checks.positive(fc, "fc", "a frequency > 0 [Hz]")
    if not 0.0 < amplitude_threshold < 1.0:
        raise ValueError(f"amplitude_threshold = {amplitude_threshold!r}: must be between 0 and 1 (excluded)")
    if not isinstance(padding, int) or isinstance(padding, bool) or not 0 <= padding <= 10:
        raise ValueError(f"padding = {padding!r}: must be an integer from 0 to 10")
    if fs < 2.0 * fc:
        raise ValueError(f"sampling rate {fs:.6g} Hz is too low for fc = {fc:g} Hz: at least 2 fc needed")
    if not np.any(s > 0.0):
        raise ValueError("speed is zero throughout: no movement to measure")
    nfft = 2 ** (math.ceil(math.log2(len(s))) + padding)
    spectrum = np.abs(np.fft.rfft(s, nfft))
    spectrum /= spectrum.max()
    freq = np.fft.rfftfreq(nfft, 1.0 / fs)
    inside = freq <= fc
    freq, spectrum = freq[inside], spectrum[inside]
    above = np.flatnonzero(spectrum >= amplitude_threshold)
    first, last = above[0], above[-1]
    if last == first:
        raise ValueError("the speed spectrum falls below the amplitude threshold within one frequency "
                         "bin: record more rest around the movement or raise padding")
    freq, spectrum = freq[first:last + 1], spectrum[first:last + 1]
    df = np.diff(freq) / (freq[-1] - freq[0])
    return -float(np.sum(np.sqrt(df * df + np.diff(spectrum) ** 2)))


def ldlj(t, velocity) -> float:
    """Log dimensionless jerk of a movement, velocity-based form (LDLJ-V) [dimensionless].

        LDLJ = -ln( (t_end - t_start)^3 / v_peak^2 * ∫ |d²v/dt²|² dt )

    with v the velocity (vector), v_peak the largest speed |v|, and the jerk d²v/dt²
    from second differences. It does not depend on the amplitude or the duration of
    the movement; it falls (more negative) with more submovements. A minimum-jerk
    reach gives -ln(204.8) = -5.322.

    Args:
        t: Uniformly spaced time stamps [s], shape (N,).
        velocity: Velocity [any unit/s], shape (N,) or (N, d).

    Raises:
        ValueError: for NaN/inf, fewer than 5 samples, non-uniform sampling or no
            movement; names the problem.
    """
    t = _checks.times(t, min_samples=MIN_SAMPLES)
    v = _checks.series(velocity, "velocity", len(t))
    fs = _checks.uniform_rate(t)
    peak = float(np.max(_checks.magnitude(v)))
    if peak <= 0.0:
        raise ValueError("velocity is zero throughout: no movement to measure")
    jerk = np.diff(v, 2, axis=0) * fs * fs
    squared = jerk * jerk if jerk.ndim == 1 else np.sum(jerk * jerk, axis=1)
    integral = float(np.sum(squared)) / fs
    duration = float(t[-1] - t[0])
    if integral <= 0.0:
        raise ValueError("velocity has no jerk at all (constant or linear): not a movement from rest to rest")
    return -math.log(duration**3 / peak**2 * integral)
