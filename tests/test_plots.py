"""plots: each figure is written as a PNG of a sensible size."""
import numpy as np
import pytest

pytest.importorskip("matplotlib")

from nn3.engine import evaluation, layers, train
from nn3.engine.settings import SGDConfig
from nn3.book import plots
from nn3.runs import presets  # noqa: E402
from nn3.engine.spec import mlp_spec  # noqa: E402


def _png(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 1000


def test_three_figures(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((40, 784), dtype=np.float32)
    y = rng.integers(0, 10, 40)
    spec = presets.with_mini_batch(presets.get("basic_conv").spec, 10)
    net = layers.build(spec, seed=0)
    cfg = SGDConfig(epochs=2, eta=0.1, l2="batch", drop_remainder=True)
    loop = train.fit_networks([net], [cfg], train.Splits((x, y), (x, y), (x, y))).loops[0]
    plots.learning_curves(loop.history, tmp_path / "c.png")
    wrong = plots.misclassified(net, (x, y), tmp_path / "m.png")
    assert wrong == int(np.sum(evaluation.predict(net, x) != y))
    assert plots.filters(net, tmp_path / "f.png") == 20
    for name in ("c.png", "m.png", "f.png"):
        _png(tmp_path / name)


def test_filters_needs_a_conv_layer(tmp_path):
    net = layers.build(mlp_spec([784, 5, 10]))
    with pytest.raises(ValueError, match="no conv layer"):
        plots.filters(net, tmp_path / "f.png")


def _drawn_at(fig, ax, x, y):
    """Whether anything but the axes' white background is drawn at data point (x, y)."""
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    px, py = ax.transData.transform((x, y))
    row, col = int(round(rgba.shape[0] - py)), int(round(px))
    return bool((rgba[row - 1:row + 2, col - 1:col + 2, :3] < 200).any())


def test_a_one_epoch_run_shows_its_points():
    history = [{"epoch": 0, "step": 10, "train_loss": 0.5, "validation_accuracy": 0.8, "test_accuracy": 0.7}]
    fig = plots.curves_figure(history)
    acc, cost = fig.axes
    assert _drawn_at(fig, acc, 0, 80.0) and _drawn_at(fig, acc, 0, 70.0)
    assert _drawn_at(fig, cost, 0, 0.5)


def test_training_accuracy_is_drawn_where_it_was_measured():
    history = [{"epoch": j, "validation_accuracy": 0.80 + j / 100, "train_loss": 1.0 - j / 10} for j in range(3)]
    history[0]["training_accuracy"], history[2]["training_accuracy"] = 0.90, 0.99  # not measured in epoch 1
    fig = plots.curves_figure(history)
    acc = fig.axes[0]
    assert [line.get_label() for line in acc.get_lines()] == ["training", "validation"]
    assert _drawn_at(fig, acc, 0, 90.0) and _drawn_at(fig, acc, 2, 99.0)
    assert list(acc.get_lines()[0].get_xdata()) == [0, 2]


def test_pngs_carry_their_title(tmp_path):
    from PIL import Image
    x = np.zeros((10, 784), np.float32)
    net = layers.build(mlp_spec([784, 5, 10]), seed=0)
    plots.misclassified(net, (x, np.arange(10)), tmp_path / "m.png", which="after epoch 3 (step 40)")
    with Image.open(tmp_path / "m.png") as im:
        assert im.text["Title"].endswith("misclassified (label -> prediction), the network after epoch 3 (step 40)")
