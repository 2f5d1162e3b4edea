"""plots: each figure is written as a PNG of a sensible size."""
import numpy as np
import pytest

pytest.importorskip("matplotlib")

from nn3 import layers, plots, presets, train  # noqa: E402


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
    loop = train.fit(net, train.SGDConfig(epochs=2, eta=0.1, l2="batch", drop_remainder=True), (x, y), (x, y), (x, y))
    plots.learning_curves(loop.history, tmp_path / "c.png")
    wrong = plots.misclassified(net, (x, y), tmp_path / "m.png")
    assert wrong == int(np.sum(train.predict(net, x) != y))
    assert plots.filters(net, tmp_path / "f.png") == 20
    for name in ("c.png", "m.png", "f.png"):
        _png(tmp_path / name)


def test_filters_needs_a_conv_layer(tmp_path):
    net = layers.build(layers.mlp_spec([784, 5, 10]))
    with pytest.raises(ValueError, match="no conv layer"):
        plots.filters(net, tmp_path / "f.png")
