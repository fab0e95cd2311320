"""`zoo train`: compose the config once, build the experiment once, and only then make a run directory.

A single run goes through Hydra's compose API in this process: nothing is written until the config is
valid and the experiment (data, model, weights, augmentations) is built, so bad input leaves no folder.
A sweep (`-m`) and Hydra's own informational flags go to zoo's Hydra application (zoo.cli.hydra_app) in a
child process, so Hydra's launchers and sweepers run the jobs; every job of a sweep is checked and built
here first. The command line is parsed here, with flags anywhere among the overrides. torch is imported
only when an experiment is built, so the flags that only print answer sooner.
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.config
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from zoo.cli.hydra_flags import INFO_CHOICES, check_completion, check_flags, hydra_quoted, searchpath_dirs
from zoo.errors import ZooError, make_folder
from zoo.plugin import catalog, discovery
from zoo.train.config import compose, env_keys, job_config, to_plain
from zoo.train.options import searchpath_override
from zoo.train.sweeps import expand
from zoo.verbs import Verb

log = logging.getLogger("zoo")
RUN_FILES = ("config.yaml", "train.log", ".hydra", "checkpoints")  # what a run writes before its first epoch ends
# and after it (trainer.logger's files too)
WRITES = (*RUN_FILES, "metrics.json", "curves.png", "confusion.png", "worst.png", "metrics.csv", "tensorboard")
# Where a config may name code for Hydra to run (hydra.callbacks.*, hydra.launcher, hydra.sweeper): Hydra's own
# plugins, zoo's, and installed zoo plugin packages' modules; nothing a config value or override can add.
TRUSTED_MODULES = ("hydra", "hydra_plugins", "zoo", "zoo_plugins")
CODE_KEYS = ("_target_", "custom_search_space")  # keys whose value is a dotted path to code Hydra imports


VERB = Verb(
    "train",
    "train an experiment composed by Hydra (zoo train --help: Hydra's help, the config groups and their options)",
    overrides="OVERRIDES...: Hydra's overrides and flags (-m, --cfg, --config-dir, ...)",
    own_help=False,  # zoo train --help is Hydra's
)


def run(args: list[str]) -> int:
    """zoo train [HYDRA FLAGS] OVERRIDES...."""
    catalog.serve()  # composing and checking need plugins' declarations only; building imports their code
    return train_command(args)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise ZooError(f"zoo train: {message}; see: zoo train --help")


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Hydra's command-line flags and the overrides, flags anywhere (as Hydra users type them)."""
    p = _Parser(prog="zoo train", add_help=False, allow_abbrev=False)
    p.add_argument("overrides", nargs="*")
    p.add_argument("-m", "--multirun", action="store_true")
    p.add_argument("-c", "--cfg", choices=["job", "hydra", "all"])
    p.add_argument("-p", "--package")
    p.add_argument("--resolve", action="store_true")
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("--hydra-help", action="store_true")
    p.add_argument("-i", "--info", nargs="?", const="all", choices=INFO_CHOICES)
    p.add_argument("-sc", "--shell-completion", action="store_true")
    p.add_argument("-cd", "--config-dir", action="append", default=[])
    p.add_argument("-cp", "--config-path")
    p.add_argument("-cn", "--config-name")
    p.add_argument("--experimental-rerun")
    p.add_argument("--version", action="store_true")
    args = p.parse_intermixed_args(argv)
    if args.config_path is not None or args.config_name is not None:  # even empty: never another config
        flag = "--config-path (-cp)" if args.config_path is not None else "--config-name (-cn)"
        raise ZooError(f"{flag}: zoo train composes zoo's own config; add groups and experiments with --config-dir DIR")
    if args.experimental_rerun is not None:
        raise ZooError("zoo train does not rerun pickled configs (--experimental-rerun); run the overrides again")
    return args


