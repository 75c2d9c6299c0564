"""Unit tests of rehab_robot.periodic (loop timing statistics)."""

import numpy as np
import pytest

from rehab_robot.periodic import HISTOGRAM_BIN, CycleStats


def test_percentiles_cover_the_whole_run_not_only_the_recent_window():
    """Late periods early in a long run still count in p99.9, as they would in the bag."""
    stats = CycleStats(0.002, window=1000)
    rng = np.random.default_rng(1)
    periods = np.concatenate([np.full(30, 0.012), 0.002 + np.abs(rng.normal(0.0, 0.0001, 20000))])
    t = 0.0
    stats.record(t)
    for period in periods:
        t += period
        stats.record(t)
    timing = stats.timing()
    assert timing.cycles == len(periods) + 1
    assert timing.period_p999 == pytest.approx(np.percentile(periods, 99.9), abs=2 * HISTOGRAM_BIN)
    assert timing.period_p999 > 0.01, "the 30 late periods (0.15 %) are above the 99.9th percentile"
    assert timing.period_p99 == pytest.approx(np.percentile(periods, 99.0), abs=2 * HISTOGRAM_BIN)
    assert timing.period_max == pytest.approx(0.012)
    assert timing.rate == pytest.approx(1.0 / periods[-1000:].mean())


def test_a_stall_longer_than_the_histogram_keeps_its_length_in_the_maximum():
    """A 332 ms stall lands in the last bin but period_max says 332 ms."""
    stats = CycleStats(0.002)
    for t in (0.0, 0.002, 0.334, 0.336):
        stats.record(t)
    timing = stats.timing()
    assert timing.period_max == pytest.approx(0.332)
    assert timing.period_p999 <= timing.period_max
