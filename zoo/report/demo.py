"""`make demo`: train `experiment=demo`, export it to ONNX, serve it with onnxruntime, print the figures.

Every step runs the real `zoo` CLI, as a user would. The ONNX accuracy on the test split must equal
the PyTorch accuracy the run reported, or the demo fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from zoo.runtime import Model

RUN = Path("runs/demo")
EXPORT = Path("exports/demo")


def zoo(*args: str, capture: bool = False, show: bool = True) -> str:
    """Run the zoo CLI; stop the demo if it fails. `capture`: return its stdout (printed too, unless not `show`)."""
    cmd = [sys.executable, "-m", "zoo.cli", *args]
    print(f"\n$ zoo {' '.join(args)}", flush=True)
    done = subprocess.run(cmd, text=True, capture_output=capture)
    if done.returncode != 0:
        if capture:
            sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"demo: `zoo {' '.join(args)}` failed with exit code {done.returncode}")
    if capture and show:
        print(done.stdout, end="")
    return done.stdout if capture else ""


def onnx_accuracy(model_path: Path, run_dir: Path) -> tuple[float, int, str]:
    """Accuracy of the exported model on the run's own test split, through zoo.runtime only."""
    import numpy as np
    from omegaconf import OmegaConf

    from zoo.data import build_data  # lazy: torch; the demo's other steps run in their own processes

    cfg = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"))
    test = build_data(cfg, int(cfg["seed"])).test
    images = np.stack([test[i][0].numpy() for i in range(len(test))]).astype(np.float32)
    labels = np.array([int(test[i][1]) for i in range(len(test))])
    model = Model(model_path)
    batches = [model.as_input(images[i : i + 128]) for i in range(0, len(images), 128)]
    probs = np.concatenate([model.run_roles(b)["probabilities"] for b in batches])
    return float((probs.argmax(1) == labels).mean()), len(labels), model.providers[0]


def write_samples(run_dir: Path, n: int = 5) -> Path:
    """A few test digits as PNG files, as an application would receive them."""
    import numpy as np
    from omegaconf import OmegaConf
    from PIL import Image

    from zoo.data import build_data  # lazy: torch, as in onnx_accuracy

    cfg = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"))
    test = build_data(cfg, int(cfg["seed"])).test
    out = run_dir / "samples"
    out.mkdir(exist_ok=True)
    for i in range(n):
        image, label = test[i * 37]
        Image.fromarray((image[0].numpy() * 255).round().astype(np.uint8)).save(
            out / f"test{i * 37:03d}_true{int(label)}.png"
        )
    return out


def main() -> int:
    """Train, export, serve, report."""
    import shutil

    t0 = time.perf_counter()
    if (RUN / ".hydra").is_dir() and (RUN / "config.yaml").is_file():  # the previous demo's run: start afresh
        shutil.rmtree(RUN)
    zoo("train", "experiment=demo", f"hydra.run.dir={RUN}")
    metrics = json.loads((RUN / "metrics.json").read_text())
    zoo("export", f"checkpoint={RUN}/checkpoints/best.pt", f"output={EXPORT}", capture=True)
    card = json.loads((EXPORT / "model.json").read_text())
    acc_onnx, n, provider = onnx_accuracy(EXPORT / "model.onnx", RUN)
    samples = write_samples(RUN)
    zoo("predict", f"model={EXPORT}/model.onnx", f"input={samples}", "topk=3", capture=True)
    zoo("bench", "inference", f"model={EXPORT}/model.onnx", "batch=64", capture=True)
    counted = json.loads(zoo("summary", f"run={RUN}", "fields=false", "--json", capture=True, show=False))

    acc_torch = metrics["test"]["accuracy"]
    cfg, parity, size = card["config"], card["parity"], card["onnx"]["bytes"] / 1024
    data, (h, w) = cfg["data"]["name"], card["input"]["size"]
    print(f"\n=== zoo demo: {card['task']} of {data} with model={cfg['model']['name']} ===")
    print(f"  data            {data}: {n} test images, {h}x{w}")
    epochs, seconds, best = metrics["epochs"], metrics["train_seconds"], metrics["best_epoch"]
    print(f"  training        {epochs} epochs in {seconds:.1f} s (best epoch {best})")
    print(f"  test accuracy   PyTorch {acc_torch:.4f}   ONNX ({provider}) {acc_onnx:.4f}")
    print(f"  parity          max |ONNX - PyTorch| = {max(parity['max_abs_diff'].values()):.2e} on {parity['inputs']}")
    macs = counted["macs"] / 1e6
    print(f"  model           {counted['params']:,} parameters, {macs:.2f} M multiply-accumulates an image")
    print(f"  exported        {EXPORT}/model.onnx ({size:.0f} KiB, opset {card['onnx']['opset']}) + model.json")
    print(f"  total           {time.perf_counter() - t0:.1f} s")
    if abs(acc_onnx - acc_torch) > 0.5 / n:
        print(f"demo: ONNX accuracy {acc_onnx:.4f} differs from PyTorch accuracy {acc_torch:.4f}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