def train_command(argv: list[str]) -> int:
    """`zoo train [flags] OVERRIDES...`: one run here, or a sweep / Hydra's own flags in zoo's Hydra app."""
    args = parse_args(argv)
    check_flags(args)
    if args.shell_completion and not (args.help or args.hydra_help or args.version):
        check_completion(args.overrides)
        return _hydra_app(args, list(args.overrides))
    overrides, dirs = searchpath_dirs([hydra_quoted(o) for o in args.overrides])
    args.config_dir += dirs
    if args.multirun or args.help or args.hydra_help or args.info or args.version:
        if args.multirun and not (args.help or args.hydra_help):
            first, monitors = preflight(overrides, args.config_dir)
            overrides += sweep_overrides(first, monitors, overrides)
        elif not args.version:  # what Hydra's help and --info compose: one line if it does not
            compose(overrides, with_hydra=True, extra_dirs=args.config_dir)
        return _hydra_app(args, overrides)
    if args.cfg:
        cfg = compose(overrides, with_hydra=args.cfg != "job", extra_dirs=args.config_dir)
        return _print_config(cfg, args)
    return single_run(overrides, args.config_dir)


def _named_code(node, where: str):
    """(key, dotted path) for every place under a Hydra node that names code to import: `_target_`, at any
    depth (the Optuna sweeper's sampler), and a sweeper's `custom_search_space`."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in CODE_KEYS and v is not None and not isinstance(v, (dict, list)):
                yield f"{where}.{k}", str(v)  # a number names no code either: checked, so refused
            else:
                yield from _named_code(v, f"{where}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _named_code(v, f"{where}[{i}]")


def _plugin_targets() -> set[str]:
    """What the installed Hydra plugins' own configs name (optuna.samplers.TPESampler, ...): Hydra's plugins
    store their configs under the `hydra/` groups of Hydra's ConfigStore."""
    from hydra.core.config_store import ConfigNode, ConfigStore
    from omegaconf import OmegaConf

    found, stack = set(), [ConfigStore.instance().repo.get("hydra", {})]
    while stack:
        entry = stack.pop()
        if isinstance(entry, dict):
            stack.extend(entry.values())
        elif isinstance(entry, ConfigNode) and OmegaConf.is_config(entry.node):
            found.update(v for _, v in _named_code(OmegaConf.to_container(entry.node, resolve=False), ""))
    return found


def check_hydra_targets(hydra_cfg) -> None:
    """Refuse code that a callback, launcher or sweeper config names (`_target_` at any depth, a search-space
    function) unless it is in a trusted module or is what an installed Hydra plugin's own config names: a
    config value never names code for Hydra to import and run (`+hydra.callbacks.x._target_=builtins.open`
    writes nothing)."""
    from omegaconf import OmegaConf

    trusted = {*TRUSTED_MODULES, *(p.module.split(".")[0] for p in discovery.loaded)}
    plugin_targets = None
    for node in ("callbacks", "launcher", "sweeper"):
        value = hydra_cfg.get(node)
        plain = OmegaConf.to_container(value, resolve=False) if OmegaConf.is_config(value) else value
        for key, target in _named_code(plain or {}, f"hydra.{node}"):
            if target.split(".")[0] in trusted:
                continue
            plugin_targets = _plugin_targets() if plugin_targets is None else plugin_targets
            if target not in plugin_targets:
                raise ZooError(
                    f"{key}={target!r} is not run: zoo takes callbacks, launchers and sweepers only from Hydra's "
                    f"plugins (and what their own configs name), zoo and installed zoo plugin packages "
                    f"({', '.join(sorted(trusted))})"
                )


