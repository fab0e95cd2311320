"""Image regression from a CSV table: a column of image paths and numeric target columns.

The table is read and checked when the dataset is built, so a bad row stops the run before any training
with one line naming it; images are decoded when a sample is read.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Annotated, Literal, Optional

import torch
from torch.utils.data import Dataset

from zoo import Length, Range, register
from zoo.data import DataBundle, DataInfo
from zoo.errors import ZooError, close_matches
from zoo_plugins._shared import Fraction, check_fractions, existing_folder, read_image, sampled_stats, split_indices

# ---- building blocks -------------------------------------------------------------------------


def read_table(path: Path, image_column: str, target_columns: list[str], root: Path) -> tuple[list[Path], torch.Tensor]:
    """Image paths and a float32 (N, K) target matrix from a CSV with a header row."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, skipinitialspace=True)
            header = [h.strip() for h in next(reader, [])]
            if not any(header):
                raise ZooError(f"{path} is empty; expected a header row naming the columns")
            for col in [image_column, *target_columns]:
                if col not in header:
                    hint = close_matches(col, header)
                    raise ZooError(
                        f"{path} has no column {col!r}"
                        + (f"; did you mean {hint[0]!r}?" if hint else "")
                        + f" (columns: {', '.join(header)})"
                    )
            where = [header.index(c) for c in target_columns]
            at = header.index(image_column)
            files, values = [], []
            for row_number, row in enumerate(reader, start=1):
                if not any(cell.strip() for cell in row):
                    continue  # blank line
                row = [cell.strip() for cell in row] + [""] * (len(header) - len(row))
                numbers = []
                for col, j in zip(target_columns, where):
                    try:
                        v = float(row[j])
                    except ValueError:
                        v = math.nan
                    if not math.isfinite(v):
                        raise ZooError(
                            f"{path}: row {row_number} (line {reader.line_num}), column {col!r} has {row[j]!r}, "
                            "which is not a number"
                        )
                    numbers.append(v)
                if not row[at]:
                    raise ZooError(
                        f"{path}: row {row_number} (line {reader.line_num}) has no image in column {image_column!r}"
                    )
                file = root / row[at]
                if not file.is_file():
                    raise ZooError(
                        f"{path}: row {row_number} (line {reader.line_num}): image file {file} does not exist"
                    )
                files.append(file)
                values.append(numbers)
    except OSError as e:
        raise ZooError(f"cannot read {path}: {e}") from None
    except (csv.Error, UnicodeDecodeError) as e:
        raise ZooError(f"{path} is not a readable CSV file: {e}") from None
    if not files:
        raise ZooError(f"{path} has a header but no rows")
    return files, torch.tensor(values, dtype=torch.float32)


class TableImages(Dataset):
    """Image files and their float target vectors, decoded on access."""

    def __init__(self, files: list[Path], targets: torch.Tensor, channels: int, size: tuple[int, int]):
        self.files, self.targets, self.channels, self.size = files, targets, channels, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        return read_image(self.files[i], self.channels, self.size)[0], self.targets[i].clone()


# ---- the registered dataset -------------------------------------------------------------------


@register.dataset("csv")
def csv_table(
    seed: int,
    file: str,
    image_column: str = "image",
    target_columns: Annotated[list[str], Length(min=1)] = ("target",),
    root: Optional[str] = None,
    size: Annotated[int, Range(8)] = 64,
    channels: Literal[1, 3] = 3,
    val_fraction: Fraction = 0.15,
    test_fraction: Fraction = 0.15,
    split_seed: int = 0,
    stats_samples: int = 256,
) -> DataBundle:
    """Regression from a CSV: an image path column and numeric target columns; split by a seeded shuffle."""
    check_fractions(val_fraction, test_fraction)
    path = Path(file).expanduser()
    if not path.is_file():
        raise ZooError(f"data.file={file!r}: file does not exist (expected a CSV with a header row)")
    targets = list(target_columns)
    if len(set(targets)) != len(targets):
        raise ZooError(f"data.target_columns={targets} names a column twice")
    base = path.parent if root is None else existing_folder(root, "root", "image paths in the CSV are relative to it")
    files, values = read_table(path, image_column, targets, base)
    tr, va, te = split_indices(len(files), val_fraction, test_fraction, split_seed)
    hw = (size, size)
    train, val, test = (TableImages([files[i] for i in idx], values[idx], channels, hw) for idx in (tr, va, te))
    mean, std = sampled_stats(train, stats_samples)
    return DataBundle(DataInfo("regression", tuple(targets), channels, hw, mean, std), train, val, test)
