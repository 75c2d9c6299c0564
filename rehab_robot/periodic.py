"""A periodic loop on a thread of its own, with absolute-time scheduling and timing statistics.

The loops that must keep their rate whatever else the process does (the driver's
control cycle, the supervisor's heartbeat, the controller's command stream) run here,
not in an executor callback: a slow callback, a log line that waits for the disk or a
burst of discovery traffic in the executor thread then cannot delay them.

Cycle ``k`` is due at ``start + k * period``. A cycle that starts more than one period
late is an *overrun*: it is counted and the schedule skips ahead (no burst of
catch-up cycles, which would hand the drives a string of stale setpoints).
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

#: How long [s] a thread waiting for the GIL lets the holder run before asking for it.
#: Python's default (5 ms) would let any busy thread delay a loop by up to that much.
GIL_SWITCH_INTERVAL = 0.0005


#: Resolution [s] of the period histogram, and the longest period it resolves [s]
#: (longer ones count in its last bin; period_max keeps their exact length).
HISTOGRAM_BIN = 10e-6
HISTOGRAM_RANGE = 0.2


@dataclass(frozen=True)
class CycleTiming:
    """Timing of a periodic loop since its start.

    Attributes:
        cycles: Cycles run since the start.
        overruns: Cycles that started more than one period late.
        period_p99: 99th percentile of the time between cycle starts since the start [s]
            (to the histogram's 10 µs resolution).
        period_p999: 99.9th percentile of it [s].
        period_max: Longest time between two cycle starts [s].
        rate: Cycles per second over the recent window [Hz].
    """

    cycles: int
    overruns: int
    period_p99: float
    period_p999: float
    period_max: float
    rate: float

    def as_values(self) -> dict[str, str]:
        """Return the figures as diagnostic key/values (milliseconds, hertz)."""
        return {
            "cycles": str(self.cycles),
            "overruns": str(self.overruns),
            "period_p99_ms": f"{self.period_p99 * 1e3:.2f}",
            "period_p99.9_ms": f"{self.period_p999 * 1e3:.2f}",
            "period_max_ms": f"{self.period_max * 1e3:.2f}",
            "rate_hz": f"{self.rate:.1f}",
        }


class CycleStats:
    """Collects the periods between cycle starts.

    The percentiles cover the whole run (a histogram), so a stall early in a long
    session still shows; the rate covers the recent ``window`` periods.

    Args:
        period: Nominal period [s].
        window: How many recent periods the rate covers.
    """

    def __init__(self, period: float, window: int = 10000) -> None:
        self.period = period
        self._periods = np.zeros(window)
        self._histogram = np.zeros(int(round(HISTOGRAM_RANGE / HISTOGRAM_BIN)), dtype=np.int64)
        self._count = 0
        self._last: Optional[float] = None
        self.cycles = 0
        self.overruns = 0
        self.period_max = 0.0
        self._lock = threading.Lock()

    def record(self, start: float) -> None:
        """Record a cycle that started at ``start`` [s]."""
        with self._lock:
            self.cycles += 1
            if self._last is not None:
                period = start - self._last
                self._periods[self._count % len(self._periods)] = period
                self._histogram[min(int(period / HISTOGRAM_BIN), len(self._histogram) - 1)] += 1
                self._count += 1
                self.period_max = max(self.period_max, period)
            self._last = start

    def overrun(self) -> None:
        """Count a cycle that started more than one period late."""
        with self._lock:
            self.overruns += 1

    def timing(self) -> CycleTiming:
        """Return the statistics now."""
        with self._lock:
            periods = self._periods[: min(self._count, len(self._periods))].copy()
            cumulative = np.cumsum(self._histogram)
            cycles, overruns, period_max = self.cycles, self.overruns, self.period_max
        if len(periods) == 0:
            return CycleTiming(cycles, overruns, 0.0, 0.0, period_max, 0.0)
        # The upper edge of the bin that holds the percentile, never beyond the longest period.
        p99, p999 = (min((np.searchsorted(cumulative, q * cumulative[-1]) + 1) * HISTOGRAM_BIN, period_max)
                     for q in (0.99, 0.999))
        return CycleTiming(cycles, overruns, float(p99), float(p999), period_max, float(1.0 / periods.mean()))


class PeriodicLoop:
    """Calls ``cycle(now)`` every ``period`` seconds on a dedicated thread.

    Args:
        period: Cycle period [s].
        cycle: Called with the cycle's start time [s, ``time.monotonic``]. An exception
            ends the loop; it is kept in :attr:`error` (a bug to report, not to hide).
        name: Thread name (visible in ``top -H`` and ``ps -L``).
        clock: Monotonic clock [s].
    """

    def __init__(
        self,
        period: float,
        cycle: Callable[[float], None],
        name: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.period = period
        self.stats = CycleStats(period)
        self.error: Optional[str] = None
        self._cycle = cycle
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name[:15], daemon=True)
        sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL))

    def start(self) -> None:
        """Start the loop thread."""
        self._thread.start()

    @property
    def running(self) -> bool:
        """True while the loop thread runs."""
        return self._thread.is_alive()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop after the current cycle and wait for the thread [s]."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        due = self._clock()
        while not self._stop.is_set():
            now = self._clock()
            if now < due:
                self._stop.wait(due - now)
                continue
            if now - due > self.period:
                self.stats.overrun()
                due = now  # skip ahead: no burst of late cycles
            self.stats.record(now)
            try:
                self._cycle(now)
            except Exception:  # noqa: BLE001 - a bug: end the loop, the node reports and exits
                self.error = traceback.format_exc()
                return
            due += self.period