def check_run_dir(run_dir: Path, resume: bool) -> None:
    """Refuse a run folder that holds what a run would overwrite (another run, or the user's own files of the
    same names), unless it is a zoo run being resumed; a folder with other files only is written beside them."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ZooError(f"hydra.run.dir={str(run_dir)!r} is a file, not a folder")
    taken = sorted(name for name in WRITES if (run_dir / name).exists())
    if taken and not (resume and (run_dir / "checkpoints" / "last.pt").is_file()):
        raise ZooError(
            f"hydra.run.dir={str(run_dir)!r} already holds {', '.join(taken)}: choose a new folder, or "
            f"trainer.resume=true to continue the zoo run there"
        )


def preflight(overrides: list[str], config_dirs: list[str]) -> tuple[Any, set[tuple[str, str]]]:
    """Compose and check every job of a sweep (the code its Hydra config names too), and build each distinct
    experiment, before any job runs. The first job's config (with its `hydra` node) and the jobs' monitored
    metrics with their directions ('min' or 'max')."""
    from zoo.train.experiment import build_experiment, metric_mode  # lazy: torch, once the config is valid

    models, monitors, first = {}, set(), None
    for combo in expand(overrides):
        cfg = compose(combo, with_hydra=True, extra_dirs=config_dirs)
        check_hydra_targets(cfg.hydra)
        first = cfg if first is None else first
        plain = to_plain(job_config(cfg))
        if plain["trainer"]["devices"] > 1:
            raise ZooError(
                f"trainer.devices={plain['trainer']['devices']} starts torchrun for a single run; a sweep's jobs run "
                "one process each (run each job with torchrun, or give Hydra's launcher the devices)"
            )
        key = json.dumps({k: v for k, v in plain.items() if k not in ("seed", "trainer", "export")}, sort_keys=True)
        if key not in models:  # a sweep over seeds or trainer settings builds its data and model once
            models[key] = build_experiment(plain).model
        name = plain["trainer"]["monitor"]
        name = models[key].head.monitor if name == "auto" else name
        monitors.add((name, metric_mode(models[key], name)))
    return first, monitors


def sweep_overrides(cfg, monitors: set[tuple[str, str]], overrides: list[str]) -> list[str]:
    """What zoo adds to a sweep: the direction of a sweeper that optimises the jobs' return value (Optuna's),
    from the monitored metric that each job returns; and, for a launcher that runs `n_jobs` at once (joblib),
    trainer.threads so that the jobs share the cores instead of each taking them all."""
    given = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    added = []
    sweeper = cfg.hydra.get("sweeper") or {}
    if "direction" in sweeper:
        if len({mode for _, mode in monitors}) > 1:
            names = ", ".join(sorted(f"{n} ({m})" for n, m in monitors))
            raise ZooError(f"the sweep's jobs monitor metrics that go opposite ways: {names}; set one trainer.monitor")
        name, mode = next(iter(monitors))
        want = "maximize" if mode == "max" else "minimize"
        got = getattr(sweeper.direction, "name", str(sweeper.direction))
        if "hydra.sweeper.direction" not in given:
            added.append(f"hydra.sweeper.direction={want}")
        elif got != want:
            raise ZooError(
                f"hydra.sweeper.direction={got}, but each job returns validation {name}, which is to "
                f"{want}; leave hydra.sweeper.direction to zoo"
            )
    n_jobs = (cfg.hydra.get("launcher") or {}).get("n_jobs")
    if isinstance(n_jobs, int) and cfg.trainer.threads == 0 and "trainer.threads" not in given:
        cores = os.cpu_count() or 1
        jobs = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)  # joblib: -1 all cores, -2 all but one
        added.append(f"trainer.threads={max(1, cores // jobs)}")
    return added


def _hydra_app(args: argparse.Namespace, overrides: list[str]) -> int:
    flags = ["--multirun"] * args.multirun + ["--help"] * args.help + ["--hydra-help"] * args.hydra_help
    flags += (
        ["--shell-completion"] * args.shell_completion + ["--version"] * args.version + ["--resolve"] * args.resolve
    )
    flags += ["--info", args.info] if args.info else []
    flags += ["--cfg", args.cfg] if args.cfg else []
    flags += ["--package", args.package] if args.package else []
    extra = [o for o in [searchpath_override(args.config_dir)] if o]
    return subprocess.call([sys.executable, "-m", "zoo.cli.hydra_app", *flags, *overrides, *extra])


def _print_config(cfg, args: argparse.Namespace) -> int:
    from omegaconf import OmegaConf

    if args.cfg == "job":
        cfg = job_config(cfg)
    elif args.cfg == "hydra":
        cfg = OmegaConf.create({"hydra": cfg.hydra})
    if args.package is not None and args.package != "_global_":  # _global_: the whole config, as in Hydra
        try:
            cfg = OmegaConf.select(cfg, args.package) if args.package.strip() else None
        except Exception:  # a key OmegaConf cannot read ('..x'): not a node either
            cfg = None
        if cfg is None:
            raise ZooError(
                f"--package {args.package!r} is not a key of the config; e.g. --package trainer (see: zoo train "
                f"--cfg {args.cfg})"
            )
    print(OmegaConf.to_yaml(cfg, resolve=args.resolve) if OmegaConf.is_config(cfg) else f"{cfg}\n", end="")
    return 0


def single_run(overrides: list[str], config_dirs: list[str] = ()) -> int:
    """Compose once, build the experiment once, then create the run directory, log into it and train. With
    trainer.devices=N outside torchrun: check all of that here, then start torchrun's N processes."""
    cfg = compose(overrides, with_hydra=True, extra_dirs=config_dirs)
    from zoo.train import distributed as dist  # lazy: torch, only once the config is valid, so a typo answers fast

    job = job_config(cfg)
    plain = to_plain(job)
    tcfg = plain["trainer"]
    if tcfg["devices"] > 1 and dist.launched_world() == 1:
        return launch_devices(overrides, config_dirs, cfg, plain)
    dist.init(tcfg["device"], tcfg["devices"])  # under torchrun: join its process group
    try:
        return _run(cfg, job, plain, overrides)
    finally:
        dist.shutdown()


