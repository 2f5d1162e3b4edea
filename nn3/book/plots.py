"""PNG figures: learning curves, misclassified digits, first-layer filters (needs matplotlib).

    >>> from nn3.book import plots
    >>> plots.learning_curves(loop.history, "curves.png")          # doctest: +SKIP
    >>> fig = plots.curves_figure(loop.history)                     # doctest: +SKIP
    >>> plots.misclassified(net, test_data, "wrong.png", which="after epoch 29")  # doctest: +SKIP
    >>> plots.filters(net, "filters.png")                            # doctest: +SKIP
    >>> plots.wrong_digits(nets, test_data, "vote.png")             # doctest: +SKIP
    >>> plots.accuracy_grid([("ch1", history, 95.42)], "rows.png")  # doctest: +SKIP
    >>> plots.of_run("checkpoints/ch1-...", "figures")             # doctest: +SKIP

matplotlib is an optional extra (nn3's ``plot``); without it these raise a
ModuleNotFoundError whose one line names the extra (the CLI adds how to install it).
Every series is drawn with markers, only at the epochs where it was measured: a one-epoch
run shows its points, and training accuracy (measured when a run monitors it: ``nn3 train
ch3 --monitor training_accuracy``) stands beside validation accuracy, chapter 3's
overfitting picture.
Each PNG carries its title in its metadata too.
"""
from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from nn3.engine import evaluation
from nn3.engine.layers import Network
from nn3.engine.spec import has_conv
from nn3.runs import checkpoint, inspect
from nn3.runs import config as run_config
from nn3.store import metrics
from nn3.store.rundir import RunDir

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["accuracy_grid", "curves_figure", "filters", "learning_curves", "misclassified", "of_run", "wrong_digits"]


def _pyplot() -> Any:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ModuleNotFoundError("plots need matplotlib, which nn3's plot extra installs",
                                  name="matplotlib") from None
    return plt


def _series(ax: Any, history: list[dict], key: str, label: str, scale: float = 1.0) -> None:
    """``key`` of each record where it was measured, as a line with a marker at each point."""
    points = [(r["epoch"], r[key] * scale) for r in history if r.get(key) is not None]
    if points:
        ax.plot(*zip(*points), marker="o", markersize=4, label=label)


def curves_figure(history: list[dict], title: str | None = None) -> Figure:
    """The learning curves as a matplotlib figure: accuracies (%) and costs per epoch (from 0)."""
    plt = _pyplot()
    fig, (acc, cost) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("training", "validation", "test"):
        _series(acc, history, f"{key}_accuracy", key, 100.0)
    _series(cost, history, "train_loss", "during training")
    _series(cost, history, "training_cost", "training (monitor)")
    _series(cost, history, "validation_cost", "validation (monitor)")
    for ax, what in ((acc, "accuracy (%)"), (cost, "mean cost")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(what)
        if ax.get_lines():
            ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _save(plt: Any, fig: Figure, path: str | os.PathLike[str], title: str | None) -> None:
    fig.savefig(path, dpi=100, metadata={"Title": title} if title else None)
    plt.close(fig)


def learning_curves(history: list[dict], path: str | os.PathLike[str], title: str | None = None) -> None:
    """``curves_figure`` written as a PNG."""
    plt = _pyplot()
    _save(plt, curves_figure(history, title), path, title)


def misclassified(net: Network, data: Any, path: str | os.PathLike[str], n: int = 24,
                  which: str | None = None) -> int:
    """The first ``n`` misclassified images with their label and prediction; returns how many were wrong.

    ``which`` names the network (e.g. "after epoch 29 (step 150000)"); it goes into the title.
    """
    x, y = evaluation.as_arrays(data, net.n_in)
    return _wrong(x, y, evaluation.predict(net, x), path, n, which and f"the network {which}")


def wrong_digits(nets: Network | Sequence[Network], data: Any, path: str | os.PathLike[str], n: int = 60,
                 who: str | None = None) -> int:
    """``misclassified`` of a network, or of the plurality vote of a list of them (a member
    run's), showing up to ``n`` (the book shows its vote's 33 misses all at once); ``who``
    ends the title ("the vote of 5 at its best epoch")."""
    if isinstance(nets, Network):
        x, y = evaluation.as_arrays(data, nets.n_in)
        return _wrong(x, y, evaluation.predict(nets, x), path, n, who)
    x, y = evaluation.as_arrays(data, nets[0].n_in)
    return _wrong(x, y, evaluation.vote(nets, x), path, n, who)


def _wrong(x: np.ndarray, y: np.ndarray, pred: np.ndarray, path: str | os.PathLike[str], n: int,
           who: str | None) -> int:
    plt = _pyplot()
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
    title = f"{len(wrong)} of {len(y)} misclassified (label -> prediction)"
    if who:
        title = f"{title}, {who}"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(plt, fig, path, title)
    return int(len(wrong))


def accuracy_grid(panels: Sequence[tuple[str, list[dict], float]], path: str | os.PathLike[str],
                  title: str | None = None) -> pathlib.Path:
    """One small panel per run: validation and test accuracy (%) against the epochs, and a
    dashed line at the figure to compare with. ``panels``: [(title, history, figure %)];
    a member run's history draws its members' test accuracy thin under the vote's."""
    plt = _pyplot()
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 3.4, rows * 2.6), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (name, history, figure) in zip(axes.flat, panels):
        for i in range(len(history[0].get("members") or ())):
            points = [(r["epoch"], 100 * r["members"][i]["test_accuracy"]) for r in history
                      if r.get("members") and r["members"][i] is not None]
            ax.plot(*zip(*points), color="0.7", linewidth=0.8)
        _series(ax, history, "validation_accuracy", "validation", 100.0)
        _series(ax, history, "test_accuracy", "test", 100.0)
        ax.axhline(figure, color="k", linestyle="--", linewidth=0.8, label="book")
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes.flat[0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(plt, fig, path, title)
    return pathlib.Path(path)


def filters(net: Network, path: str | os.PathLike[str]) -> int:
    """The first conv layer's filters as images; returns how many were drawn."""
    plt = _pyplot()
    conv = next((layer for layer in net.layers if hasattr(layer, "poolsize")), None)
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
    _save(plt, fig, path, None)
    return len(w)


def of_run(run_dir: str | os.PathLike[str], out: str | os.PathLike[str]) -> dict:
    """The PNGs of ``nn3 plot``, written in ``out``: curves.png from the run's metrics log,
    misclassified.png of its newest intact checkpoint's test digits, and filters.png for a
    conv net.

    Returns a dict: measured (whether the log holds training accuracies), wrong (how many
    test digits were misclassified), which (the checkpoint, in words), filters (whether
    filters.png was written).
    """
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run = RunDir.open(run_dir, read_only=True)
    try:
        config = run.config
        if run_config.member_seeds(config) is not None:
            raise ValueError(f"{run_dir}: plots of a member run are not built yet (its metrics.jsonl holds them)")
        got = inspect.restore(run)
    finally:
        run.close()
    step, net, loop = got.step, got.nets[0], got.state
    history = metrics.read(run_dir)
    learning_curves(history, out / "curves.png", title=config.get("preset"))
    which = f"{checkpoint.position(loop)} (step {step})"
    wrong = misclassified(net, run_config.load_splits(config)[2], out / "misclassified.png", which=which)
    conv = has_conv(net.spec)
    if conv:
        filters(net, out / "filters.png")
    return {"measured": any(r.get("training_accuracy") is not None for r in history), "wrong": wrong,
            "which": which, "filters": conv}
