"""PNG figures: learning curves, misclassified digits, first-layer filters (needs matplotlib).

    >>> from nn3 import plots
    >>> plots.learning_curves(loop.history, "curves.png")          # doctest: +SKIP
    >>> plots.misclassified(net, test_data, "wrong.png")            # doctest: +SKIP
    >>> plots.filters(net, "filters.png")                            # doctest: +SKIP

matplotlib is an optional extra (``pip install nn3[plot]``); without it these raise a
one-line error that says how to get it.
"""
from __future__ import annotations

import numpy as np

from nn3 import train


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError("plots need matplotlib: pip install 'nn3[plot]'") from None
    return plt


def learning_curves(history, path, title=None) -> None:
    """Accuracy per epoch (validation, test, training where measured), and the training loss."""
    plt = _pyplot()
    fig, (acc, loss) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [r["epoch"] for r in history]
    for key in ("training", "validation", "test"):
        vals = [r.get(f"{key}_accuracy") for r in history]
        if any(v is not None for v in vals):
            acc.plot(epochs, [100 * v if v is not None else np.nan for v in vals], label=key)
    acc.set_xlabel("epoch")
    acc.set_ylabel("accuracy (%)")
    acc.legend()
    loss.plot(epochs, [r.get("train_loss") for r in history])
    loss.set_xlabel("epoch")
    loss.set_ylabel("mean training cost")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def misclassified(net, data, path, n=24) -> int:
    """The first ``n`` misclassified images with their label and prediction; returns how many were wrong."""
    plt = _pyplot()
    x, y = train.as_arrays(data, net.n_in)
    pred = train.predict(net, x)
    wrong = np.flatnonzero(pred != y)
    shown = wrong[:n]
    cols = 8
    rows = max(1, -(-len(shown) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.2, rows * 1.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, shown):
        ax.imshow(x[i].reshape(28, 28), cmap="gray_r")
        ax.set_title(f"{y[i]} -> {pred[i]}", fontsize=8)
    fig.suptitle(f"{len(wrong)} of {len(y)} misclassified (label -> prediction)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return int(len(wrong))


def filters(net, path) -> int:
    """The first conv layer's filters as images; returns how many were drawn."""
    plt = _pyplot()
    conv = next((l for l in net.layers if hasattr(l, "poolsize")), None)
    if conv is None:
        raise ValueError("plots.filters: the network has no conv layer")
    w = np.asarray(conv.w[...])  # (n_filters, n_in_maps, h, w)
    cols = min(10, len(w))
    rows = -(-len(w) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols, rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, f in zip(axes.flat, w):
        ax.imshow(f[0], cmap="gray_r")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return len(w)