def checked_run_dir(cfg, plain: dict) -> str:
    """The run's folder (hydra.run.dir resolved, once), after checking the code the Hydra config names and
    that the folder holds nothing a run would overwrite."""
    run_dir = str(cfg.hydra.run.dir)
    if not run_dir.strip():
        raise ZooError("hydra.run.dir is empty; name the run's folder, e.g. hydra.run.dir=runs/mine")
    check_hydra_targets(cfg.hydra)
    check_run_dir(Path(run_dir), bool(plain["trainer"]["resume"]))
    return run_dir


def _run(cfg, job, plain: dict, overrides: list[str]) -> int:
    """One run in this process (under torchrun, one rank of it: rank 0 picks the folder and writes)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from zoo.train import distributed as dist  # lazy: torch: only once the config is valid
    from zoo.train.engine import resume_checkpoint  # lazy: torch: only once the config is valid
    from zoo.train.experiment import build_experiment  # lazy: torch: only once the config is valid

    run_dir = Path(dist.on_main(lambda: checked_run_dir(cfg, plain)))  # ${now:...} resolved once, by rank 0
    experiment = build_experiment(plain)
    # a malformed or foreign last.pt: one line, nothing written
    resumed = dist.on_main(lambda: resume_checkpoint(experiment, run_dir))
    created = not run_dir.exists()
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir.resolve())
    HydraConfig.instance().set_config(cfg)  # ${hydra:...} in the config resolves as in any Hydra app
    if dist.is_main():
        make_folder(run_dir)  # and the folders above it: a failed command removes those it created (zoo.cli)
        try:
            _write_hydra_files(cfg, job, run_dir, overrides)
        except Exception:
            remove_untrained_run(run_dir, created, resumed is not None)
            raise
    run_in(experiment, run_dir, env_keys(job), created, resumed)
    return 0


def _write_hydra_files(cfg, job, run_dir: Path, overrides: list[str]) -> None:
    """.hydra/{config,hydra,overrides}.yaml as Hydra writes them, and the job's logging into the run folder."""
    from omegaconf import OmegaConf

    if cfg.hydra.output_subdir is not None:
        hydra_dir = run_dir / str(cfg.hydra.output_subdir)
        hydra_dir.mkdir(exist_ok=True)
        OmegaConf.save(job, hydra_dir / "config.yaml")
        OmegaConf.save(cfg.hydra, hydra_dir / "hydra.yaml")
        OmegaConf.save(OmegaConf.create(list(overrides)), hydra_dir / "overrides.yaml")
    logging.config.dictConfig(OmegaConf.to_container(cfg.hydra.job_logging, resolve=True))


