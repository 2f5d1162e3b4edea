"""Seconds per training epoch of the chapter-6 conv nets, one formulation of the conv against another.

Each row is the whole compiled training step (``nn3.engine.trainer.Trainer.run_epoch``: one
``lax.scan`` over mini-batches of 10) on the first ``--n`` MNIST training images,
scaled to 50,000. The formulations of ``nn3.engine.conv`` are compiled side by side in one
process and timed in interleaved rounds, so that a change in the machine's load hits
them all alike; read the ratios. ``cpu`` is the process's CPU time (all threads) per epoch.

- ``fused``: ``conv.conv_pool`` with its hand-written backward pass (CPU default);
- ``im2col``: ``max_pool(conv_valid(x, w))`` differentiated by JAX, im2col + matmul;
- ``xla``: XLA's convolution (the default off CPU);
- ``previous``: nn3's code before bench_conv existed: im2col by 25 slices for every
  layer and ``jnp.max`` pooling, all differentiated by JAX (kept here to compare).

Synopsis::

    python bench/bench_conv.py                          # dbl_conv_relu, basic_conv, shallow
    python bench/bench_conv.py --nets dbl --forms fused previous --n 2000 --rounds 5
    python bench/bench_conv.py --json bench/out/conv.json
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import pickle
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from nn3.engine import conv, layers  # noqa: E402
from nn3.engine.device_data import DeviceData  # noqa: E402
from nn3.engine.settings import SGDConfig  # noqa: E402
from nn3.engine.trainer import Trainer  # noqa: E402
from nn3.engine.activations import FUNCTIONS  # noqa: E402

FULL_EPOCH = 50_000
FORMS = ("fused", "im2col", "xla", "previous")


def load():
    """The 1-minute load average, rounded; None on Windows, which has none."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def _conv_layer(nf, c, size, act):
    return {"type": "ConvPoolLayer", "filter_shape": [nf, c, 5, 5], "image_shape": [10, c, size, size],
            "poolsize": [2, 2], "activation_fn": act}


def _fc(n_in, n_out, act):
    return {"type": "FullyConnectedLayer", "n_in": n_in, "n_out": n_out, "activation_fn": act, "p_dropout": 0.0}


def _softmax(n_in):
    return {"type": "SoftmaxLayer", "n_in": n_in, "n_out": 10, "p_dropout": 0.0}


NETS = {  # chapter 6's nets, as network3 builds them
    "dbl": {"layers": [_conv_layer(20, 1, 28, "ReLU"), _conv_layer(40, 20, 12, "ReLU"),
                       _fc(640, 100, "ReLU"), _softmax(100)], "cost": "LogLikelihoodCost"},
    "basic": {"layers": [_conv_layer(20, 1, 28, "sigmoid"), _fc(2880, 100, "sigmoid"), _softmax(100)],
              "cost": "LogLikelihoodCost"},
    "shallow": {"layers": [_fc(784, 100, "sigmoid"), _softmax(100)], "cost": "LogLikelihoodCost"},
}
NET_NAMES = {"dbl": "dbl_conv_relu", "basic": "basic_conv", "shallow": "shallow (FC 100 + softmax)"}


def previous_conv_pool(x, w, poolsize):
    """nn3's conv + pool before this bench: 25 shifted slices, one matmul, jnp.max pooling."""
    nf, c, fh, fw = w.shape
    oh, ow = x.shape[1] - fh + 1, x.shape[2] - fw + 1
    p = jnp.concatenate([x[:, i:i + oh, j:j + ow, :] for i in range(fh) for j in range(fw)], axis=-1)
    z = p @ w[:, :, ::-1, ::-1].transpose(2, 3, 1, 0).reshape(fh * fw * c, nf)
    ph, pw = poolsize
    b, h2, w2 = z.shape[0], oh // ph, ow // pw
    return z[:, :h2 * ph, :w2 * pw, :].reshape(b, h2, ph, w2, pw, nf).max(axis=(2, 4))


def _pooled(form, x, w, poolsize):
    if form == "previous":
        return previous_conv_pool(x, w, poolsize)
    return conv.conv_pool(x, w, poolsize, form)


def _bench_call(self, x, key=None):
    """ConvPoolLayer.__call__ with the conv + pool of the formulation named on the layer."""
    del key
    if x.ndim == 2:
        _, c, h, w = self.image_shape
        x = x.reshape(x.shape[0], c, h, w).transpose(0, 2, 3, 1)  # NCHW rows -> NHWC
    pooled = _pooled(self.bench_form, x, self.w[...], self.poolsize)
    return FUNCTIONS[self.activation_fn](pooled + self.b[...][None, None, None, :])


def check_shim(x) -> None:
    """The bench's layer call must give what nn3's own ConvPoolLayer gives (same weights)."""
    net = layers.build(NETS["dbl"], seed=0)
    want = np.asarray(net(jnp.asarray(x[:10])))
    original = layers.ConvPoolLayer.__call__
    try:
        layers.ConvPoolLayer.__call__ = _bench_call
        for layer in net.layers[:2]:
            layer.bench_form = "fused"
        got = np.asarray(net(jnp.asarray(x[:10])))
    finally:
        layers.ConvPoolLayer.__call__ = original
    if not np.allclose(got, want, rtol=1e-4, atol=1e-5):
        raise SystemExit("bench_conv: its ConvPoolLayer call no longer matches nn3.engine.layers; update _bench_call")


