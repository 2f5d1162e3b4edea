"""Independent numpy references for the tests: the book's equations, written out by hand.

    >>> import numpy as np, references as ref
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4); w = np.zeros((1, 1, 2, 2)); w[0, 0, 0, 0] = 1
    >>> bool((ref.true_conv(x, w)[0, 0] == x[0, 0, 1:, 1:]).all())   # a convolution flips its kernel
    True

Plain numpy in float64, one example or one window at a time where that is how the book
says it, and no nn3 import: a test that compares nn3 with these compares it with the book,
not with itself. Every test that needs a reference imports it from here, so there is one
copy of each to read and to trust. (bench/reference_*.py are the benchmark's own: they
time the book's programs, these check ours.)
"""
from __future__ import annotations

import numpy as np


def sigmoid(z):
    """sigma(z) = 1 / (1 + e^-z) (chapter 1, equation 3)."""
    return 1.0 / (1.0 + np.exp(-z))


def sigmoid_prime(z):
    """sigma'(z) = sigma(z) (1 - sigma(z))."""
    return sigmoid(z) * (1 - sigmoid(z))


def feedforward(weights, biases, a):
    """a' = sigma(w a + b) layer by layer (chapter 1, equation 22); ``a`` a column (n, 1)."""
    a = np.asarray(a, np.float64)
    for w, b in zip(weights, biases):
        a = sigmoid(np.asarray(w, np.float64) @ a + np.asarray(b, np.float64))
    return a


def backprop(weights, biases, x, y, cost):
    """Chapter 2's four equations for one example, in the book's column shapes.

    ``x`` (n_in, 1), ``y`` one-hot (n_out, 1), ``weights[l]`` (n_l, n_l-1), ``biases[l]``
    (n_l, 1), sigmoid layers. Returns ``(nabla_b, nabla_w)`` of that example's cost:
      BP1  delta^L = (a^L - y) * sigma'(z^L)   (QuadraticCost; CrossEntropyCost: a^L - y, chapter 3)
      BP2  delta^l = (w^{l+1}^T delta^{l+1}) * sigma'(z^l)
      BP3  dC/db^l = delta^l
      BP4  dC/dw^l = delta^l a^{l-1}^T
    """
    ws = [np.asarray(w, np.float64) for w in weights]
    bs = [np.asarray(b, np.float64) for b in biases]
    activation = np.asarray(x, np.float64)
    activations, zs = [activation], []
    for w, b in zip(ws, bs):
        zs.append(w @ activation + b)
        activation = sigmoid(zs[-1])
        activations.append(activation)
    a, z = activations[-1], zs[-1]
    delta = (a - y) * sigmoid_prime(z) if cost == "QuadraticCost" else a - y
    nabla_b, nabla_w = [None] * len(ws), [None] * len(ws)
    nabla_b[-1], nabla_w[-1] = delta, delta @ activations[-2].T
    for k in range(2, len(ws) + 1):
        delta = (ws[-k + 1].T @ delta) * sigmoid_prime(zs[-k])
        nabla_b[-k], nabla_w[-k] = delta, delta @ activations[-k - 1].T
    return nabla_b, nabla_w


def backprop_sum(params, x, y, cost):
    """``backprop`` summed over a mini-batch, one example at a time (network.py's update_mini_batch).

    ``params`` nn3's layout: a list of ``{"w": (n_out, n_in), "b": (n_out,)}``; ``x`` rows
    (m, n_in), ``y`` labels (m,). Returns ``(nabla_b as (n_out,) vectors, nabla_w)``.
    """
    ws = [p["w"] for p in params]
    bs = [np.asarray(p["b"]).reshape(-1, 1) for p in params]
    n_out = ws[-1].shape[0]
    nb = [np.zeros(b.shape) for b in bs]
    nw = [np.zeros(np.shape(w)) for w in ws]
    for xi, yi in zip(x, y):
        target = np.zeros((n_out, 1))
        target[yi] = 1.0
        db, dw = backprop(ws, bs, np.asarray(xi, np.float64).reshape(-1, 1), target, cost)
        nb = [s + d for s, d in zip(nb, db)]
        nw = [s + d for s, d in zip(nw, dw)]
    return [b.ravel() for b in nb], nw


