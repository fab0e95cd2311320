"""zoo's Hydra application: what `zoo train -m` (a sweep) and Hydra's own flags (--help, --info,
--hydra-help, --shell-completion) run, in a process of their own, so Hydra's launchers and sweepers
(hydra/launcher=joblib, hydra/sweeper=optuna, ...) run the jobs as in any Hydra app.

`zoo train` checks and builds every job before it starts this app (zoo.cli.train.preflight); each job then
builds its experiment once and trains in the directory Hydra made for it.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig

from zoo.cli.train import remove_untrained_run, run_in
from zoo.errors import ZooError
from zoo.train.config import check, env_keys, store_configs
from zoo.train.experiment import build_experiment
from zoo.train.options import conf_dir
from zoo.verbs import INTERNAL_ERROR, internal_error_line, report_failure

store_configs()  # every registered plugin is a config-group option before Hydra composes


@hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")
def job(cfg) -> float | None:
    """One job of a sweep: build its experiment, train it in Hydra's job directory; the monitored metric on
    the validation split at the best epoch (what a sweeper such as Optuna's optimises, in the direction zoo
    gives it), never a test metric."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        experiment = build_experiment(check(cfg))
        results = run_in(experiment, run_dir, env_keys(cfg), created=True)
    except ZooError as e:
        remove_untrained_run(run_dir, created=True)
        raise SystemExit(report_failure(f"zoo: error: {e}", e, 2)) from None
    except Exception as e:  # a bug: one line as the CLI gives it (not Hydra's traceback); this job's files go
        remove_untrained_run(run_dir, created=True)
        raise SystemExit(report_failure(internal_error_line("train -m (a sweep job)", e), e, INTERNAL_ERROR)) from None
    value = results["val"].get(results["monitor"])
    return float(value) if isinstance(value, (int, float)) else None


if __name__ == "__main__":
    job()