def make_trainer(net_key, form, x, y, args):
    """A Trainer whose conv layers use ``form``; compiled by one run_epoch (returns its seconds)."""
    net = layers.build(NETS[net_key], seed=args.seed)
    for layer in net.layers:
        if isinstance(layer, layers.ConvPoolLayer):
            layer.bench_form = form  # static: a graphdef, hence a compiled step, per formulation
    cfg = SGDConfig(epochs=1, mini_batch_size=10, eta=args.eta, lmbda=0.1, l2="batch",
                    shuffle=False, drop_remainder=True, chunks=1, seed=args.seed)
    tr = Trainer([net], [cfg], DeviceData.from_arrays(x, y))
    start = time.perf_counter()
    tr.run_epoch(0, 0, args.eta)
    return tr, time.perf_counter() - start


def bench_net(net_key, forms, x, y, args) -> dict:
    rows = {}
    for form in forms:
        tr, first = make_trainer(net_key, form, x, y, args)
        rows[form] = {"trainer": tr, "compile_s": first, "wall": [], "cpu": []}
    scale = FULL_EPOCH / (len(x) // 10 * 10)
    for _ in range(args.rounds):
        for form, row in rows.items():
            wall, cpu = time.perf_counter(), time.process_time()
            losses = row["trainer"].run_epoch(1, 0, args.eta).losses[0]  # numpy: synchronous
            row["wall"].append((time.perf_counter() - wall) * scale)
            row["cpu"].append((time.process_time() - cpu) * scale)
            row["final_loss"] = float(np.mean(losses[-50:]))
    out = {}
    for form, row in rows.items():
        out[form] = {"s_per_epoch_min": min(row["wall"]), "s_per_epoch_median": float(np.median(row["wall"])),
                     "cpu_s_per_epoch_min": min(row["cpu"]), "compile_plus_one_s": row["compile_s"],
                     "wall_s_per_epoch": row["wall"], "loss_last_50": row["final_loss"]}
    return out


def print_net(name, res, ref) -> None:
    print(f"\n{name}: s/epoch (50,000 images), min and median of the rounds; ratio = row / {ref} (min)")
    print(f"  {'formulation':12s} {'min':>7s} {'median':>7s} {'ratio':>6s} {'cpu':>7s} {'cpu ratio':>9s} {'loss':>7s}")
    base = res.get(ref, next(iter(res.values())))
    for form, r in res.items():
        print(f"  {form:12s} {r['s_per_epoch_min']:7.2f} {r['s_per_epoch_median']:7.2f} "
              f"{r['s_per_epoch_min'] / base['s_per_epoch_min']:6.2f} {r['cpu_s_per_epoch_min']:7.2f} "
              f"{r['cpu_s_per_epoch_min'] / base['cpu_s_per_epoch_min']:9.2f} {r['loss_last_50']:7.4f}")


def load_train(data, n):
    """The first ``n`` training images and labels, from nn3.store.data or the pickle itself."""
    try:
        from nn3.store import data as nn3_data
        (x, y), _, _ = nn3_data.load_data(data)
    except ImportError:
        path = Path(data or os.environ.get("NN3_DATA_DIR", "data"))
        path = path / "mnist.pkl.gz" if path.is_dir() else path
        with gzip.open(path, "rb") as f:
            (x, y), _, _ = pickle.load(f, encoding="latin1")
    return np.asarray(x[:n], np.float32).reshape(-1, 784), np.asarray(y[:n]).reshape(-1)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nets", nargs="+", default=["dbl", "basic", "shallow"], choices=list(NETS))
    p.add_argument("--forms", nargs="+", default=list(FORMS), choices=FORMS)
    p.add_argument("--n", type=int, default=3000, help="training images per timed run (default 3000)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timed runs per formulation")
    p.add_argument("--eta", type=float, default=0.03)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None, help="mnist.pkl.gz or its folder (default: $NN3_DATA_DIR)")
    p.add_argument("--json", default=None, help="also write the results here")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    x, y = load_train(args.data, args.n)
    print(f"bench_conv: jax {jax.__version__} on {jax.default_backend()}, {os.cpu_count()} cores, "
          f"load {load()}, XLA_FLAGS={os.environ.get('XLA_FLAGS')!r}; "
          f"{len(x)} images x {args.rounds} rounds")
    check_shim(x)
    original = layers.ConvPoolLayer.__call__
    layers.ConvPoolLayer.__call__ = _bench_call
    results = {}
    try:
        for net_key in args.nets:
            forms = args.forms if net_key != "shallow" else ["(no conv)"]  # one row
            results[net_key] = bench_net(net_key, forms, x, y, args)
            print_net(NET_NAMES[net_key], results[net_key], "previous")
    finally:
        layers.ConvPoolLayer.__call__ = original
    print(f"\nload after: {load()}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=1), encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
