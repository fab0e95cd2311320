"""Embeddings: the penultimate features of a split (or any layer's output, `layer=NAME`, pooled to a vector),
projected to 2-D (PCA and t-SNE, scikit-learn) and coloured by label, with k-nearest-neighbour accuracy in
each space; and retrieval: the split's images nearest to each image explained.

An image's label is its class (classification), the class of its largest box (detection; "no object"
without one), or the class covering most of its pixels apart from the split's background, the class
covering most pixels over the whole split (segmentation)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import numpy as np
import torch
from torch import nn

from zoo import Range, ZooError, register
from zoo.data import loader
from zoo.deploy.graph import explained_forward
from zoo.errors import unknown
from zoo.model import Explainer
from zoo_plugins._shared import figure, label_of, show_image


@torch.no_grad()
def embed(model: nn.Module, images: torch.Tensor, layer: Optional[str] = None) -> np.ndarray:
    """The features of a batch: by default the penultimate ones, what enters the head's last linear layer, or
    (a head with none) the deepest feature map averaged over its pixels, the vectors `export.outputs=[embedding]`
    gives; or the output of the module `layer` names (its dotted path in the model), pooled to a vector."""
    model.eval()
    if layer is None:
        return explained_forward(model, images, embedding=True)[2].float().cpu().numpy()
    module = find_layer(model, layer, "explain.embeddings.layer")
    seen: list = []
    handle = module.register_forward_hook(lambda m, args, out: seen.append(out))
    try:
        model(images)
    finally:
        handle.remove()
    return pooled(seen[0] if seen else None, layer).float().cpu().numpy()


def find_layer(model: nn.Module, name: str, key: str) -> nn.Module:
    """The module at dotted path `name` in the model (`zoo list layers run=DIR` lists them); one line with close
    matches if there is none."""
    modules = {n: m for n, m in model.named_modules() if n}
    if name not in modules:
        raise unknown(f"layer for {key}", str(name), modules, see="zoo list layers run=DIR")
    return modules[name]


def pooled(out, name: str) -> torch.Tensor:
    """A layer's output as one vector per image: a feature map (N, C, H, W) averaged over its pixels, tokens
    (N, L, D) averaged over the tokens, a vector (N, D) as it is."""
    if out is None:
        raise ZooError(f"explain.embeddings.layer={name} is not run by the model's forward; pick another layer")
    if not isinstance(out, torch.Tensor) or out.ndim < 2:
        raise ZooError(
            f"explain.embeddings.layer={name} gives a {type(out).__name__}, not a batch of features; pick a layer "
            "that gives a tensor (see: zoo list layers run=DIR)"
        )
    if out.ndim == 4:
        return out.mean((2, 3))
    return out.mean(1) if out.ndim == 3 else out.flatten(1)


def knn_accuracy(points: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    """Accuracy of a k-nearest-neighbour vote among the other points, 5-fold (how well classes separate)."""
    from sklearn.model_selection import KFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    if len(points) < 10:
        return float("nan")
    folds = KFold(5, shuffle=True, random_state=0)
    return float(cross_val_score(KNeighborsClassifier(min(k, len(points) // 2)), points, labels, cv=folds).mean())


def class_votes(y, classes: int) -> np.ndarray:
    """(B, classes) per image of a batch: its class one-hot (classification), its mask's pixel count per class
    (segmentation), its largest box's class one-hot (detection targets: a list of dicts)."""
    if isinstance(y, list):
        votes = np.zeros((len(y), classes))
        for i, t in enumerate(y):
            boxes = torch.as_tensor(t["boxes"]).reshape(-1, 4).float()
            if len(boxes):
                area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
                votes[i, int(torch.as_tensor(t["labels"]).reshape(-1)[area.argmax()])] = 1
        return votes
    y = torch.as_tensor(y).long()
    if y.ndim >= 2:
        return np.stack([np.bincount(m.reshape(-1), minlength=classes)[:classes] for m in y.numpy()])
    return np.eye(classes)[y.numpy()]


LEGEND = {"detection": "largest box's class", "segmentation": "main class\n(most pixels but\nbackground)"}


def _name(classes, label: int) -> str:
    return "no object" if label < 0 else label_of(classes, label)


