"""Tar shards in webdataset's layout (`data=webdataset`): data that outgrows one machine's disk or memory, read as
a stream by every rank and loader worker from its own shards, and the writer that makes them from any reader.

A shard is a tar of samples, each a group of files sharing a key: the image (`png`, `jpg` or `npy`) and its target
(`cls`: a class index; `json`: a vector, or detection's boxes and labels; `mask.png`: a class-index mask). Beside the
shards, `meta.json` holds the DataInfo (task, classes, channels, size, mean and std: nothing needs a pass over the
data) and each split's shards with their sample counts (an epoch's length is known before it is read).
"""

from __future__ import annotations

import io
import json
import logging
import random
from itertools import islice
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch

from zoo import Range, register
from zoo.data import DataBundle, DataInfo, Stream
from zoo.errors import ZooError
from zoo.tasks import TABLE
from zoo_plugins._shared import image_tensor

log = logging.getLogger("zoo")

FORMAT = "zoo.webdataset/1"
META = "meta.json"
SPLITS = ("train", "val", "test")
IMAGE_KEYS = ("png", "jpg", "jpeg", "webp", "npy")


def _slots() -> tuple[int, int, int, int]:
    """(rank, world, worker, workers) as webdataset's own splitters see them (torchrun's RANK/WORLD_SIZE or the
    process group; the loader worker), so the lengths computed here are what split_by_node/worker read."""
    import webdataset as wds

    return wds.utils.pytorch_worker_info()