def launch_devices(overrides: list[str], config_dirs: list[str], cfg, plain: dict) -> int:
    """`trainer.devices=N`: check what a run checks (one line, nothing written: the folder, the experiment, a
    checkpoint to resume), then start torchrun with N processes on this machine, the run folder resolved here
    once for all of them; torchrun's exit code."""
    import torch

    from zoo.train.engine import resume_checkpoint  # lazy: torch: only once the config is valid
    from zoo.train.experiment import build_experiment  # lazy: torch: only once the config is valid

    tcfg = plain["trainer"]
    n, cuda = tcfg["devices"], tcfg["device"] == "cuda" or (tcfg["device"] == "auto" and torch.cuda.is_available())
    if cuda and torch.cuda.device_count() < n:
        raise ZooError(f"trainer.devices={n} but {torch.cuda.device_count()} GPU(s) are visible here")
    if tcfg["batch_size"] % n:
        raise ZooError(f"trainer.batch_size={tcfg['batch_size']} is the global batch and must split evenly among {n}")
    run_dir = checked_run_dir(cfg, plain)
    experiment = build_experiment(plain)
    resume_checkpoint(experiment, Path(run_dir))
    del experiment
    env = dict(os.environ)
    if not cuda and "OMP_NUM_THREADS" not in env:  # the machine's cores shared among the processes
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // n))
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != "hydra.run.dir"]
    quoted = "'" + run_dir.replace("\\", "\\\\").replace("'", "\\'") + "'"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}"]
    command += ["-m", "zoo.cli", "train", *kept, f"hydra.run.dir={quoted}"]
    command += [f"--config-dir={d}" for d in config_dirs]
    print(f"zoo: {n} processes through torch.distributed.run, run folder {run_dir}", file=sys.stderr)
    return subprocess.call(command, env=env)


def run_in(experiment, run_dir: Path, keys: list[str], created: bool, resumed: dict | None = None) -> dict:
    """Write the run's config.yaml and train in `run_dir` (going on from `resumed`, a checked last.pt). A late
    failure (a metric that does not exist, say) removes what this run wrote, and the folder too when the run
    created it; never anything else."""
    from omegaconf import OmegaConf

    from zoo.report.figures import run_figures  # lazy: matplotlib and torch: only for a run that trains
    from zoo.train import distributed as dist  # lazy: torch: only once the config is valid
    from zoo.train.engine import train  # lazy: torch: only for a run that trains
    from zoo.train.tracking import tracker  # lazy: tensorboard: only for a run that trains

    try:
        if dist.is_main():
            (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(experiment.cfg)))
        results = train(experiment, run_dir, env_keys=keys, resumed=resumed)
    except Exception:  # bad input found late, or a bug: one line from the CLI, and this run's files go
        if dist.is_main():
            remove_untrained_run(run_dir, created, resumed is not None)
        raise
    if not dist.is_main():  # the pictures are rank 0's
        return results
    pictures = run_figures(experiment, run_dir, results)
    figures_to = tracker(experiment.cfg["trainer"].get("logger", "none"), run_dir)  # tensorboard: as images
    figures_to.figures(pictures, results["epochs"])
    figures_to.close()
    log.info("run directory: %s (%s)", run_dir, ", ".join(p.name for p in pictures) or "no pictures")
    return results


def remove_untrained_run(run_dir: Path, created: bool, resumed: bool = False) -> None:
    """Undo a failed run that saved no checkpoint: delete its folder when this run created it (and nothing else
    is in it), else only the run files it wrote there, so the user's own files stay as they were. A resumed
    run, or one that saved a checkpoint (resume it), keeps every file."""
    entries = list(run_dir.iterdir()) if run_dir.is_dir() else []
    if resumed or any((run_dir / "checkpoints").glob("*")):
        return
    if created and not any(e.name not in RUN_FILES for e in entries):
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    # check_run_dir refused a folder holding any of these unless resumed: here, this run wrote them
    for e in entries:
        if e.name in RUN_FILES and e.is_dir() and not e.is_symlink():
            shutil.rmtree(e, ignore_errors=True)
        elif e.name in RUN_FILES:
            e.unlink(missing_ok=True)
