"""PyTorch eager reference for dbl_conv_relu: the same net, step and evaluation, timed.

Run by ``bench/bench_torch.py`` with the Python of an environment that has torch (never
a dependency of nn3: ``python -m venv /tmp/tv && /tmp/tv/bin/pip install torch numpy``).
It prints one JSON line: seconds per 50,000-image training epoch (timed on ``--n``
images and scaled) and seconds to evaluate 20,000 images, as network3 does after each
epoch (validation and test), wall clock and the process's CPU time.

The arithmetic is network3's: a valid 5x5 convolution, 2x2 max-pooling, bias, ReLU
(bias and ReLU commute with the pooling), twice; a fully connected ReLU layer of 100;
softmax; mean log-likelihood plus 0.5*lmbda*sum(w^2)/num_batches; plain SGD, eta 0.03,
lmbda 0.1, mini-batches of 10 in order.

    /tmp/tv/bin/python bench/torch_reference.py --data ../shared/data/mnist.pkl.gz --n 2000
"""
from __future__ import annotations

import argparse
import gzip
import json
import pickle
import time

import numpy as np
import torch
import torch.nn.functional as F

FULL_EPOCH, EVAL_N, M = 50_000, 20_000, 10


def init(rng):
    """Weights as network3 draws them: N(0, sqrt(1/n_out)); the softmax layer starts at zero."""
    def normal(shape, n_out):
        return torch.tensor(rng.normal(0, np.sqrt(1.0 / n_out), shape), dtype=torch.float32)
    p = {"c1": normal((20, 1, 5, 5), 20 * 25 / 4), "b1": torch.tensor(rng.normal(0, 1, 20), dtype=torch.float32),
         "c2": normal((40, 20, 5, 5), 40 * 25 / 4), "b2": torch.tensor(rng.normal(0, 1, 40), dtype=torch.float32),
         "w3": normal((640, 100), 100), "b3": torch.tensor(rng.normal(0, 1, 100), dtype=torch.float32),
         "w4": torch.zeros(100, 10), "b4": torch.zeros(10)}
    for v in p.values():
        v.requires_grad_(True)
    return p


def logits(p, x):
    a = x.view(-1, 1, 28, 28)
    a = F.relu(F.max_pool2d(F.conv2d(a, p["c1"]), 2) + p["b1"].view(1, -1, 1, 1))   # (m, 20, 12, 12)
    a = F.relu(F.max_pool2d(F.conv2d(a, p["c2"]), 2) + p["b2"].view(1, -1, 1, 1))   # (m, 40, 4, 4)
    a = F.relu(a.reshape(a.shape[0], -1) @ p["w3"] + p["b3"])
    return a @ p["w4"] + p["b4"]


def train_steps(p, x, y, n_batches, eta=0.03, lmbda=0.1, num_batches=FULL_EPOCH // M):
    weights = [p["c1"], p["c2"], p["w3"], p["w4"]]
    for i in range(n_batches):
        xb, yb = x[i * M:(i + 1) * M], y[i * M:(i + 1) * M]
        loss = F.cross_entropy(logits(p, xb), yb)
        loss = loss + 0.5 * lmbda * sum((w * w).sum() for w in weights) / num_batches
        grads = torch.autograd.grad(loss, list(p.values()))
        with torch.no_grad():
            for v, g in zip(p.values(), grads):
                v -= eta * g


def evaluate(p, x, y, batch=1000):
    right = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            right += int((logits(p, x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    return right


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="the book's mnist.pkl.gz")
    ap.add_argument("--n", type=int, default=2000, help="training images to time (scaled to 50,000)")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    with gzip.open(a.data, "rb") as f:
        (tx, ty), (vx, vy), (ex, ey) = pickle.load(f, encoding="latin1")
    x, y = torch.tensor(tx[:a.n]), torch.tensor(ty[:a.n], dtype=torch.long)
    evx = torch.tensor(np.concatenate([vx, ex])[:EVAL_N])
    evy = torch.tensor(np.concatenate([vy, ey])[:EVAL_N], dtype=torch.long)
    p = init(np.random.default_rng(0))
    train_steps(p, x, y, 20)  # warm-up: allocator, kernels
    c0, t0 = time.process_time(), time.perf_counter()
    train_steps(p, x, y, a.n // M)
    train_s = (time.perf_counter() - t0) * FULL_EPOCH / a.n
    train_cpu_s = (time.process_time() - c0) * FULL_EPOCH / a.n
    c0, t0 = time.process_time(), time.perf_counter()
    right = evaluate(p, evx, evy)
    eval_s, eval_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"train_s": train_s, "eval_s": eval_s, "eval_correct": right,
                      "train_cpu_s": train_cpu_s, "eval_cpu_s": eval_cpu_s,
                      "threads": torch.get_num_threads(), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
