"""The sweep-level progress bar: done / running / failed / left, and an ETA from finished runs' durations.

ultralytics' TQDM draws the bar; only its rate is replaced. TQDM smooths the rate between redraws starting from zero
(its first estimate after one finished run is 0.3x the true rate, e.g. 253 s/run for runs of 76 s), and counts
preparation time and idle redraws; here the rate is ``runs at once / mean duration of the finished runs``, so the ETA
is (runs left) x (mean duration) / (runs at once) from the first finished run on.
"""

from __future__ import annotations

import math

from ultralytics.utils import TQDM


class SweepProgress(TQDM):
    """A TQDM bar over the runs of one sweep invocation, with counts in its description."""

    RATE_SMOOTHING_FACTOR = 0.0  # the rate is set from run durations below, never from redraw intervals

    def __init__(self, total: int, title: str, slots: int = 1, **kwargs):
        self.title, self.slots = title, max(1, slots)
        self.done = self.failed = self.running = 0
        self.ok_durations: list[float] = []
        self.failed_durations: list[float] = []
        super().__init__(total=total, desc=title, unit="run", **kwargs)

    @property
    def left(self) -> int:
        return max(0, (self.total or 0) - self.done - self.failed - self.running)

    @property
    def mean_duration(self) -> float:
        """Mean duration of the finished runs (of the failed ones only while none has succeeded)."""
        durations = self.ok_durations or self.failed_durations
        return sum(durations) / len(durations) if durations else math.nan

    def eta_seconds(self) -> float:
        """Seconds until every run of this invocation has finished: runs not finished x mean duration / runs at
        once (a running run counts as a whole one: conservative by up to one run's duration)."""
        mean = self.mean_duration
        if not math.isfinite(mean):
            return math.nan
        remaining = self.left + self.running
        return remaining * mean / min(self.slots, max(1, remaining))

    def _format_rate(self, rate: float) -> str:
        mean = self.mean_duration
        return f"{mean:.0f}s/run" if math.isfinite(mean) else ""

    def _describe(self) -> None:
        eta = self.eta_seconds()
        remaining = self.left + self.running
        # TQDM's ETA is (total - n) / rate: give it the rate that makes it ours
        self.last_rate = remaining / eta if math.isfinite(eta) and eta > 0 else 0.0
        self.desc = (f"{self.title}: {self.done} done, {self.running} running, {self.failed} failed, "
                     f"{self.left} left")

    def started(self) -> None:
        self.running += 1
        self.refresh_now()

    def finished(self, ok: bool, seconds: float | None) -> None:
        self.running = max(0, self.running - 1)
        if ok:
            self.done += 1
        else:
            self.failed += 1
        if seconds is not None and math.isfinite(seconds):
            (self.ok_durations if ok else self.failed_durations).append(float(seconds))
        self._describe()
        self.update(1)

    def refresh_now(self) -> None:
        """Redraw (elapsed time and counts) without advancing."""
        self._describe()
        self._display()