class Embeddings(Explainer):
    """PCA and t-SNE of a split's embeddings, and nearest-neighbour retrieval."""

    def __init__(self, split: str, max_images: int, neighbours: int, perplexity: float, layer: Optional[str] = None):
        self.split, self.max_images, self.neighbours, self.perplexity = split, max_images, neighbours, perplexity
        self.layer = layer

    def points(self, subject) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
        """The split's embeddings (N, D), labels (N,; -1 for none) and images, up to max_images."""
        ds = getattr(subject.data(), self.split)
        feats, votes, images = [], [], []
        for x, y in loader(ds, 256, False, 0, 0):
            feats.append(embed(subject.model, x, self.layer))
            votes.append(class_votes(y, subject.info.num_classes))
            images.append(x)
            if sum(len(f) for f in feats) >= self.max_images:
                break
        if not feats:
            raise ZooError(f"explain.embeddings.split={self.split}: the split is empty")
        n = self.max_images
        votes = np.concatenate(votes)[:n]
        if subject.info.task == "segmentation":  # the split's background does not label an image with objects
            background = votes.sum(0).argmax()
            others = np.delete(np.arange(votes.shape[1]), background)
            votes[votes[:, others].sum(1) > 0, background] = 0
        labels = np.where(votes.sum(1) > 0, votes.argmax(1), -1)
        return np.concatenate(feats)[:n], labels.astype(np.int64), torch.cat(images)[:n]

    def explain(self, subject, output: Path) -> dict:
        from sklearn.decomposition import PCA
        from sklearn.manifold import TSNE

        feats, labels, images = self.points(subject)
        pca = PCA(2, random_state=0).fit_transform(feats)
        perplexity = min(self.perplexity, (len(feats) - 1) / 3)
        tsne = TSNE(2, perplexity=perplexity, init="pca", random_state=0).fit_transform(feats)
        scores = {
            "full": knn_accuracy(feats, labels),
            "pca": knn_accuracy(pca, labels),
            "tsne": knn_accuracy(tsne, labels),
        }
        classes = subject.info.classes
        fig = figure(12.0, 5.4)
        for ax, (name, xy) in zip(fig.subplots(1, 2), (("PCA", pca), ("t-SNE", tsne))):
            for c in np.unique(labels):
                ax.scatter(*xy[labels == c].T, s=8, alpha=0.7, label=_name(classes, int(c)), color=f"C{c % 10}")
            key = "pca" if name == "PCA" else "tsne"
            ax.set(title=f"{name}: 5-NN accuracy {scores[key]:.3f}", xticks=[], yticks=[])
        fig.legend(
            *fig.axes[0].get_legend_handles_labels(),
            loc="outside right center",
            markerscale=2,
            fontsize=8,
            title=LEGEND.get(subject.info.task, "class"),
            title_fontsize=8,
        )
        fig.suptitle(
            f"{self.layer or 'penultimate'} features of {len(feats)} {self.split} images ({feats.shape[1]} dimensions; "
            f"5-NN accuracy there {scores['full']:.3f})"
        )
        fig.savefig(output / "embeddings.png")
        self.retrieval(subject, feats, labels, images, output / "retrieval.png")
        return {
            "split": self.split,
            "layer": self.layer or "penultimate",
            "points": len(feats),
            "dimensions": int(feats.shape[1]),
            "knn_accuracy": {k: round(v, 4) for k, v in scores.items()},
        }

    def retrieval(self, subject, feats: np.ndarray, labels: np.ndarray, images: torch.Tensor, path: Path) -> None:
        """Each explained image and its nearest split images by cosine similarity of the embeddings."""
        queries = embed(subject.model, subject.images, self.layer)
        unit = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
        q = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
        nearest = np.argsort(-(q @ unit.T), axis=1)[:, : self.neighbours]
        classes = subject.info.classes
        fig = figure(1.8 * (self.neighbours + 1), 2.0 * len(q))
        axes = fig.subplots(len(q), self.neighbours + 1, squeeze=False)
        for i, row in enumerate(nearest):
            show_image(axes[i, 0], subject.images[i].numpy(), f"{subject.names[i]}")
            for j, k in enumerate(row):
                show_image(axes[i, j + 1], images[k].numpy(), _name(classes, int(labels[k])))
        fig.suptitle(f"nearest {self.split} images in embedding space (cosine), labelled")
        fig.savefig(path)


@register.interpretation("embeddings", tasks=("classification", "segmentation", "detection"))
def embeddings(
    split: Literal["train", "val", "test"] = "test",
    max_images: Annotated[int, Range(10, 20000)] = 2000,
    neighbours: Annotated[int, Range(1, 20)] = 5,
    perplexity: Annotated[float, Range(2, 100)] = 30.0,
    layer: Optional[str] = None,
) -> Explainer:
    """A split's features (penultimate, or layer=NAME pooled) in 2-D (PCA, t-SNE) by label, k-NN accuracy, retrieval."""
    return Embeddings(split, max_images, neighbours, perplexity, layer)
