"""zoo train | export | predict | list | bench.

Heavy imports (torch, hydra, onnxruntime) happen inside each command, so `zoo predict` never loads
torch and `zoo --help` is instant. A ZooError anywhere is one line on stderr and exit code 2.
"""

from __future__ import annotations

import json
import os
import re
import sys
import typing
from pathlib import Path
from typing import Annotated, Any

from zoo.errors import ZooError, close_matches, describe_os_error, forget_created, make_folder, remove_created, unknown
from zoo.plugin.registry import Range

USAGE = """usage: zoo COMMAND [ARGS]

commands:
  train   [OVERRIDES...]             train an experiment composed by Hydra (zoo train --help)
  export  checkpoint=PATH[,PATH...] [output=DIR] [input=uint8|float32] [opset=N] [parity_tolerance=X]
          [parity_mismatch=F] [precision=fp32|fp16|int8] [max_metric_drop=X] [calibration_samples=N]
          [calibration_method=minmax|...] [outputs=[embedding,cam]]
                                     export a checkpoint (several: an averaging ensemble) to DIR/model.onnx + model.json
                                     + golden/ (sample images and the outputs they give)
  verify  EXPORT_DIR                 check an export against its golden vectors (one line per failure)
  predict model=PATH input=FILE_OR_DIR [topk=5] [providers=auto|cpu|cuda|tensorrt] [masks=DIR] [draw=DIR]
          [RUNTIME OPTIONS] [outputs=embedding,cam]
                                     run an exported model with onnxruntime; one JSON line per image
                                     (masks=: segmentation mask PNGs; draw=: images with detected boxes;
                                     outputs=: extra outputs the export added with export.outputs)
  list    [KIND [NAME]] [--errors] [--refresh]
                                     list plugins (kinds: architecture, head, augmentation, transfer, dataset);
                                     --refresh rebuilds the plugin cache
  bench   inference model=PATH[,PATH...] [batch=1,32] [repeats=10] [providers=...] [RUNTIME OPTIONS]
          | discovery [packages=20] | transfer [repeats=5] OVERRIDES... | train [repeats=3] [batches=N] OVERRIDES...
                                     onnxruntime vs PyTorch on the same device, each export's precision;
                                     zoo list and a typo, cold and warm; head epochs of transfer=frozen vs cached;
                                     training images/s: whole step, data pipeline, model step per precision
  RUNTIME OPTIONS (predict, bench inference): threads=N spinning=auto|on|off optimization=all|extended|basic|disable
          optimized_model=FILE io_binding=BOOL device_output=BOOL cuda_graph=BOOL device_id=N prefer_nhwc=BOOL
          cudnn_conv_algo_search=EXHAUSTIVE|HEURISTIC|DEFAULT trt_cache=DIR trt_fp16=BOOL
  report  DIR                        a sweep's metrics, mean ± std over seeds (writes DIR/report.md, .csv, .png)
  augment output=FILE.png [samples=8] [variants=7] [OVERRIDES...]
                                     a grid of augmented training samples: what the model will see
  explain METHOD run=DIR|checkpoint=FILE output=DIR [input=FILE_OR_DIR] [samples=8] [PARAM=VALUE...]
                                     pictures of what a trained model sees (zoo list interpretation)
  new-plugin NAME [output=DIR]       write a plugin package skeleton (zoo-NAME) that passes its own test

example: zoo train data=digits model=lenet5 head.dropout=0.2 trainer.max_epochs=10 hydra.run.dir=runs/lenet
"""

KIND_ALIASES = {
    "interpretations": "interpretation",
    "explain": "interpretation",
    "model": "architecture",
    "models": "architecture",
    "architectures": "architecture",
    "heads": "head",
    "aug": "augmentation",
    "augmentations": "augmentation",
    "data": "dataset",
    "datasets": "dataset",
    "transfers": "transfer",
}


def names(value: str) -> list[str]:
    """A list of names on the command line: `embedding,cam` or Hydra's `[embedding,cam]`."""
    return [v.strip() for v in value.strip().removeprefix("[").removesuffix("]").split(",") if v.strip()]


