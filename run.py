"""Sampling sweeps over a causal LM: `python run.py [overrides]`, `python run.py -m a=1,2 b=x,y`."""
import sys
from pathlib import Path

from gpt2_sweep.runner.interrupts import interrupts_as_one_line

with interrupts_as_one_line():  # Ctrl-C while these import ends like Ctrl-C later on
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from gpt2_sweep.runner.checks import check_before_loading, check_preview
    from gpt2_sweep.runner.cli import check_command, usage_errors_as_one_line
    from gpt2_sweep.runner.jobs import failure_recorded
    from gpt2_sweep.runner.rundir import no_run_dir_left_when_refused


def run_job(cfg, output_dir: Path, overrides: list[str], multirun: bool) -> None:
    check_before_loading(cfg, multirun)
    from gpt2_sweep.runner.sweep import run_sweep  # torch and transformers take seconds to import

    run_sweep(cfg, output_dir, overrides, multirun)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg) -> None:
    hydra_cfg = HydraConfig.get()
    output_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    if hydra_cfg.mode == RunMode.MULTIRUN:  # one job's failure must not end the others
        with failure_recorded(output_dir, overrides):
            run_job(cfg, output_dir, overrides, multirun=True)
    else:
        # Reported here too, so that Hydra does not log the error as well.
        with usage_errors_as_one_line(), no_run_dir_left_when_refused(output_dir, hydra_cfg.output_subdir):
            run_job(cfg, output_dir, overrides, multirun=False)


if __name__ == "__main__":
    with interrupts_as_one_line(), usage_errors_as_one_line():
        check_command(sys.argv[1:])
        check_preview(sys.argv[1:])  # --cfg prints the config without running it: its values are checked here
        main()