def sgd(params, x, y, cost, *, epochs, m, eta, decay=0.0, l1=0.0, mu=0.0, drop_remainder=False, shift=None):
    """network2's SGD over ``(x, y)`` in order (no shuffling), updating ``params`` in place.

    ``decay`` is lmbda/n (network2) or lmbda/num_batches (network3); ``l1`` adds
    eta*l1*sgn(w) (chapter 3's L1); ``mu`` switches to chapter 3's momentum,
    v = mu v - eta grad C, w = w + v. ``shift(xb)`` augments each mini-batch first.
    Without momentum (chapter 3, equations 93-94):
      w = (1 - eta decay) w - (eta/m) sum nabla_w,   b = b - (eta/m) sum nabla_b
    """
    vel = [{k: np.zeros_like(v) for k, v in p.items()} for p in params]
    for _ in range(epochs):
        for k in range(0, len(y), m):
            xb, yb = x[k:k + m], y[k:k + m]
            if len(yb) < m and drop_remainder:
                break
            nb, nw = backprop_sum(params, shift(xb) if shift else xb, yb, cost)
            for p, v, gb, gw in zip(params, vel, nb, nw):
                if mu:
                    v["w"] = mu * v["w"] - eta * (gw / len(yb) + decay * p["w"] + l1 * np.sign(p["w"]))
                    v["b"] = mu * v["b"] - eta * gb / len(yb)
                    p["w"], p["b"] = p["w"] + v["w"], p["b"] + v["b"]
                else:
                    p["w"] = (1 - eta * decay) * p["w"] - eta * l1 * np.sign(p["w"]) - (eta / len(yb)) * gw
                    p["b"] = p["b"] - (eta / len(yb)) * gb
    return params


def last_z(params, x, drop=()):
    """The last layer's weighted input z for rows ``x`` through sigmoid hidden layers.

    ``drop`` the p_dropout of each layer: at evaluation network3 scales a layer's
    weights by (1 - p_dropout) (chapter 6's dropout, its weights halved when p = 0.5).
    """
    a = x.astype(np.float64)
    for i, p in enumerate(params):
        z = (1 - (drop[i] if drop else 0.0)) * (a @ p["w"].T) + p["b"]
        a = sigmoid(z)
    return z


def shift_image(img, dy, dx):
    """A (28, 28) image moved dy rows down and dx columns right; what comes in is zero
    (chapter 6's expanded training data: each image moved one pixel)."""
    out = np.roll(img, (dy, dx), axis=(0, 1))
    if dy > 0:
        out[:dy] = 0
    if dy < 0:
        out[dy:] = 0
    if dx > 0:
        out[:, :dx] = 0
    if dx < 0:
        out[:, dx:] = 0
    return out


def true_conv(x, w):
    """The 'valid' convolution of network3's ConvPoolLayer, by loops over the kernel's taps.

    ``x`` (b, C, H, W), ``w`` (F, C, h, w) -> (b, F, H-h+1, W-w+1), in the book's
    (channels first) layout; chapter 6's local receptive fields, with the kernel flipped
    as Theano's conv2d (a convolution, not a correlation):
      out[f, i, j] = sum_{c, u, v} x[c, i + h-1-u, j + w-1-v] w[f, c, u, v]
    """
    b, c, hh, ww = x.shape
    f, _, fh, fw = w.shape
    oh, ow = hh - fh + 1, ww - fw + 1
    out = np.zeros((b, f, oh, ow))
    for u in range(fh):
        for v in range(fw):
            patch = x[:, :, fh - 1 - u:fh - 1 - u + oh, fw - 1 - v:fw - 1 - v + ow]  # (b, C, oh, ow)
            out += np.einsum("bcij,fc->bfij", patch, w[:, :, u, v])
    return out


def max_pool(x, ph, pw):
    """(b, F, H, W) -> (b, F, H//ph, W//pw): the largest of each ph x pw window (chapter 6's
    max-pooling); borders that do not fill a pool are dropped (Theano's ignore_border)."""
    b, f, h, w = x.shape
    out = np.empty((b, f, h // ph, w // pw))
    for i in range(h // ph):
        for j in range(w // pw):
            out[:, :, i, j] = x[:, :, i * ph:(i + 1) * ph, j * pw:(j + 1) * pw].max(axis=(2, 3))
    return out