def parse_kv(args: list[str], allowed: dict[str, Any], command: str) -> dict:
    """key=value arguments checked against `allowed` (name -> type, or `Annotated[int, Range(...)]` checked as a
    plugin parameter is: in range, int64, finite), with close matches."""
    from zoo.plugin.registry import param

    out = {}
    for a in args:
        key, sep, value = a.partition("=")
        key = key.removeprefix("export.") if command == "export" else key
        if not sep:
            raise ZooError(f"zoo {command}: expected key=value, got {a!r}; keys: {', '.join(allowed)}")
        if key not in allowed:
            raise unknown(f"argument for zoo {command}", key, allowed)
        kind = allowed[key]
        base = typing.get_args(kind)[0] if typing.get_origin(kind) is Annotated else kind
        try:
            out[key] = base(value)
        except ValueError:
            raise ZooError(f"zoo {command}: {key}={value!r} is not a valid {base.__name__}") from None
        if base is not kind:
            out[key] = param(key, kind, where=f"zoo {command}").check(out[key], key)
    return out


COUNT = Annotated[int, Range(1)]  # a batch, a number of results or samples: at least one


# ---- train -----------------------------------------------------------------------------------


def cmd_train(argv: list[str]) -> int:
    """zoo train [HYDRA FLAGS] OVERRIDES...: see zoo.cli.train."""
    from zoo.cli.train import train_command
    from zoo.plugin import catalog

    catalog.serve()  # composing and checking need plugins' declarations only; building imports their code

    return train_command(argv)


# ---- export / predict ------------------------------------------------------------------------


def cmd_export(argv: list[str]) -> int:
    """zoo export checkpoint=PATH output=DIR."""
    kv = parse_kv(
        argv,
        {
            "checkpoint": str,
            "output": str,
            "opset": int,
            "parity_tolerance": float,
            "parity_mismatch": float,
            "parity_samples": int,
            "input": str,
            "precision": str,
            "max_metric_drop": float,
            "calibration_samples": int,
            "calibration_method": str,
            "outputs": names,
        },
        "export",
    )
    if "checkpoint" not in kv:
        raise ZooError("zoo export needs checkpoint=PATH (a .pt file or a run directory)")
    checkpoints = [c for c in kv.pop("checkpoint").split(",") if c]
    if not checkpoints:
        raise ZooError("zoo export needs checkpoint=PATH (a .pt file or a run directory), got an empty one")
    ckpt = Path(checkpoints[0])
    run_dir = ckpt if ckpt.is_dir() else ckpt.parent.parent
    output = Path(kv.pop("output", Path("exports") / (run_dir.name + ("_ensemble" if len(checkpoints) > 1 else ""))))
    from zoo.deploy.export import export, export_ensemble

    card = export(ckpt, output, kv) if len(checkpoints) == 1 else export_ensemble(checkpoints, output, kv)
    worst = max(card["parity"]["max_abs_diff"].values())
    print(
        json.dumps(
            {
                "onnx": str(output / "model.onnx"),
                "card": str(output / "model.json"),
                "task": card["task"],
                "opset": card["onnx"]["opset"],
                "parity_max_abs_diff": worst,
                "parity_inputs": card["parity"]["inputs"],
                "precision": card["precision"]["precision"],
                **({"metric": card["precision"]["metric"]} if "metric" in card["precision"] else {}),
            }
        )
    )
    return 0


def runtime_kv(argv: list[str], allowed: dict[str, type], command: str) -> tuple[dict, dict]:
    """`key=value` arguments: the command's own (`allowed`) and the runtime's session options (zoo.runtime's
    RuntimeOptions: threads=, io_binding=, cuda_graph=, ...), the same keys for `zoo predict` and `zoo bench
    inference`; `provider=` is `providers=`. Returns (own, runtime options as strings: zoo.runtime checks them)."""
    from zoo.runtime import OPTION_NAMES

    kv = parse_kv(argv, {**allowed, "providers": str, "provider": str, **dict.fromkeys(OPTION_NAMES, str)}, command)
    if "provider" in kv:
        kv["providers"] = kv.pop("provider")
    options = {k: kv.pop(k) for k in OPTION_NAMES if k in kv}
    return kv, options


