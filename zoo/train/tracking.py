"""`trainer.logger=tensorboard|csv`: a run's scalars streamed while it trains, beside metrics.json.

The engine hands each epoch's history row (the one metrics.json's `history` keeps) to `Tracker.epoch`, and
the final test metrics to `Tracker.finish`; `zoo train` adds the run's figures (`Tracker.figures`).
csv rewrites RUN/metrics.csv after each epoch (one row per epoch, a column per scalar; written to a
temporary file and renamed, so a reader never sees half a file and a resumed run rewrites what it
restored). tensorboard writes RUN/tensorboard/ with torch.utils.tensorboard: each scalar under
`train/`, `val/` or `test/` at its epoch, and the figures as images. `none` writes nothing.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

LOGGERS = ("none", "csv", "tensorboard")
SPLITS = ("train", "val", "test")


def _tag(key: str) -> str:
    """`val_accuracy` -> `val/accuracy`; keys of no split (train_seconds is train's) keep their name."""
    split, _, name = key.partition("_")
    return f"{split}/{name}" if split in SPLITS and name else key


class Tracker:
    """Where a run's scalars go while it trains; the base class writes nothing (trainer.logger=none)."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    def epoch(self, history: Sequence[dict]) -> None:
        """The run's history so far; its last row is the epoch just finished."""

    def finish(self, test: dict, epoch: int) -> None:
        """The best checkpoint's test metrics, at the run's last epoch."""

    def figures(self, paths: Sequence[Path], epoch: int) -> None:
        """The run's pictures (PNG files)."""

    def close(self) -> None:
        """Flush and release what the tracker holds."""


class CsvTracker(Tracker):
    """RUN/metrics.csv: one row per epoch."""

    def epoch(self, history: Sequence[dict]) -> None:
        columns = list(dict.fromkeys(k for row in history for k in row))
        text = io.StringIO()
        writer = csv.DictWriter(text, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
        path = self.run_dir / "metrics.csv"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text.getvalue())
        os.replace(tmp, path)


class TensorBoardTracker(Tracker):
    """RUN/tensorboard/: scalars per epoch, the figures as images."""

    def __init__(self, run_dir: Path):
        super().__init__(run_dir)
        self._writer = None

    @property
    def writer(self):
        """The SummaryWriter, made on first use: a run that fails before its first epoch leaves no folder."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.run_dir / "tensorboard"))
        return self._writer

    def epoch(self, history: Sequence[dict]) -> None:
        row = history[-1]
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self.writer.add_scalar(_tag(key), value, row["epoch"])
        self.writer.flush()

    def finish(self, test: dict, epoch: int) -> None:
        for key, value in test.items():
            if isinstance(value, (int, float)):
                self.writer.add_scalar(f"test/{key}", value, epoch)
        self.writer.flush()

    def figures(self, paths: Sequence[Path], epoch: int) -> None:
        import numpy as np
        from PIL import Image

        for path in paths:
            with Image.open(path) as im:
                self.writer.add_image(
                    f"figures/{Path(path).stem}", np.asarray(im.convert("RGB")), epoch, dataformats="HWC"
                )
        self.writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def tracker(kind: str, run_dir: str | Path) -> Tracker:
    """The tracker trainer.logger names (checked by the config's schema)."""
    return {"csv": CsvTracker, "tensorboard": TensorBoardTracker}.get(kind, Tracker)(Path(run_dir))
