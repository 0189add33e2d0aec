"""The sweep summary written at the end of every multirun, also when it fails or is interrupted."""
import sys
from functools import partial
from pathlib import Path

from hydra.experimental.callback import Callback

from ..analysis.summary import summarize
from .interrupts import forget, when_interrupted
from .jobs import MultirunJobs, failed_at_the_end


class SweepSummary(Callback):
    """At the end of every multirun, the summary of the jobs that finished in it, in the sweep dir
    (artifacts of earlier multiruns into the same dir left out)."""

    def on_multirun_start(self, config, **kwargs) -> None:
        self.jobs = MultirunJobs(Path(config.hydra.sweep.dir), config.hydra.output_subdir)
        self.when_interrupted = partial(self.on_multirun_end, config)  # the jobs finished so far
        when_interrupted(self.when_interrupted)

    def on_multirun_end(self, config, **kwargs) -> None:
        forget(getattr(self, "when_interrupted", None))
        try:
            from ..decoding.sampling import sample_uniforms  # noqa: PLC0415 - torch: not before the checks

            summarize(Path(config.hydra.sweep.dir), self.jobs.finished() if hasattr(self, "jobs") else None,
                      sample_uniforms)
        except Exception as error:  # noqa: BLE001 - a failed summary must not hide the jobs' results
            print(f"error: the sweep summary failed: {error!r}; rerun python -m gpt2_sweep.summarize "
                  f"{config.hydra.sweep.dir}", file=sys.stderr)
            failed_at_the_end.append("summary")  # the failed-jobs report, called next, exits with 1