def cmd_predict(argv: list[str]) -> int:
    """zoo predict model=PATH input=FILE_OR_DIR: one JSON line per image, onnxruntime only."""
    kv, options = runtime_kv(
        argv,
        {"model": str, "input": str, "topk": COUNT, "batch": COUNT, "masks": str, "draw": str, "outputs": names},
        "predict",
    )
    for need in ("model", "input"):
        if need not in kv:
            raise ZooError(f"zoo predict needs {need}=PATH")
    from zoo.runtime import Model, list_images

    model = Model(kv["model"], kv.get("providers", "auto"), **options)
    model.check_extras(kv.get("outputs", []))  # embedding, cam: extra outputs the export added
    files = list_images(kv["input"])
    # what the model gives is declared by its outputs' roles (zoo.tasks), whatever the head named them
    if "masks" in kv and "mask" not in model.roles:
        raise ZooError(f"masks=DIR writes segmentation masks, but this {model.task} model gives no mask output")
    if "draw" in kv and "boxes" not in model.roles:
        raise ZooError(f"draw=DIR draws detected boxes, but this {model.task} model gives no boxes output")
    errors: list[str] = []  # an unreadable or refused image is one line; the others are still predicted
    for r in model.predict_files(
        files,
        topk=kv.get("topk", 5),
        batch_size=kv.get("batch", 32),
        masks_dir=kv.get("masks"),
        draw_dir=kv.get("draw"),
        errors=errors if len(files) > 1 else None,
        extras=kv.get("outputs", []),
    ):
        print(json.dumps(r))
    for e in errors:
        print(f"zoo: error: {e}", file=sys.stderr)
    return 2 if errors else 0


def cmd_verify(argv: list[str]) -> int:
    """zoo verify EXPORT_DIR: the export's golden vectors through this machine's runtime; one line per failure."""
    if len(argv) != 1 or "=" in argv[0]:
        raise ZooError("zoo verify needs one export folder, e.g. zoo verify exports/demo")
    from zoo.deploy.verify import verify

    failures, checked = verify(argv[0])
    for f in failures:
        print(f"zoo: verify: {f}", file=sys.stderr)
    print(f"{checked} golden sample(s) checked, {len(failures)} failure(s)")
    return 2 if failures else 0


def predict_main(argv: list[str] | None = None) -> int:
    """The `zoo-predict` console script (`zoo predict`), in the full install and in the runtime-only one."""
    return main(["predict", *(sys.argv[1:] if argv is None else argv)])


# ---- list ------------------------------------------------------------------------------------


def cmd_list(argv: list[str]) -> int:
    """A table of plugins: kind, name, summary, package; or one plugin's parameters."""
    from zoo.plugin import catalog, discovery, registry

    show_errors, refresh = "--errors" in argv, "--refresh" in argv
    argv = [a for a in argv if a not in ("--errors", "--refresh")]
    kinds = list(registry.KINDS)
    if argv:
        kind = KIND_ALIASES.get(argv[0], argv[0])
        if kind not in registry.registries:
            raise unknown("plugin kind", argv[0], kinds + list(KIND_ALIASES))
        kinds = [kind]
    catalog.serve(refresh)  # from the plugin cache: no plugin module, no torch
    if len(argv) >= 2:
        p = registry.get(kinds[0], argv[1])
        print(f"{p.kind} {p.name}  ({p.package}, {p.module})\n  {p.summary}")
        if p.tasks:
            print(f"  tasks: {', '.join(p.tasks)}")
        if p.min_size() is not None:
            print(f"  min input size: {p.min_size()}x{p.min_size()} (with the defaults)")
        for prm in p.params:
            default = "required" if prm.default is registry.REQUIRED else json.dumps(prm.default)
            print(f"  {prm.name:<18} {prm.describe():<34} default {default}")
        return 0
    rows = [(p.kind, p.name, p.summary, p.package) for k in kinds for p in registry.registries[k]]
    widths = [max(len(r[i]) for r in rows + [("kind", "name", "", "package")]) for i in range(4)]
    summary_w = max(20, min(90, 160 - widths[0] - widths[1] - widths[3]))
    print(f"{'kind':<{widths[0]}}  {'name':<{widths[1]}}  {'summary':<{summary_w}}  package")
    for kind, name, summary, package in rows:
        s = summary if len(summary) <= summary_w else summary[: summary_w - 3] + "..."
        print(f"{kind:<{widths[0]}}  {name:<{widths[1]}}  {s:<{summary_w}}  {package}")
    if discovery.errors:
        print(
            f"\n{len(discovery.errors)} plugin package(s) failed to load"
            + ("" if show_errors else "; see: zoo list --errors")
        )
        if show_errors:
            for e in discovery.errors:
                print(f"\n--- {e.package} ({e.entry_point}): {e.error}\n{e.traceback}")
    return 0


# ---- bench -----------------------------------------------------------------------------------


