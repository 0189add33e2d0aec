"""Samples done of the run's total and the time left: a bar on a terminal, else a log line now and then."""
import logging
import sys
import time

log = logging.getLogger(__name__)
LINES = 10  # away from a terminal, a line each time another tenth of the run is done (LINES a run)...
QUIET_SECONDS = 30.0  # ...once the run has taken this long: short runs print nothing


class Progress:
    """Counts samples, fractions of them included (a batch advances token by token)."""

    def __init__(self, total: int, done: int, shown: bool = True, stream=None):
        self.total, self.done, self.first = total, float(done), done
        self.started = time.monotonic()
        self.tenth = self.tenths(done)
        self.bar = None
        stream = stream or sys.stderr
        if shown and stream.isatty():
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, initial=done, desc="Generating", leave=False, dynamic_ncols=True,
                            file=stream, bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total} samples "
                                                    "[{elapsed}<{remaining}]")
        self.shown = shown

    def advance(self, samples: float) -> None:
        self.set(self.done + samples)

    def set(self, done: float) -> None:
        done = min(done, self.total)
        if self.bar is not None:
            self.bar.update(done - self.done)
        self.done = done
        if self.shown and self.bar is None and self.tenths(done) > self.tenth:
            self.tenth = self.tenths(done)
            elapsed = time.monotonic() - self.started
            if elapsed >= QUIET_SECONDS:
                log.info(f"Generated {done:.0f} of {self.total} samples ({done / self.total:.0%}), "
                         f"{self.left(elapsed)} left")

    def tenths(self, done: float) -> int:
        return int(done * LINES // self.total) if self.total else LINES

    def left(self, elapsed: float) -> str:
        rate = (self.done - self.first) / elapsed if elapsed > 0 else 0.0
        if rate <= 0:
            return "unknown time"
        seconds = round((self.total - self.done) / rate)
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
            else f"{seconds // 60}:{seconds % 60:02d}"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
