"""`zoo train`: compose the config once, build the experiment once, and only then make a run directory.

A single run goes through Hydra's compose API in this process: nothing is written until the config is
valid and the experiment (data, model, weights, augmentations) is built, so bad input leaves no folder.
A sweep (`-m`) and Hydra's own informational flags go to zoo's Hydra application (zoo.hydra_app) in a
child process, so Hydra's launchers and sweepers run the jobs; every job of a sweep is checked and built
here first. The command line is parsed here, with flags anywhere among the overrides. torch is imported
only when an experiment is built, so the flags that only print answer sooner.
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.config
import shutil
import subprocess
import sys
from pathlib import Path

from zoo.config import compose, env_keys, expand, job_config, searchpath_override, to_plain
from zoo.errors import ZooError, make_folder

log = logging.getLogger("zoo")
RUN_FILES = ("config.yaml", "train.log", ".hydra", "checkpoints")  # what a run writes before its first epoch ends
WRITES = (*RUN_FILES, "metrics.json", "curves.png", "confusion.png", "worst.png")  # and after
# Where a config may name code for Hydra to run (hydra.callbacks.*, hydra.launcher, hydra.sweeper): Hydra's own
# plugins, zoo's, and installed zoo plugin packages' modules; nothing a config value or override can add.
TRUSTED_MODULES = ("hydra", "hydra_plugins", "zoo", "zoo_plugins")


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
    p.add_argument("-i", "--info", nargs="?", const="all")
    p.add_argument("-sc", "--shell-completion", action="store_true")
    p.add_argument("-cd", "--config-dir", action="append", default=[])
    p.add_argument("-cp", "--config-path")
    p.add_argument("-cn", "--config-name")
    p.add_argument("--experimental-rerun")
    p.add_argument("--version", action="store_true")
    args = p.parse_intermixed_args(argv)
    if args.config_path is not None or args.config_name is not None:  # even empty: never another config
        raise ZooError("zoo train composes zoo's own config; add config groups and experiments with --config-dir DIR")
    if args.experimental_rerun is not None:
        raise ZooError("zoo train does not rerun pickled configs (--experimental-rerun); run the overrides again")
    return args


def train_command(argv: list[str]) -> int:
    """`zoo train [flags] OVERRIDES...`: one run here, or a sweep / Hydra's own flags in zoo's Hydra app."""
    args = parse_args(argv)
    overrides = list(args.overrides)
    if args.multirun or args.help or args.hydra_help or args.info or args.shell_completion or args.version:
        if args.multirun and not (args.help or args.hydra_help or args.info or args.cfg):
            preflight(overrides, args.config_dir)
        return _hydra_app(args, overrides)
    if args.cfg:
        cfg = compose(overrides, with_hydra=args.cfg != "job", extra_dirs=args.config_dir)
        return _print_config(cfg, args)
    return single_run(overrides, args.config_dir)


def check_hydra_targets(hydra_cfg) -> None:
    """Refuse a callback, launcher or sweeper whose `_target_` is not in a trusted module: a config value
    never names code for Hydra to import and run (`+hydra.callbacks.x._target_=builtins.open` writes nothing)."""
    from zoo import discovery

    trusted = {*TRUSTED_MODULES, *(p.module.split(".")[0] for p in discovery.loaded)}
    named = [
        (f"hydra.callbacks.{k}._target_", (v or {}).get("_target_"))
        for k, v in (hydra_cfg.get("callbacks") or {}).items()
    ]
    named += [(f"hydra.{k}._target_", (hydra_cfg.get(k) or {}).get("_target_")) for k in ("launcher", "sweeper")]
    for key, target in named:
        if target is not None and str(target).split(".")[0] not in trusted:
            raise ZooError(
                f"{key}={target!r} is not run: zoo takes callbacks, launchers and sweepers only from Hydra's "
                f"plugins, zoo and installed zoo plugin packages ({', '.join(sorted(trusted))})"
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


def preflight(overrides: list[str], config_dirs: list[str]) -> None:
    """Compose and check every job of a sweep (the code its Hydra config names too), and build each distinct
    experiment, before any job runs."""
    from zoo.experiment import build_experiment

    built = set()
    for combo in expand(overrides):
        cfg = compose(combo, with_hydra=True, extra_dirs=config_dirs)
        check_hydra_targets(cfg.hydra)
        plain = to_plain(job_config(cfg))
        key = json.dumps({k: v for k, v in plain.items() if k not in ("seed", "trainer", "export")}, sort_keys=True)
        if key not in built:  # a sweep over seeds or trainer settings builds its data and model once
            built.add(key)
            build_experiment(plain)


def _hydra_app(args: argparse.Namespace, overrides: list[str]) -> int:
    flags = ["--multirun"] * args.multirun + ["--help"] * args.help + ["--hydra-help"] * args.hydra_help
    flags += (
        ["--shell-completion"] * args.shell_completion + ["--version"] * args.version + ["--resolve"] * args.resolve
    )
    flags += ["--info", args.info] if args.info else []
    flags += ["--cfg", args.cfg] if args.cfg else []
    flags += ["--package", args.package] if args.package else []
    extra = [o for o in [searchpath_override(args.config_dir)] if o]
    return subprocess.call([sys.executable, "-m", "zoo.hydra_app", *flags, *overrides, *extra])


def _print_config(cfg, args: argparse.Namespace) -> int:
    from omegaconf import OmegaConf

    if args.cfg == "job":
        cfg = job_config(cfg)
    elif args.cfg == "hydra":
        cfg = OmegaConf.create({"hydra": cfg.hydra})
    if args.package:
        cfg = OmegaConf.select(cfg, args.package)
        if cfg is None:
            raise ZooError(f"--package {args.package!r} is not a node of the config")
    print(OmegaConf.to_yaml(cfg, resolve=args.resolve), end="")
    return 0


def single_run(overrides: list[str], config_dirs: list[str] = ()) -> int:
    """Compose once, build the experiment once, then create the run directory, log into it and train."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    from zoo.engine import resume_checkpoint
    from zoo.experiment import build_experiment

    cfg = compose(overrides, with_hydra=True, extra_dirs=config_dirs)
    job = job_config(cfg)
    plain = to_plain(job)
    run_dir = Path(str(cfg.hydra.run.dir))
    if not str(cfg.hydra.run.dir).strip():
        raise ZooError("hydra.run.dir is empty; name the run's folder, e.g. hydra.run.dir=runs/mine")
    check_hydra_targets(cfg.hydra)
    check_run_dir(run_dir, bool(plain["trainer"]["resume"]))
    experiment = build_experiment(plain)
    resumed = resume_checkpoint(experiment, run_dir)  # a malformed or foreign last.pt: one line, nothing written
    created = not run_dir.exists()
    make_folder(run_dir)  # and the folders above it: a failed command removes those it created (zoo.cli)
    try:
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(run_dir.resolve())
        HydraConfig.instance().set_config(cfg)  # ${hydra:...} in the config resolves as in any Hydra app
        if cfg.hydra.output_subdir is not None:
            hydra_dir = run_dir / str(cfg.hydra.output_subdir)
            hydra_dir.mkdir(exist_ok=True)
            OmegaConf.save(job, hydra_dir / "config.yaml")
            OmegaConf.save(cfg.hydra, hydra_dir / "hydra.yaml")
            OmegaConf.save(OmegaConf.create(list(overrides)), hydra_dir / "overrides.yaml")
        logging.config.dictConfig(OmegaConf.to_container(cfg.hydra.job_logging, resolve=True))
    except Exception:
        remove_untrained_run(run_dir, created, resumed is not None)
        raise
    run_in(experiment, run_dir, env_keys(job), created, resumed)
    return 0


def run_in(experiment, run_dir: Path, keys: list[str], created: bool, resumed: dict | None = None) -> dict:
    """Write the run's config.yaml and train in `run_dir` (going on from `resumed`, a checked last.pt). A late
    failure (a metric that does not exist, say) removes what this run wrote, and the folder too when the run
    created it; never anything else."""
    from omegaconf import OmegaConf

    from zoo.engine import train
    from zoo.figures import run_figures

    try:
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(experiment.cfg)))
        results = train(experiment, run_dir, env_keys=keys, resumed=resumed)
    except Exception:  # bad input found late, or a bug: one line from the CLI, and this run's files go
        remove_untrained_run(run_dir, created, resumed is not None)
        raise
    pictures = run_figures(experiment, run_dir, results)
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