def cmd_bench(argv: list[str]) -> int:
    """zoo bench inference|discovery|transfer: side-by-side measurements in one run, reported as ratios."""
    benches = ("inference", "discovery", "transfer", "train")
    if not argv or argv[0] not in benches:
        raise (
            unknown("benchmark", argv[0] if argv else "", benches)
            if argv
            else ZooError(f"zoo bench needs a benchmark: {', '.join(benches)}")
        )
    if argv[0] == "discovery":
        kv = parse_kv(
            argv[1:],
            {"packages": Annotated[int, Range(1, 10_000)], "repeats": Annotated[int, Range(1, 1000)]},
            "bench discovery",
        )
        from zoo.bench import discovery

        for line in discovery(kv.get("packages", 20), kv.get("repeats", 5)):
            print(line)
        return 0
    if argv[0] == "train":
        own = [a for a in argv[1:] if a.split("=")[0] in ("repeats", "batches")]
        kv = parse_kv(own, {"repeats": int, "batches": int}, "bench train")
        from zoo.bench import train

        for line in train([a for a in argv[1:] if a not in own], kv.get("repeats", 3), kv.get("batches")):
            print(line)
        return 0
    if argv[0] == "transfer":
        own = [a for a in argv[1:] if a.split("=")[0] == "repeats"]
        kv = parse_kv(own, {"repeats": Annotated[int, Range(1, 1000)]}, "bench transfer")
        from zoo.bench import transfer

        for line in transfer([a for a in argv[1:] if a not in own], kv.get("repeats", 5)):
            print(line)
        return 0
    kv, options = runtime_kv(
        argv[1:], {"model": str, "batch": str, "repeats": Annotated[int, Range(1, 100_000)]}, "bench inference"
    )
    if "model" not in kv:
        raise ZooError("zoo bench inference needs model=DIR/model.onnx[,DIR2/model.onnx...] (from zoo export)")
    from zoo.bench import inference, int_list

    models = [m for m in kv["model"].split(",") if m]
    batches = int_list(kv.get("batch", "1,32"), "batch")
    for line in inference(models, batches, kv.get("repeats", 10), kv.get("providers", "auto"), options):
        print(line)
    return 0


def cmd_report(argv: list[str]) -> int:
    """zoo report DIR: a sweep's metrics, mean ± std over seeds; writes DIR/report.md, report.csv, report.png."""
    if len(argv) != 1 or "=" in argv[0]:
        raise ZooError("zoo report needs one sweep directory, e.g. zoo report runs/multirun/2026-11-24/10-00-00")
    from zoo.report.visual import report

    md, table = report(argv[0])
    root = Path(argv[0])
    for name, text in (("report.md", md), ("report.csv", table)):
        tmp = root / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(root / name)
    from zoo.report.figures import sweep_curves

    picture = sweep_curves(root)
    print(md, end="")
    print(f"\nwritten: {root / 'report.md'}, {root / 'report.csv'}, {picture}")
    return 0


def cmd_explain(argv: list[str]) -> int:
    """zoo explain METHOD run=DIR|checkpoint=FILE output=DIR [input=...] [samples=N] [PARAM=VALUE...]."""
    from zoo.plugin import registry

    if not argv or "=" in argv[0]:
        raise ZooError("zoo explain needs a METHOD first, e.g. zoo explain gradcam run=runs/demo output=explain/")
    plugin = registry.get("interpretation", argv[0])
    own = {"run": str, "checkpoint": str, "output": str, "input": str, "samples": COUNT}
    kv = parse_kv([a for a in argv[1:] if a.partition("=")[0] in own], own, "explain")
    params = dict(a.partition("=")[::2] for a in argv[1:] if a.partition("=")[0] not in own)
    params = {k: _parse_value(v) for k, v in params.items()}
    source = kv.get("run") or kv.get("checkpoint")
    if not source or "output" not in kv:
        raise ZooError("zoo explain needs run=DIR (or checkpoint=FILE) and output=DIR")
    from zoo.report.explain import explain

    record = explain(plugin.name, params, source, kv.get("input"), kv.get("samples", 8), kv["output"])
    print(
        json.dumps(
            {k: record[k] for k in ("method", "task", "files")} | {"summary": str(Path(kv["output"]) / "summary.json")}
        )
    )
    return 0


