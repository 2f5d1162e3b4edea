"""Tests for nn3.engine.conv: a numpy true convolution and max-pool, gradients, fused == separate, ties."""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nn3.engine import conv
import references


FORMS = ("fused", "im2col", "xla")


def nhwc(x):
    return x.transpose(0, 3, 1, 2)


def np_true_conv(x, w):
    """references.true_conv in conv.py's (b, H, W, C) layout."""
    return references.true_conv(nhwc(x), w).transpose(0, 2, 3, 1)


def np_max_pool(x, ph, pw):
    """references.max_pool in conv.py's (b, H, W, C) layout."""
    return references.max_pool(nhwc(x), ph, pw).transpose(0, 2, 3, 1)


def rand(seed, *shape):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def xla_conv_pool(x, w, poolsize):
    """An independent reference: XLA's convolution and JAX's own max, differentiated by JAX."""
    z = jax.lax.conv_general_dilated(x, jnp.flip(w, (2, 3)), (1, 1), "VALID",
                                     dimension_numbers=("NHWC", "OIHW", "NHWC"))
    ph, pw = poolsize
    b, h, wd, f = z.shape
    return z[:, :h // ph * ph, :wd // pw * pw].reshape(b, h // ph, ph, wd // pw, pw, f).max(axis=(2, 4))


def test_numpy_reference_flips_the_kernel():
    # One tap at w[0, 0] of a 2x2 kernel reads the pixel at (i+1, j+1): a convolution, not a correlation.
    x = np.arange(16.0).reshape(1, 4, 4, 1)
    w = np.zeros((1, 1, 2, 2))
    w[0, 0, 0, 0] = 1.0
    np.testing.assert_array_equal(np_true_conv(x, w)[0, :, :, 0], x[0, 1:, 1:, 0])


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("shape", [(2, 9, 7, 1, 3, 3, 2), (2, 8, 11, 3, 4, 5, 3)])  # b, H, W, C, F, h, w
def test_conv_valid_is_a_true_convolution(form, shape):
    b, h, w, c, f, fh, fw = shape
    x, k = rand(0, b, h, w, c), rand(1, f, c, fh, fw)
    got = np.asarray(conv.conv_valid(jnp.asarray(x), jnp.asarray(k), form))
    assert got.shape == (b, h - fh + 1, w - fw + 1, f)
    np.testing.assert_allclose(got, np_true_conv(x.astype(np.float64), k), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("poolsize", [(2, 2), (2, 3), (3, 1), (1, 1)])
def test_max_pool_drops_borders_that_do_not_fill_a_pool(poolsize):
    x = rand(2, 2, 7, 8, 3)  # 7 rows and 8 columns: (2, 3) drops a row and 2 columns
    got = np.asarray(conv.max_pool(jnp.asarray(x), poolsize))
    assert got.shape == (2, 7 // poolsize[0], 8 // poolsize[1], 3)
    np.testing.assert_array_equal(got, np_max_pool(x, *poolsize))


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("shape", [(2, 12, 12, 1, 4, 5, 5, 2, 2), (2, 11, 10, 1, 3, 3, 4, 3, 2),
                                   (2, 12, 11, 3, 5, 5, 5, 2, 2), (1, 9, 9, 2, 3, 2, 3, 2, 3),
                                   (2, 6, 7, 2, 2, 3, 3, 1, 1)])  # b, H, W, C, F, h, w, ph, pw
def test_conv_pool_matches_numpy_and_reference_gradients(form, shape):
    b, h, w, c, f, fh, fw, ph, pw = shape
    x, k = rand(3, b, h, w, c), rand(4, f, c, fh, fw)
    got = np.asarray(conv.conv_pool(jnp.asarray(x), jnp.asarray(k), (ph, pw), form))
    want = np_max_pool(np_true_conv(x.astype(np.float64), k), ph, pw)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

    probe = jnp.asarray(rand(5, *want.shape))  # a scalar that weighs every pooled unit differently

    def loss(fn):
        return lambda x, k: jnp.sum(jnp.tanh(fn(x, k, (ph, pw))) * probe)

    gx, gk = jax.jit(jax.grad(loss(partial(conv.conv_pool, formulation=form)), (0, 1)))(jnp.asarray(x), jnp.asarray(k))
    rx, rk = jax.jit(jax.grad(loss(xla_conv_pool), (0, 1)))(jnp.asarray(x), jnp.asarray(k))
    np.testing.assert_allclose(gk, rk, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gx, rx, rtol=1e-4, atol=1e-4)


def test_weight_gradient_matches_finite_differences():
    x, k = rand(6, 2, 9, 9, 2), rand(7, 3, 2, 3, 3)
    probe = rand(8, 2, 3, 3, 3)
    def loss(k):
        return jnp.sum(jnp.tanh(conv.conv_pool(jnp.asarray(x), k, (2, 2), "fused")) * probe)

    grad = np.asarray(jax.jit(jax.grad(loss))(jnp.asarray(k)))
    loss = jax.jit(loss)
    eps = 1e-2  # float32: central differences of a smooth function, checked to ~1e-3
    for idx in [(0, 0, 0, 0), (1, 1, 2, 1), (2, 0, 1, 2), (2, 1, 0, 0)]:
        bump = np.zeros_like(k)
        bump[idx] = eps
        numeric = (float(loss(jnp.asarray(k + bump))) - float(loss(jnp.asarray(k - bump)))) / (2 * eps)
        assert abs(numeric - grad[idx]) < 2e-3 * max(1.0, abs(numeric)), (idx, numeric, grad[idx])


@pytest.mark.parametrize("shape", [(3, 28, 28, 1, 20, 2, 2), (3, 12, 12, 20, 40, 2, 2), (2, 13, 11, 1, 4, 3, 2)])
def test_formulations_agree_in_value_and_gradient(shape):
    b, h, w, c, f, ph, pw = shape
    x, k = jnp.asarray(rand(9, b, h, w, c)), jnp.asarray(rand(10, f, c, 5, 5))

    def run(form):
        def loss(x, k):
            return jnp.sum(jnp.sin(conv.conv_pool(x, k, (ph, pw), form)))

        return jax.jit(lambda x, k: (conv.conv_pool(x, k, (ph, pw), form),) + jax.grad(loss, (0, 1))(x, k))(x, k)

    got = {form: run(form) for form in FORMS}
    direct = jax.jit(lambda x, k: conv.max_pool(conv.conv_valid(x, k, "im2col"), (ph, pw)))(x, k)
    np.testing.assert_allclose(got["fused"][0], direct, rtol=1e-5, atol=1e-5)
    for form in ("im2col", "xla"):  # output, d/dx, d/dw: equal to float rounding
        for a, s in zip(got["fused"], got[form]):
            np.testing.assert_allclose(a, s, rtol=1e-4, atol=1e-4)


def test_each_formulation_compiles_its_own_program():
    # The formulation is a static argument: three different programs, XLA's convolution only in "xla".
    x, k = jnp.zeros((2, 12, 12, 3)), jnp.zeros((4, 3, 5, 5))
    text = {form: jax.jit(jax.grad(lambda k, x: jnp.sum(conv.conv_pool(x, k, (2, 2), form)))).lower(k, x).as_text()
            for form in FORMS}
    assert len(set(text.values())) == 3
    assert "convolution" in text["xla"]
    assert "convolution" not in text["fused"] and "convolution" not in text["im2col"]


@pytest.mark.parametrize("shape", [(3, 12, 12, 20, 40, 2, 2), (2, 13, 11, 3, 4, 3, 2), (3, 28, 28, 1, 20, 2, 2)])
def test_evaluation_gathers_the_patches_training_slices_them(shape):
    """Without a gradient the fused conv builds a deeper layer's patches with one gather
    (evaluation's speed, issue 12); the training step keeps the slices (their adjoint is
    _col2im). Same values, so the same outputs to the last bit."""
    b, h, w, c, f, ph, pw = shape
    x, k = jnp.asarray(rand(13, b, h, w, c)), jnp.asarray(rand(14, f, c, 5, 5))
    grid, kernel, stride, _ = conv._plan(x.shape, k.shape, (ph, pw))
    np.testing.assert_array_equal(conv._gathered_patches(x, grid, kernel, stride), conv._patches(x, grid, kernel, stride))
    forward = jax.make_jaxpr(lambda x, k: conv.conv_pool(x, k, (ph, pw), "fused"))(x, k)
    step = jax.make_jaxpr(jax.value_and_grad(lambda k, x: jnp.sum(conv.conv_pool(x, k, (ph, pw), "fused"))))(k, x)
    if c > 1:
        assert "gather" in str(forward) and "concatenate" not in str(forward)
        assert "concatenate" in str(step)
    evaluated = jax.jit(lambda x, k: conv.conv_pool(x, k, (ph, pw), "fused"))(x, k)
    trained = jax.jit(lambda x, k: jax.vjp(lambda x: conv.conv_pool(x, k, (ph, pw), "fused"), x)[0])(x, k)
    np.testing.assert_array_equal(evaluated, trained)


def test_fused_works_under_jit_and_vmap():
    x, k = jnp.asarray(rand(11, 3, 2, 12, 12, 1)), jnp.asarray(rand(12, 3, 4, 1, 5, 5))
    step = jax.jit(jax.vmap(jax.grad(lambda k, x: jnp.sum(conv.conv_pool(x, k, (2, 2), "fused") ** 2))))
    got = step(k, x)
    want = jax.vmap(jax.grad(lambda k, x: jnp.sum(xla_conv_pool(x, k, (2, 2)) ** 2)))(k, x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("form", FORMS)
def test_tied_maxima_all_receive_the_gradient(form):
    # Theano's MaxPoolGrad: every input equal to its window's max gets the whole gradient.
    x = jnp.asarray(np.array([[1.0, 1.0, 0.0, 2.0], [0.0, 1.0, 2.0, 2.0]], np.float32).reshape(1, 2, 4, 1))
    g = jax.jit(jax.grad(lambda x: jnp.sum(conv.max_pool(x, (2, 2)) * jnp.array([3.0, 5.0]).reshape(1, 1, 2, 1))))(x)
    np.testing.assert_array_equal(np.asarray(g)[0, :, :, 0], [[3, 3, 0, 5], [0, 3, 5, 5]])
    # The same rule through conv_pool: a 1x1 identity filter makes the conv output the input.
    g2 = jax.jit(jax.grad(lambda x: jnp.sum(conv.conv_pool(x, jnp.ones((1, 1, 1, 1)), (2, 2), form)
                                            * jnp.array([3.0, 5.0]).reshape(1, 1, 2, 1))))(x)
    np.testing.assert_array_equal(g2, g)


def test_none_is_fused_on_cpu_and_xla_elsewhere(monkeypatch):
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert conv.resolve(None) == "fused"
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert conv.resolve(None) == "xla"


@pytest.mark.parametrize("x_shape, w_shape, pool, fault", [
    ((2, 8, 8, 3), (4, 2, 3, 3), (2, 2), "input maps"),
    ((2, 4, 4, 1), (4, 1, 5, 5), (2, 2), "does not fit"),
    ((8, 8, 1), (4, 1, 3, 3), (2, 2), "expected x"),
    ((2, 8, 8, 1), (4, 1, 3, 3), (0, 2), "poolsize"),
])
def test_bad_shapes_raise_one_line_errors(x_shape, w_shape, pool, fault):
    with pytest.raises(ValueError, match=fault) as err:
        conv.conv_pool(jnp.zeros(x_shape), jnp.zeros(w_shape), pool)
    assert "\n" not in str(err.value)


def test_unknown_formulation_is_refused():
    with pytest.raises(ValueError, match="winograd"):
        conv.conv_valid(jnp.zeros((1, 4, 4, 1)), jnp.zeros((1, 1, 2, 2)), "winograd")
    with pytest.raises(ValueError, match="winograd"):
        conv.conv_pool(jnp.zeros((1, 4, 4, 1)), jnp.zeros((1, 1, 2, 2)), (2, 2), "winograd")
