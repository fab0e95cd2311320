"""The data set's checks: `zoo data check` reads a whole data set once and reports one line per finding (the
file and what is wrong); `zoo train` runs the cheap ones (no image decoded, a sample of the labels) before its
first epoch and stops with one line when a run would fail or silently learn the wrong thing.

What is checked comes from one of two places:
- a dataset plugin's optional `inventory` hook (`register.dataset(NAME, inventory=FUNCTION)`): a function of the
  plugin's checked parameter values that lists every sample's files and labels without decoding anything, and
  the files the layout holds that pair with nothing (a label file with no image, an image with no label); plain
  data, so a plugin needs nothing of zoo's to offer it (see `Item` for the keys);
- otherwise the built DataBundle: its samples, decoded one by one, named `split[index]`; a reader's refusal
  while it builds (a one-line ZooError naming the file) is a finding of its own.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zoo.errors import ZooError
from zoo.plugin import registry
from zoo.tasks import TABLE

log = logging.getLogger("zoo")

ERROR, WARNING = "error", "warning"  # an error: a run would fail or learn the wrong thing (exit 2)
IMBALANCE = 0.1  # the default smallest/largest class count (training split) below which a warning is given
CHEAP_SAMPLE = 32  # labels (masks) per split zoo train reads before its first epoch
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Finding:
    """One thing wrong: the file (or `split[index]`) and what."""

    where: str
    what: str
    level: str = ERROR

    def line(self) -> str:
        return f"{self.level}: {self.where}: {self.what}"


@dataclass
class Item:
    """One sample as an `inventory` hook lists it (a dict with these keys; all but `split` optional)."""

    split: str
    image: Path | None = None  # None: a label file with no image (`source` names it)
    label: int | None = None  # a class index (one class per image)
    mask: Path | None = None  # a class-index mask file
    boxes: list | None = None  # [[x0, y0, x1, y1], ...] in the image's pixels
    box_labels: list | None = None  # a class index per box
    source: Path | None = None  # the file the labels come from (a YOLO .txt, a VOC .xml, a COCO json)
    size: tuple | None = None  # the image's (height, width) where the layout states it

    @classmethod
    def of(cls, d: dict) -> Item:
        paths = {k: Path(d[k]) if d.get(k) is not None else None for k in ("image", "mask", "source")}
        return cls(**{**d, **paths})

    @property
    def name(self) -> str:
        return str(self.image or self.source or self.mask)


@dataclass
class Survey:
    """What the checks saw: the findings, and the counts the summary and the picture show."""

    task: str
    classes: tuple[str, ...]
    findings: list[Finding] = field(default_factory=list)
    counts: dict[str, Counter] = field(default_factory=dict)  # split -> class index -> images (or boxes)
    box_sizes: list[tuple[float, float]] = field(default_factory=list)  # (width, height) in pixels
    samples: list = field(default_factory=list)  # a few (image, target) of the train split, for the picture
    images: int = 0

    @property
    def failed(self) -> bool:
        return any(f.level == ERROR for f in self.findings)


def inventory_of(cfg: dict) -> tuple[dict, Iterable[Item]] | None:
    """The data plugin's inventory (its header dict and items), or None when the plugin offers no hook or its hook
    returns None for these values."""
    declared = registry.declared_hook("dataset", cfg["data"], "inventory", "data")
    if declared is None:
        return None
    plugin, hook, values = declared
    with plugin.blame("in its inventory"):
        found = hook(values)
    if found is None:  # the plugin's hook declines this layout: its built splits are checked instead
        return None
    return found, (Item.of(d) for d in found["items"])


def min_size_of(cfg: dict) -> int | None:
    """The smallest side the composed model takes (its architecture's min_size)."""
    mcfg = dict(cfg["model"])
    arch = registry.get("architecture", mcfg.pop("name"))
    return arch.min_size(arch.check_values(mcfg, "model"))


# ---- the labels of one item ---------------------------------------------------------------------------


def class_findings(where: str, labels: Iterable[int], k: int, what: str = "class id") -> list[Finding]:
    past = sorted({int(v) for v in labels if not 0 <= int(v) < k})
    if not past:
        return []
    return [Finding(where, f"{what} {', '.join(map(str, past))} past the class count ({k} classes: 0 to {k - 1})")]


def mask_values_findings(where: str, values: np.ndarray, k: int, ignore: int | None, palette: bool) -> list[Finding]:
    """A mask's values against the class ids (and the ignore index)."""
    found = {int(v) for v in np.unique(values)}
    bad = sorted(v for v in found if not 0 <= v < k and v != ignore)
    if not bad:
        return []
    if palette:
        return [Finding(where, f"palette PNG whose palette indices {bad} are not class ids (0 to {k - 1}); save the "
                               "mask as class indices (mode L) or map its palette to the classes")]  # fmt: skip
    if 255 in bad and ignore is None:
        why = f"set data's ignore index to 255 or map it to a class (values {bad} past 0 to {k - 1})"
        return [Finding(where, f"mask holds 255 (a 'void' label?) but the data has no ignore index; {why}")]
    return class_findings(where, bad, k, "mask value")


def read_mask_findings(item: Item, k: int, ignore: int | None, image_hw: tuple | None) -> list[Finding]:
    """Open a mask file: its mode, size against its image's, and values."""
    from PIL import Image

    where = str(item.mask)
    try:
        with Image.open(item.mask) as im:
            im.load()
            mode, hw = im.mode, (im.height, im.width)
            values = np.asarray(im)
    except (OSError, ValueError) as e:
        return [Finding(where, f"unreadable mask: {str(e).splitlines()[0] if str(e) else type(e).__name__}")]
    if mode not in ("1", "L", "P", "I", "I;16"):
        return [Finding(where, f"mask has image mode {mode} (colours?); expected one channel of class indices")]
    out = []
    if image_hw is not None and hw != tuple(image_hw):
        out.append(Finding(where, f"mask is {hw[1]}x{hw[0]} but its image is {image_hw[1]}x{image_hw[0]}"))
    return out + mask_values_findings(where, values, k, ignore, mode == "P")


def box_findings(item: Item, k: int, hw: tuple | None) -> list[Finding]:
    """Boxes: empty, outside the image (one pixel of tolerance), class ids past the count."""
    out, where = [], str(item.source or item.image)
    for n, (x0, y0, x1, y1) in enumerate(item.boxes or []):
        if x1 <= x0 or y1 <= y0:
            out.append(Finding(where, f"box {n} [{x0:g}, {y0:g}, {x1:g}, {y1:g}] of {item.image} is empty"))
        elif hw is not None and (x0 < -1 or y0 < -1 or x1 > hw[1] + 1 or y1 > hw[0] + 1):
            out.append(Finding(where, f"box {n} [{x0:g}, {y0:g}, {x1:g}, {y1:g}] is outside its image {item.image} "
                                      f"({hw[1]}x{hw[0]})"))  # fmt: skip
    return out + class_findings(where, item.box_labels or [], k)


# ---- images -------------------------------------------------------------------------------------------


def image_findings(path: Path, min_size: int | None) -> tuple[list[Finding], tuple | None, str | None]:
    """Decode one image file whole: (findings, its (height, width), its content hash)."""
    from PIL import Image

    from zoo.runtime import max_pixels  # lazy: the runtime's pixel limit, read when a check runs

    try:
        data = path.read_bytes()
    except OSError as e:
        return [Finding(str(path), f"unreadable: {e.strerror or e}")], None, None
    digest = hashlib.sha256(data).hexdigest()
    try:
        with Image.open(path) as im:
            hw = (im.height, im.width)
            if im.height * im.width > max_pixels():
                return [Finding(str(path), f"{im.width}x{im.height} is over the pixel limit")], hw, digest
            im.load()
    except OSError as e:
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        what = "truncated" if "truncated" in text else "unreadable (not an image zoo can decode)"
        return [Finding(str(path), f"{what}: {text}")], None, digest
    except (ValueError, Image.DecompressionBombError) as e:
        return [Finding(str(path), f"unreadable: {e}")], None, digest
    out = []
    if min_size is not None and min(hw) < min_size:
        out.append(Finding(str(path), f"{hw[1]}x{hw[0]} is smaller than the model's smallest input ({min_size}x"
                                      f"{min_size}); it is upsampled", WARNING))  # fmt: skip
    return out, hw, digest


def duplicate_findings(hashes: dict[str, list[tuple[str, str]]]) -> list[Finding]:
    """Files with the same content: across splits an error (the test scores what was learned), else a warning."""
    out = []
    for copies in hashes.values():
        if len(copies) < 2:
            continue
        first_split, first = copies[0]
        for split, path in copies[1:]:
            leak = split != first_split
            what = f"same content as {first}" + (f" ({first_split} and {split} share it)" if leak else "")
            out.append(Finding(path, what, ERROR if leak else WARNING))
    return out


def imbalance_findings(counts: dict[str, Counter], classes: tuple[str, ...], ratio: float) -> list[Finding]:
    """A class the training split lacks (an error), or smallest/largest count below `ratio` (a warning)."""
    train = counts.get("train") or Counter()
    if not classes or not train:
        return []
    train = Counter({i: n for i, n in train.items() if 0 <= i < len(classes)})  # ids past the classes: found already
    if not train:
        return []
    missing = [classes[i] for i in range(len(classes)) if train[i] == 0]
    if missing:
        return [Finding("train", f"class(es) {', '.join(missing)} have no training samples")]
    most, least = max(train.values()), min(train[i] for i in range(len(classes)))
    if least / most < ratio:
        top = max(train, key=train.get)
        low = min(range(len(classes)), key=lambda i: train[i])
        return [Finding("train", f"class imbalance: {classes[top]!r} has {most}, {classes[low]!r} {least} "
                                 f"({least / most:.2f} of it, below {ratio:g})", WARNING)]  # fmt: skip
    return []


def check_items(survey: Survey, items: Iterable[Item], header: dict, min_size, cheap: bool) -> None:
    """Every check of an inventory's items into `survey` (cheap: no image decoded, a sample of the masks)."""
    k, ignore = len(survey.classes), header.get("ignore_index")
    hashes: dict[str, list[tuple[str, str]]] = {}
    masks_read: Counter = Counter()
    target = TABLE[survey.task].target
    for item in items:
        counts = survey.counts.setdefault(item.split, Counter())
        if item.image is None:
            survey.findings.append(Finding(str(item.source or item.mask), "label file with no image"))
            continue
        survey.images += 1
        hw = item.size
        if not cheap:
            found, hw, digest = image_findings(item.image, min_size)
            survey.findings += found
            if digest:
                hashes.setdefault(digest, []).append((item.split, str(item.image)))
        if item.label is None and item.mask is None and item.boxes is None:
            level = WARNING if target == "boxes" else ERROR  # a detector's image without boxes is background
            survey.findings.append(Finding(str(item.image), "image with no label", level))
            continue
        if item.split == "train" and len(survey.samples) < 16 and not cheap:
            survey.samples.append((item.image, keep_target(item)))
        if item.label is not None:
            survey.findings += class_findings(str(item.image), [item.label], k)
            counts[int(item.label)] += 1
        if item.mask is not None and not (cheap and masks_read[item.split] >= CHEAP_SAMPLE):
            masks_read[item.split] += 1
            survey.findings += read_mask_findings(item, k, ignore, hw)
        if item.boxes is not None:
            survey.findings += box_findings(item, k, hw)
            counts.update(int(c) for c in item.box_labels or [])
            survey.box_sizes += [(x1 - x0, y1 - y0) for x0, y0, x1, y1 in item.boxes]
    survey.findings += duplicate_findings(hashes)


def keep_target(item: Item):
    """What the picture draws over a sample: its class, its boxes or its mask file."""
    if item.boxes is not None:
        return {"boxes": item.boxes, "labels": item.box_labels or []}
    return item.mask if item.mask is not None else item.label


# ---- the built bundle, where a plugin offers no inventory -------------------------------------------


def _samples(data, most: int | None):
    """The split's samples in order, up to `most`: by index, or by iterating a stream (webdataset's shards have no
    index); a sample that fails to read is its ZooError, in its place."""
    from torch.utils.data import IterableDataset

    if isinstance(data, IterableDataset):
        for i, sample in enumerate(data):
            if most is not None and i >= most:
                return
            yield sample
        return
    for i in range(len(data) if most is None else min(len(data), most)):
        try:
            yield data[i]
        except ZooError as e:
            yield e


def check_bundle(survey: Survey, bundle, cheap: bool) -> None:
    """Every sample of each split decoded (cheap: the first few), its target checked; content duplicates."""
    info, k = bundle.info, bundle.info.num_classes
    target = TABLE[info.task].target
    hashes: dict[str, list[tuple[str, str]]] = {}
    for split in SPLITS:
        data = getattr(bundle, split)
        counts = survey.counts.setdefault(split, Counter())
        for i, sample in enumerate(_samples(data, CHEAP_SAMPLE if cheap else None)):
            where = f"{split}[{i}]"
            if isinstance(sample, ZooError):
                survey.findings.append(Finding(where, str(sample)))
                continue
            image, y = sample
            survey.images += 1
            if split == "train" and len(survey.samples) < 16:
                survey.samples.append((image, y))
            if not cheap:
                digest = hashlib.sha256(np.ascontiguousarray(np.asarray(image)).tobytes()).hexdigest()
                hashes.setdefault(digest, []).append((split, where))
            survey.findings += target_findings(where, y, target, k, info, counts, survey)
    survey.findings += duplicate_findings(hashes)


def target_findings(where: str, y, target: str, k: int, info, counts: Counter, survey: Survey) -> list[Finding]:
    """A decoded sample's target checked as its task declares it (class index, mask, boxes)."""
    if target == "index":
        counts[int(y)] += 1
        return class_findings(where, [int(y)], k)
    if target == "mask":
        return mask_values_findings(where, np.asarray(y), k, info.ignore_index, False)
    if target == "boxes":
        boxes = np.asarray(y["boxes"]).reshape(-1, 4).tolist()
        labels = [int(v) for v in np.asarray(y["labels"]).reshape(-1)]
        counts.update(labels)
        survey.box_sizes += [(b[2] - b[0], b[3] - b[1]) for b in boxes]
        return box_findings(Item("", Path(where), boxes=boxes, box_labels=labels, size=info.size), k, info.size)
    return []


# ---- the two entry points -----------------------------------------------------------------------------


def survey(cfg: dict, cheap: bool = False, imbalance: float = IMBALANCE, bundle=None) -> Survey:
    """Check the data set `cfg['data']` describes (cheap: what zoo train checks before its first epoch). With the
    `bundle` a run has just built, the cheap checks read a bounded sample of it rather than the plugin's inventory,
    which would list every file of the set again."""
    try:
        found = None if cheap and bundle is not None else inventory_of(cfg)
    except ZooError as e:  # the layout itself is refused (no such folder, a class folder without images)
        return Survey("", (), [Finding(f"data={cfg['data']['name']}", str(e))])
    if found is not None:
        header, items = found
        result = Survey(header["task"], tuple(header["classes"]))
        result.findings += [Finding(str(p), what) for p, what in header.get("orphans", ())]
        check_items(result, items, header, None if cheap else min_size_of(cfg), cheap)
    else:
        if bundle is None:
            from zoo.data import build_data  # lazy: torch, only where the plugin offers no inventory

            try:
                bundle = build_data(cfg, int(cfg["seed"]))
            except ZooError as e:  # the reader refused its data: the one line names the file
                return Survey("", (), [Finding(f"data={cfg['data']['name']}", str(e))])
        result = Survey(bundle.info.task, bundle.info.classes)
        check_bundle(result, bundle, cheap)
    if not cheap:
        result.findings += imbalance_findings(result.counts, result.classes, imbalance)
    return result


def check_before_training(cfg: dict, bundle) -> None:
    """zoo train's cheap checks: one ZooError line for the first error (how many more, and where to see them),
    a warning in the log for each warning."""
    found = survey(cfg, cheap=True, bundle=bundle)
    errors = [f for f in found.findings if f.level == ERROR]
    for f in found.findings:
        if f.level == WARNING:
            log.warning("data check: %s", f.line())
    if errors:
        more = f" ({len(errors) - 1} more)" if len(errors) > 1 else ""
        first = errors[0]
        raise ZooError(f"data check: {first.where}: {first.what}{more}; zoo data check data=... lists every finding")


def lines(found: Survey) -> Iterator[str]:
    """One line per finding, errors first."""
    for f in sorted(found.findings, key=lambda f: f.level != ERROR):
        yield f.line()