def _parse_value(text: str):
    """A PARAM=VALUE of zoo explain as YAML reads it (numbers, booleans, lists), so plugins get typed values."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def cmd_augment(argv: list[str]) -> int:
    """zoo augment output=FILE.png [samples=8] [variants=7] [OVERRIDES...]: a grid of augmented training samples."""
    own = [a for a in argv if a.split("=")[0] in ("output", "samples", "variants")]
    kv = parse_kv(
        own,
        {"output": str, "samples": Annotated[int, Range(1, 256)], "variants": Annotated[int, Range(0, 64)]},
        "augment",
    )
    if "output" not in kv or not kv["output"].lower().endswith(".png"):
        raise ZooError("zoo augment needs output=FILE.png")
    from zoo.report.visual import augment_grid

    image = augment_grid([a for a in argv if a not in own], kv.get("samples", 8), kv.get("variants", 7))
    out = Path(kv["output"])
    make_folder(out.parent)
    tmp = out.with_name(f".{out.name}.tmp.png")
    image.save(tmp)
    tmp.replace(out)
    print(f"wrote {out}: {image.size[0]}x{image.size[1]} (each row: the image as loaded, then augmented variants)")
    return 0


def cmd_new_plugin(argv: list[str]) -> int:
    """zoo new-plugin NAME [output=DIR]: write a plugin package skeleton."""
    if not argv or "=" in argv[0]:
        raise ZooError("zoo new-plugin needs a NAME, e.g. zoo new-plugin acme")
    kv = parse_kv(argv[1:], {"output": str}, "new-plugin")
    from zoo.plugin.scaffold import new_plugin

    path = new_plugin(argv[0], kv.get("output"))
    print(f"wrote {path}/: pip install {path} && zoo list architecture   (its test: cd {path} && pytest)")
    return 0


COMMANDS = {
    "train": cmd_train,
    "export": cmd_export,
    "predict": cmd_predict,
    "verify": cmd_verify,
    "list": cmd_list,
    "bench": cmd_bench,
    "new-plugin": cmd_new_plugin,
    "report": cmd_report,
    "augment": cmd_augment,
    "explain": cmd_explain,
}


def main(argv: list[str] | None = None) -> int:
    """The `zoo` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] in ("--version", "-V"):
        from zoo.version import __version__

        print(f"zoo {__version__}")
        return 0
    command = COMMANDS.get(argv[0])
    if command is None:
        hint = close_matches(argv[0], COMMANDS)
        print(
            f"zoo: error: unknown command {argv[0]!r}"
            + (f"; did you mean {hint[0]!r}?" if hint else "")
            + " see: zoo --help",
            file=sys.stderr,
        )
        return 2
    forget_created()
    try:
        code = command(argv[1:]) or 0
    except ZooError as e:
        return report_failure(f"zoo: error: {e}", e, 2)
    except OSError as e:  # a path the system refuses: too long, not permitted, a folder where a file belongs
        return report_failure(f"zoo: error: {describe_os_error(e, argv[1:])}", e, 2)
    except KeyboardInterrupt:
        print("zoo: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug (zoo's or a library's): still one line, and nothing half-written stays
        return report_failure(internal_error_line(argv[0], e), e, INTERNAL_ERROR)
    forget_created()
    return code


INTERNAL_ERROR = 3  # exit code of a failure that is zoo's (or a plugin's) fault, not the input's (2)


def internal_error_line(command: str, e: BaseException) -> str:
    """The one line of a failure that is a bug, not bad input: the exception's type and first line."""
    first = (str(e).strip().splitlines() or [""])[0][:300]
    what = f"{type(e).__name__}: {first}" if first else type(e).__name__
    return f"zoo: internal error in zoo {command}: {what}; ZOO_DEBUG=1 shows the traceback"


def report_failure(line: str, e: BaseException, code: int) -> int:
    """A failed command: remove the folders it created (now empty), print one line (and, with ZOO_DEBUG=1, the
    traceback with its causes first); return the exit code."""
    remove_created()
    if os.environ.get("ZOO_DEBUG", "").lower() in ("1", "true", "yes"):
        import traceback

        traceback.print_exception(e)  # a plugin's own exception is its cause
    print(one_line(line), file=sys.stderr)
    return code


# characters that end a line for str.splitlines (and terminals), which a message may hold inside a file name
LINE_BREAKS = re.compile("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


def one_line(text: str) -> str:
    """A message as one line: its own line breaks become spaces, those inside names (a file called 'a\x85b')
    are escaped."""
    text = re.sub(r"\s*\n\s*", " ", text.strip())
    return LINE_BREAKS.sub(lambda m: ascii(m.group())[1:-1], text)


if __name__ == "__main__":
    sys.exit(main())
