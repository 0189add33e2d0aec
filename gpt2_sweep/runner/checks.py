"""Checks that need neither torch nor the model: bad input is reported before the seconds of imports."""
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..artifact import check_replaceable, check_writable
from ..errors import UsageError
from .cli import usage_errors_as_one_line
from .devices import check_sampler, read_devices
from .keys import CONFIG_DIR, CONFIG_NAME, check_keys, default_config
from .options import read_options
from .prompts import check_prompt_set
from .trackers import check_logger


def output_json_in_a_multirun(value) -> UsageError:
    return UsageError(f"output_json={value!r} is for single runs: in a multirun every job writes its own "
                      "samples.json into its job dir under hydra.sweep.dir (and the sweep summary gathers "
                      "them); drop output_json, or drop -m")


def check_before_loading(cfg, multirun: bool = False) -> None:
    """Keys, values, device names, the prompt set's file, output_json's path and the tracker's packages:
    what run_sweep would refuse only after the imports (it checks them again, for callers that come in
    without this)."""
    check_keys(cfg)
    options = read_options(cfg)
    read_devices(cfg.devices)
    check_logger(cfg)
    check_sampler(options.sampler, cfg.devices)
    if options.prompt_set is not None:
        check_prompt_set(options.prompt_set, options.seed)
    if options.output_json is not None:
        if multirun:
            raise output_json_in_a_multirun(cfg.output_json)
        check_writable(options.output_json, "output_json")
        if not options.overwrite:
            check_replaceable(options.output_json, OmegaConf.to_container(cfg, resolve=True), "output_json",
                              default_config())


def check_preview(argv: list[str]) -> None:
    """`--cfg job|all` prints a config without running it: its values are checked as a run's are.
    A command line Hydra cannot compose is left to Hydra, which reports it."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.utils import get_args_parser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    args, _ = get_args_parser().parse_known_args(argv)
    if args.cfg not in ("job", "all") or args.config_path or args.config_dir or args.config_name:
        return
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name=CONFIG_NAME, overrides=args.overrides)
            check_before_loading(cfg)
    except (HydraException, OmegaConfBaseException):
        return


def swept_output_json(config):
    """output_json as the command line or the sweeper's params set it for the jobs, or None."""
    for override in config.hydra.overrides.task:
        key, _, value = override.lstrip("+").partition("=")
        if key == "output_json" and value != "null":
            return value
    return OmegaConf.select(config, "hydra.sweeper.params.output_json")


def logger_jobs(config) -> list | None:
    """The configs whose logger node a multirun's jobs log with: for each value of logger=... that the
    command line or the sweeper's params give the jobs, the config of the first job with it, composed as
    Hydra composes that job's; [config] where no job chooses a logger of its own. None where a job
    cannot be composed: Hydra refuses that sweep itself, in its own words, before its first job."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    # Unresolved, as the sweeper reads them: out_${hydra:job.num}.json resolves only inside a job.
    params = OmegaConf.select(config, "hydra.sweeper.params")
    params = OmegaConf.to_container(params, resolve=False) if params else {}
    lines = [f"{key}={value}" for key, value in params.items()]
    lines += OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
    loader = GlobalHydra.instance().config_loader()
    try:
        values = {}  # as Hydra's basic sweeper splits them: each key's values, the command line's over the params'
        for override in OverridesParser.create(config_loader=loader).parse_overrides(lines):
            key = override.get_key_element()
            if not override.is_sweep_override():
                values[key] = [f"{key}={override.get_value_element_as_str()}"]
            elif override.is_discrete_sweep():
                values[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        swept = [key for key in values if key.lstrip("+") == "logger"]
        if not any(len(values[key]) > 1 or key in params for key in swept):
            return [config]
        first = [choices[0] for key, choices in values.items() if key not in swept]
        return [loader.load_sweep_config(config, [*first, choice])
                for choice in dict.fromkeys(choice for key in swept for choice in values[key])]
    except (HydraException, OmegaConfBaseException):
        return None


class MultirunChecks(Callback):
    """Before a multirun's first job: bad input that all its jobs would share is refused once."""

    def on_multirun_start(self, config, **kwargs) -> None:
        with usage_errors_as_one_line():  # Hydra would turn an exception raised here into a warning
            check_keys(config)
            for job in logger_jobs(config) or []:  # logger=csv,wandb: wandb's packages before csv's job runs
                check_logger(job)
            # Unresolved: a path like out_${hydra:job.num}.json resolves only inside a job.
            output_json = OmegaConf.to_container(config, resolve=False).get("output_json")
            output_json = output_json or swept_output_json(config)
            if output_json is not None:  # each job would replace the file the last one wrote
                raise output_json_in_a_multirun(output_json)