class ShardStream(Stream):
    """One split's shards, read in order (evaluation) or, for training, in an order drawn per epoch (the same on
    every rank), each rank and loader worker reading its own shards through webdataset's `split_by_node` and
    `split_by_worker`, with a shuffle buffer over the samples. A training stream yields the same number of whole
    batches on every rank and worker (`plan`): the least any of them is dealt in any epoch's order, so DDP's
    ranks step together and no sample is read twice in an epoch."""

    def __init__(self, shards: list[tuple[str, int]], info: DataInfo, train: bool, buffer: int, seed: int):
        self.shards, self.info, self.train, self.buffer, self.seed = shards, info, train, buffer, seed
        self.epoch, self.epoch_seed, self.quota, self.readers = 0, seed, None, 1

    def set_epoch(self, epoch: int, seed: int = 0) -> None:
        self.epoch, self.epoch_seed = epoch, seed * 1_000_003 + self.seed

    def plan(self, batch_size: int, workers: int, drop_last: bool) -> None:
        if not (self.train and drop_last):
            self.quota = None  # evaluation: every sample of this rank's shards once, whatever the batches
            return
        rank, world, _, _ = _slots()
        readers = world * max(1, workers)
        counts = sorted(n for _, n in self.shards)
        least = sum(counts[: len(counts) // readers])  # the fewest samples any reader can be dealt
        self.quota = least // batch_size * batch_size
        if self.quota == 0:
            raise ZooError(
                f"data: {len(self.shards)} training shards of {sum(counts)} samples cannot give each of {readers} "
                f"readers ({world} processes x {max(1, workers)} loader workers) a batch of {batch_size}: "
                "write more, smaller shards (shard_size) or use fewer workers (trainer.num_workers)"
            )
        dropped = sum(counts) - self.quota * readers
        if dropped and rank == 0:
            log.info(
                f"webdataset: {dropped} of {sum(counts)} training samples left out of each epoch so that "
                f"{readers} readers read whole batches alike; shards a multiple of {readers} in number and "
                "equal in size leave none out"
            )
        self.readers = max(1, workers)

    def __len__(self) -> int:
        rank, world, _, _ = _slots()
        if self.quota is not None:
            return self.quota * self.readers
        return sum(n for _, n in self.shards[rank::world])

    def _order(self) -> list[str]:
        urls = [u for u, _ in self.shards]
        if self.train:
            random.Random(self.epoch_seed * 7919 + self.epoch).shuffle(urls)  # the same on every rank
        return urls

    def __iter__(self):
        import webdataset as wds

        rank, _, worker, _ = _slots()
        stages = [
            wds.SimpleShardList(self._order()),
            wds.split_by_node,
            wds.split_by_worker,
            wds.tarfile_to_samples(),
        ]
        if self.train and self.buffer > 1:
            rng = random.Random(hash((self.epoch_seed, self.epoch, rank, worker)))
            stages.append(wds.shuffle(self.buffer, initial=min(self.buffer, 100), rng=rng))
        samples = (decode_sample(s, self.info) for s in wds.DataPipeline(*stages))
        return islice(samples, self.quota) if self.quota is not None else samples


def decode_sample(sample: dict, info: DataInfo) -> tuple[torch.Tensor, Any]:
    """A shard's sample (its files' bytes by extension) as zoo's (image, target) at `info.size`."""
    from zoo.runtime import open_image  # lazy: Pillow only when a sample is read

    key, where = sample.get("__key__"), sample.get("__url__", "a shard")
    found = next((k for k in IMAGE_KEYS if k in sample), None)
    if found is None:
        raise ZooError(f"sample {key!r} of {where} has no image ({', '.join(IMAGE_KEYS)}); it has {sorted(sample)}")
    if found == "npy":
        array = torch.from_numpy(np.load(io.BytesIO(sample["npy"]))).permute(2, 0, 1)
        image = array.float().div_(255.0) if array.dtype == torch.uint8 else array.float()
        stored = tuple(image.shape[1:])
    else:
        with open_image(io.BytesIO(sample[found]), f"image of sample {key!r} in {where}") as im:
            image, stored = image_tensor(im, info.channels, info.size), (im.height, im.width)
    return image, _target(sample, info, stored, f"sample {key!r} of {where}")


def _target(sample: dict, info: DataInfo, stored: tuple[int, int], where: str) -> Any:
    kind = TABLE[info.task].target
    need = {"index": "cls", "values": "json", "mask": "mask.png", "boxes": "json"}[kind]
    if need not in sample:
        raise ZooError(f"{where} has no {need!r} target, which task {info.task!r} needs")
    if kind == "index":
        return torch.tensor(int(sample["cls"]))
    if kind == "values":
        return torch.tensor(json.loads(sample["json"]), dtype=torch.float32)
    if kind == "mask":
        from PIL import Image
        from torchvision import tv_tensors

        with Image.open(io.BytesIO(sample["mask.png"])) as im:
            if (im.height, im.width) != info.size:
                im = im.resize((info.size[1], info.size[0]), Image.NEAREST)
            return tv_tensors.Mask(torch.from_numpy(np.asarray(im).astype(np.int64)))
    from torchvision import tv_tensors

    boxes = json.loads(sample["json"])
    b = torch.tensor(boxes["boxes"], dtype=torch.float32).reshape(-1, 4)
    b *= torch.tensor([info.size[1] / stored[1], info.size[0] / stored[0]] * 2)
    return {
        "boxes": tv_tensors.BoundingBoxes(b, format="XYXY", canvas_size=info.size),
        "labels": torch.tensor(boxes["labels"], dtype=torch.int64),
    }


# ---- finding the shards ----------------------------------------------------------------------


def _read_meta(location: str) -> dict:
    """meta.json at a local path or a URL (webdataset's gopen: http(s), pipe:, file)."""
    import webdataset as wds

    try:
        if "://" not in location and not location.startswith("pipe:"):
            text = Path(location).read_text()
        else:
            with wds.gopen(location) as f:
                text = f.read().decode()
        meta = json.loads(text)
    except (OSError, ValueError) as e:
        raise ZooError(
            f"data: cannot read {location} ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
            f"the shards need a {META} beside them (zoo data convert ... to=webdataset writes one), "
            "or data.meta=PATH"
        ) from None
    if meta.get("format") != FORMAT or "info" not in meta:
        raise ZooError(f"data: {location} is not a {FORMAT} meta file (it needs 'format' and 'info')")
    return meta


def _beside(url: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + META if "/" in url else META


def _count(url: str) -> int:
    """Samples in a local tar shard, from its headers (keys: file names up to the first dot after the folder)."""
    import tarfile

    try:
        with tarfile.open(url) as tar:
            return len({m.name.split("/")[-1].split(".")[0] for m in tar if m.isfile()})
    except (OSError, tarfile.TarError) as e:
        raise ZooError(f"data: cannot read shard {url}: {str(e).splitlines()[0]}") from None


def _shards(pattern: str, counts: dict[str, int], key: str) -> list[tuple[str, int]]:
    """A brace pattern's shards with their sample counts (meta.json's, else counted from a local shard)."""
    import webdataset as wds

    urls = wds.shardlists.expand_urls(pattern)
    out = []
    for url in urls:
        name = url.rsplit("/", 1)[-1]
        if name in counts:
            out.append((url, int(counts[name])))
        elif "://" not in url and Path(url).is_file():
            out.append((url, _count(url)))
        else:
            raise ZooError(f"data.{key}: shard {url} is neither in {META}'s counts nor a local file")
    return out


def webdataset(
    seed: int,
    urls: str,
    val_urls: str = "",
    test_urls: str = "",
    meta: str = "",
    shuffle_buffer: Annotated[int, Range(0)] = 1000,
) -> DataBundle:
    """Tar shards (webdataset): URLS a folder `zoo data convert ... to=webdataset` wrote, or a brace pattern of
    paths or URLs (`shards/train-{000000..000009}.tar`) with val_urls and test_urls, meta.json beside them."""
    folder = Path(urls).expanduser()
    if "{" not in urls and "://" not in urls and folder.is_dir():
        found = _read_meta(str(meta or folder / META))
        patterns = {s: [(str(folder / name), n) for name, n in found.get("splits", {}).get(s, [])] for s in SPLITS}
        if not patterns["train"]:
            raise ZooError(f"data.urls={urls!r}: {META} lists no training shards")
    else:
        found = _read_meta(meta or _beside(urls.split("::")[0]))
        counts = {name: n for shards in found.get("splits", {}).values() for name, n in shards}
        given = {"train": ("urls", urls), "val": ("val_urls", val_urls), "test": ("test_urls", test_urls)}
        patterns = {s: _shards(p, counts, k) if p else [] for s, (k, p) in given.items()}
    try:
        info = DataInfo.from_dict(found["info"])
    except (KeyError, TypeError, ValueError) as e:
        raise ZooError(f"data: {META}'s info is not a DataInfo ({e})") from None
    splits = {s: ShardStream(patterns[s], info, s == "train", shuffle_buffer, seed) for s in SPLITS}
    return DataBundle(info, splits["train"], splits["val"], splits["test"])


# ---- writing shards --------------------------------------------------------------------------


def _image_bytes(image: torch.Tensor, fmt: str) -> tuple[str, bytes]:
    """A float CHW image in [0, 1] as PNG (lossless for 8-bit images), JPEG (quality 95) or, for channel counts
    neither holds, npy (uint8 HWC)."""
    pixels = image.mul(255).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    if pixels.shape[2] not in (1, 3) or fmt == "npy":
        np.save(buf, pixels)
        return "npy", buf.getvalue()
    from PIL import Image

    im = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    im.save(buf, format="PNG" if fmt == "png" else "JPEG", **({"quality": 95} if fmt == "jpg" else {}))
    return fmt, buf.getvalue()


def _target_files(target: Any, kind: str) -> dict[str, bytes]:
    if kind == "index":
        return {"cls": str(int(target)).encode()}
    if kind == "values":
        return {"json": json.dumps([float(v) for v in torch.as_tensor(target).flatten()]).encode()}
    if kind == "mask":
        from PIL import Image

        mask = torch.as_tensor(target).numpy()
        buf = io.BytesIO()
        Image.fromarray(mask.astype(np.uint8 if mask.max(initial=0) < 256 else np.int32)).save(buf, format="PNG")
        return {"mask.png": buf.getvalue()}
    boxes = {"boxes": torch.as_tensor(target["boxes"]).tolist(), "labels": torch.as_tensor(target["labels"]).tolist()}
    return {"json": json.dumps(boxes).encode()}


def _samples(ds):
    if isinstance(ds, torch.utils.data.IterableDataset):
        yield from ds
    else:
        for i in range(len(ds)):
            yield ds[i]


def write_shards(
    bundle: DataBundle,
    output: Path,
    shard_size: Annotated[int, Range(1)] = 1000,
    image_format: Literal["png", "jpg", "npy"] = "png",
) -> dict:
    """Every split of `bundle` into OUTPUT/{split}-NNNNNN.tar, `shard_size` samples a shard, images as PNG by default
    (lossless: the uint8 pixels the reader decoded), with OUTPUT/meta.json (the DataInfo, each shard's count).
    Returns, per split, its images and shards (a writer's counts, zoo.report.convert)."""
    import webdataset as wds

    if int(shard_size) < 1:
        raise ZooError(f"shard_size={shard_size} must be at least 1")
    if image_format not in ("png", "jpg", "npy"):
        raise ZooError(f"image_format={image_format!r} is not one of png, jpg, npy")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    kind, splits = TABLE[bundle.info.task].target, {}
    for split in SPLITS:
        shards, sink, n = [], None, 0
        for i, (image, target) in enumerate(_samples(getattr(bundle, split))):
            if sink is None or n == shard_size:
                if sink is not None:
                    sink.close()
                    shards[-1][1] = n
                name, n = f"{split}-{len(shards):06d}.tar", 0
                sink, shards = wds.TarWriter(str(output / name)), [*shards, [name, 0]]
            ext, data = _image_bytes(image, image_format)
            sink.write({"__key__": f"{split}-{i:08d}", ext: data, **_target_files(target, kind)})
            n += 1
        if sink is not None:
            sink.close()
            shards[-1][1] = n
        splits[split] = shards
    meta = {"format": FORMAT, "info": bundle.info.to_dict(), "image": image_format, "splits": splits}
    (output / META).write_text(json.dumps(meta, indent=1))
    return {split: {"images": sum(n for _, n in shards), "shards": len(shards)} for split, shards in splits.items()}


register.dataset("webdataset", writer=write_shards)(webdataset)  # after the writer it declares
