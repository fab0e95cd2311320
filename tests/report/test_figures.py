"""Pictures of a run: the curves, the confusion matrix and the worst-classified grid, drawn from known data."""

from __future__ import annotations

import numpy as np
from PIL import Image

from zoo.report.figures import confusion, curves, worst_classified

HISTORY = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.1 / e, "val_accuracy": 0.5 + 0.1 * e} for e in (1, 2, 3)]


def _size(path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_curves_show_the_monitored_metric_beside_the_loss(tmp_path):
    both = _size(curves(HISTORY, "accuracy", tmp_path / "a.png", "title"))
    loss_only = _size(curves(HISTORY, "loss", tmp_path / "b.png"))
    assert both[0] > 1.5 * loss_only[0]  # a second panel for the metric; none when the loss is what is monitored
    assert not list(tmp_path.glob(".*"))  # written through a temporary file, renamed


def test_confusion_matrix_of_many_classes_draws(tmp_path):
    m = np.diag(np.arange(1, 31)).tolist()  # 30 classes: no counts written in, still a readable picture
    assert _size(confusion(m, [f"class {i}" for i in range(30)], tmp_path / "c.png"))[0] >= 800


def test_worst_classified_are_those_whose_true_class_got_the_least(tmp_path, monkeypatch):
    import zoo.report.figures

    monkeypatch.setattr(zoo.report.figures, "WORST", 2)
    images = np.zeros((4, 1, 8, 8), dtype=np.float32)
    truth = np.array([0, 1, 0, 1])
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.5, 0.5]])
    shown = []
    original = zoo.report.figures._figure

    def spy(*size):
        fig = original(*size)
        shown.append(fig)
        return fig

    monkeypatch.setattr(zoo.report.figures, "_figure", spy)
    worst_classified(images, truth, probs, ["a", "b"], tmp_path / "w.png")
    titles = [ax.get_title() for ax in shown[0].axes if ax.get_title()]
    assert titles == ["true a (0.20)\nsaid b (0.80)", "true b (0.40)\nsaid a (0.60)"]


def test_curves_draw_the_monitored_metric_for_train_and_validation(tmp_path, monkeypatch):
    import zoo.report.figures

    shown = []
    original = zoo.report.figures._figure
    monkeypatch.setattr(zoo.report.figures, "_figure", lambda *size: shown.append(original(*size)) or shown[-1])
    history = [{**h, "train_accuracy": 0.6 + 0.1 * h["epoch"]} for h in HISTORY]
    curves(history, "accuracy", tmp_path / "c.png")
    metric_panel = shown[0].axes[1]
    lines = {line.get_label(): list(line.get_ydata()) for line in metric_panel.get_lines()}
    assert lines == {"train": [0.7, 0.8, 0.9], "validation": [0.6, 0.7, 0.8]}
