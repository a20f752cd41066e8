"""keras_afl's functions under the function transforms JAX and PyTorch users rely on (issue 19,
items 6 and 7): `torch.func.grad`, `vjp`, `jacrev`, `vmap` and `functional_call` give
torch.autograd's results; forward mode (`torch.func.jvp`/`jacfwd`/`hessian`,
`jax.jvp`/`jacfwd`/`hessian`) of a function with a derivative of our own is refused with a
message naming the reverse-mode alternatives (on PyTorch the activations that run ATen's own op,
`ops().native`, take it as PyTorch's do);
`torch.compile(fullgraph=True)` compiles every activation and loss function without a graph break
or a warning, with the values and gradients of eager mode.

Runs wherever tests/any_backend runs (tests/test_any_backend.py); each test skips on the backends
it does not concern.
"""

from __future__ import annotations

import inspect
import logging
import warnings

import numpy as np
import pytest

import keras_afl
from tests.any_backend._util import BACKEND

A = keras_afl.activations
L = keras_afl.losses

torch_only = pytest.mark.skipif(BACKEND != "torch", reason="PyTorch's torch.func/torch.compile")
CLOSE = dict(rtol=1e-12, atol=1e-15)  # float64: the transforms run the same operations

# Kinks (0), both tails and ordinary points.
X = np.array([[-30.0, -3.0, -0.5, 0.0, 0.2, 2.0, 30.0],
              [1.5, -0.25, 0.0, 4.0, -7.0, 0.75, -1.0]])
PRELU_ALPHA = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
Z = np.random.default_rng(4).normal(size=(3, 4)) * 3.0  # logits of 3 samples, 4 classes


def _activation_calls(torch):
    """name -> f(x) for every public activation (prelu with a fixed per-channel alpha)."""
    alpha = torch.tensor(PRELU_ALPHA)
    calls = {name: getattr(A, name) for name in A.__all__}
    calls["prelu"] = lambda x: A.prelu(x, alpha.to(x.dtype))
    calls["leaky_relu"] = lambda x: A.leaky_relu(x, 0.1)
    calls["elu"] = lambda x: A.elu(x, 0.5)
    return calls


def _loss_functions():
    """The public loss functions: keras_afl.losses.__all__, less the switches."""
    return sorted(n for n in L.__all__ if inspect.isfunction(getattr(L, n))
                  and n not in ("trace_options", "set_trace_options"))


def _loss_calls(torch):
    """name -> (f(z, y), y) for every loss function: z logits shaped like Z, y their labels."""
    rng = np.random.default_rng(3)
    ids = torch.tensor([0, 3, 1])
    binary = torch.tensor((rng.uniform(size=(3, 4)) > 0.5).astype(np.float64))
    onehot = torch.nn.functional.one_hot(ids, 4).double()
    target = torch.tensor(rng.normal(size=(3, 4)))
    calls = {
        "mean_squared_error": (lambda z, y: L.mean_squared_error(y, z), target),
        "huber": (lambda z, y: L.huber(y, z), target),
        "hinge": (lambda z, y: L.hinge(y, z), binary),
        # Probabilities from keras_afl's sigmoid/softmax: the loss takes the logits they carry.
        "binary_crossentropy": (lambda z, y: L.binary_crossentropy(y, A.sigmoid(z)), binary),
        "focal": (lambda z, y: L.focal(y, z, from_logits=True), binary),
        "categorical_crossentropy":
            (lambda z, y: L.categorical_crossentropy(y, A.softmax(z)), onehot),
        "categorical_focal": (lambda z, y: L.categorical_focal(
            y, z, from_logits=True, alpha=[0.1, 0.2, 0.3, 0.4]), onehot),
        "sparse_categorical_crossentropy":
            (lambda z, y: L.sparse_categorical_crossentropy(y, z, from_logits=True), ids),
        "sparse_categorical_focal":
            (lambda z, y: L.sparse_categorical_focal(y, torch.softmax(z, -1), gamma=1.5), ids),
    }
    assert sorted(calls) == _loss_functions(), "a new loss function: add it to _loss_calls"
    return calls


def _autograd_grad(f, x):
    """d sum(sin(f(x))) / dx with torch.autograd (sin: an upstream gradient other than ones)."""
    import torch

    x = x.detach().clone().requires_grad_()
    (g,) = torch.autograd.grad(torch.sin(f(x)).sum(), x)
    return g


# --------------------------------------------------------------------------
# torch.func


@torch_only
@pytest.mark.parametrize("name", sorted(A.__all__))
def test_torch_func_grad_vjp_vmap_jacrev_and_hessian_equal_autograd_for_every_activation(name):
    import torch
    from torch.autograd.functional import hessian, jacobian

    f = _activation_calls(torch)[name]
    x = torch.tensor(X)

    def scalar(x):
        return torch.sin(f(x)).sum()

    torch.testing.assert_close(torch.func.grad(scalar)(x), _autograd_grad(f, x), **CLOSE)
    y, vjp = torch.func.vjp(f, x)
    torch.testing.assert_close(vjp(torch.cos(y))[0], _autograd_grad(f, x), **CLOSE)
    torch.testing.assert_close(torch.func.vmap(f)(x), f(x), **CLOSE)  # one row at a time
    torch.testing.assert_close(torch.func.jacrev(f)(x), jacobian(f, x), **CLOSE)
    # Reverse over reverse (the backward pass differentiated) against autograd's double backward.
    torch.testing.assert_close(torch.func.jacrev(torch.func.jacrev(scalar))(x),
                               hessian(scalar, x), **CLOSE)


@torch_only
@pytest.mark.parametrize("name", ["binary_crossentropy", "categorical_crossentropy", "hinge",
                                  "sparse_categorical_crossentropy", "sparse_categorical_focal"])
def test_torch_func_grad_jacrev_hessian_and_per_sample_grads_equal_autograd_for_losses(name):
    import torch
    from torch.autograd.functional import hessian, jacobian

    loss, y = _loss_calls(torch)[name]
    z = torch.tensor(Z)

    def f(z):
        return loss(z, y)  # labels closed over

    def scalar(z):
        return torch.sin(f(z)).sum()

    torch.testing.assert_close(torch.func.grad(scalar)(z), _autograd_grad(f, z), **CLOSE)
    torch.testing.assert_close(torch.func.jacrev(f)(z), jacobian(f, z), **CLOSE)
    # The softmax losses hand intermediates from forward to backward; differentiated again, the
    # backward recomputes them (connected to the graph), so the Hessian stays exact.
    torch.testing.assert_close(torch.func.jacrev(torch.func.jacrev(scalar))(z),
                               hessian(scalar, z), **CLOSE)
    # Per-sample values and gradients, labels passed through vmap: the batch's, row by row.
    per_sample = torch.func.vmap(torch.func.grad(lambda zi, yi: loss(zi[None], yi[None]).sum()))
    zz = z.clone().requires_grad_()
    (batch,) = torch.autograd.grad(loss(zz, y).sum(), zz)
    torch.testing.assert_close(per_sample(z, y), batch, **CLOSE)
    values = torch.func.vmap(lambda zi, yi: loss(zi[None], yi[None])[0])(z, y)
    torch.testing.assert_close(values, f(z), **CLOSE)


@torch_only
def test_bad_labels_raise_under_torch_func_grad_and_give_nan_under_vmap():
    """Under torch.func.grad the labels can be read, and are checked as eagerly. vmap refuses to
    read a batched value (as JAX's vmap does): the sample with the bad label gets NaN."""
    import torch

    z = torch.tensor(Z)
    bad = torch.tensor([0.0, 2.0, 1.0], dtype=torch.float64)[:, None] * torch.ones(3, 4).double()
    with pytest.raises(ValueError, match="y_true"):
        torch.func.grad(lambda z: L.focal(bad, z, from_logits=True).sum())(z)
    with pytest.raises(ValueError, match="y_true"):
        torch.func.grad(lambda z: L.sparse_categorical_crossentropy(
            torch.tensor([0, 5, 1]), z, from_logits=True).sum())(z)
    per_sample = torch.func.vmap(
        lambda zi, yi: L.focal(yi[None], zi[None], from_logits=True)[0])(z, bad)
    assert torch.isnan(per_sample[1]) and torch.isfinite(per_sample[[0, 2]]).all()


@torch_only
def test_functional_call_of_a_module_and_stateless_call_of_keras_prelu_equal_autograd():
    """`torch.func.functional_call` swaps a module's parameters: for a torch.nn.Module calling
    keras_afl it gives autograd's gradients. A Keras layer keeps its weights in Keras variables,
    which functional_call does not swap (for Keras's own Dense neither); its functional form is
    `stateless_call`, which torch.func transforms as autograd does."""
    import torch

    x = torch.tensor(X)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.alpha = torch.nn.Parameter(torch.tensor(PRELU_ALPHA))

        def forward(self, x):
            return A.elu(A.prelu(x, self.alpha))

    net = Net()
    params = {"alpha": torch.tensor(PRELU_ALPHA) + 0.05}
    g = torch.func.grad(lambda p: torch.sin(torch.func.functional_call(net, p, (x,))).sum())(params)
    alpha = params["alpha"].clone().requires_grad_()
    (want,) = torch.autograd.grad(torch.sin(A.elu(A.prelu(x, alpha))).sum(), alpha)
    torch.testing.assert_close(g["alpha"], want, **CLOSE)

    layer = keras_afl.layers.PReLU(dtype="float64")
    layer.build(tuple(x.shape))
    a0 = torch.tensor(PRELU_ALPHA)

    def stateless(a, x):
        return torch.sin(layer.stateless_call([a], [], x)[0]).sum()

    grads = torch.func.grad(stateless, argnums=(0, 1))(a0, x)
    a, xx = a0.clone().requires_grad_(), x.clone().requires_grad_()
    for got, want in zip(grads, torch.autograd.grad(stateless(a, xx), (a, xx))):
        torch.testing.assert_close(got, want, **CLOSE)
    rows = torch.func.vmap(lambda xi: layer.stateless_call([a0], [], xi[None])[0][0])(x)
    torch.testing.assert_close(rows, layer.stateless_call([a0], [], x)[0], **CLOSE)


# --------------------------------------------------------------------------
# Forward mode: refused, naming reverse mode.


@torch_only
def test_torch_forward_mode_is_refused_naming_jacrev_and_vjp():
    import torch
    import torch.autograd.forward_ad as fwad

    x = torch.tensor(X)
    loss, y = _loss_calls(torch)["sparse_categorical_crossentropy"]
    attempts = {
        "torch.func.jvp": lambda: torch.func.jvp(A.selu, (x,), (torch.ones_like(x),)),
        "torch.func.jacfwd": lambda: torch.func.jacfwd(A.selu)(x),
        "torch.func.hessian": lambda: torch.func.hessian(lambda z: loss(z, y).sum())(
            torch.tensor(Z)),
    }
    for what, attempt in attempts.items():
        with pytest.raises(NotImplementedError, match=r"torch\.func\.jacrev") as info:
            attempt()
        assert "torch.func.vjp" in str(info.value) and "forward-mode" in str(info.value), what
    with fwad.dual_level():
        with pytest.raises(NotImplementedError, match=r"torch\.func\.jacrev"):
            A.selu(fwad.make_dual(x, torch.ones_like(x)))


@pytest.mark.skipif(BACKEND != "jax", reason="JAX's forward mode")
def test_jax_forward_mode_is_refused_naming_jacrev_and_grad_and_hessian_works():
    """jax.custom_vjp has no forward mode of its own; forward over reverse (jax.hessian)
    differentiates the forward and backward passes as written. (`jax.linearize` fails later, when
    its linear function is applied, with JAX's own message.)"""
    import jax
    import jax.numpy as jnp

    x = jnp.asarray(X)
    attempts = {
        "jax.jvp": lambda: jax.jvp(A.elu, (x,), (jnp.ones_like(x),)),
        "jax.jacfwd": lambda: jax.jacfwd(A.relu)(x),
        "jax.jit(jax.jacfwd)": lambda: jax.jit(jax.jacfwd(A.softmax))(x),
    }
    for what, attempt in attempts.items():
        with pytest.raises(TypeError, match=r"jax\.jacrev") as info:
            attempt()
        assert "jax.grad" in str(info.value) and "forward-mode" in str(info.value), what
    ids = jnp.asarray([0, 3, 1])
    for f in (A.tanh, A.softmax, lambda z: L.sparse_categorical_crossentropy(
            ids, z, from_logits=True)):
        def scalar(z):
            return jnp.sum(jnp.sin(f(z)))

        z = jnp.asarray(Z)
        np.testing.assert_allclose(jax.hessian(scalar)(z), jax.jacrev(jax.jacrev(scalar))(z),
                                   rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------
# torch.compile


def _compiled_equals_eager(torch, calls, inputs, caplog, close):
    """Compiles one function calling every entry of `calls` (fullgraph=True, Dynamo only:
    backend "eager"; Dynamo traces each autograd.Function's backward too) and checks: no graph
    break, no warning (Python's, or a torch logger's), values and gradients with gradients
    enabled, and values under torch.no_grad (no input requires a gradient), equal to eager."""
    names = sorted(calls)

    def every(*xs):
        return tuple(calls[n](x) for n, x in zip(names, xs))

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled = torch.compile(every, fullgraph=True, backend="eager")
    xs = [torch.tensor(inputs) for _ in names]
    caplog.clear()
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        leaves = [x.clone().requires_grad_() for x in xs]
        ys = compiled(*leaves)
        grads = torch.autograd.grad(sum(torch.sin(y).sum() for y in ys), leaves)
        with torch.no_grad():
            ys_no_grad = compiled(*xs)
    assert not [str(w.message) for w in caught]
    assert not [r.getMessage() for r in caplog.records if r.name.startswith("torch")]
    assert not dict(torch._dynamo.utils.counters["graph_break"])
    for n, x, y, g, y0 in zip(names, xs, ys, grads, ys_no_grad):
        f = calls[n]
        torch.testing.assert_close(y, f(x), **close, msg=f"{n}: value")
        torch.testing.assert_close(y0, f(x), **close, msg=f"{n}: value under torch.no_grad")
        torch.testing.assert_close(g, _autograd_grad(f, x), **close, msg=f"{n}: gradient")


@torch_only
def test_torch_compile_fullgraph_every_activation_equals_eager(caplog):
    import torch

    _compiled_equals_eager(torch, _activation_calls(torch), X, caplog, dict(rtol=1e-14, atol=0.0))


@torch_only
def test_torch_compile_fullgraph_every_loss_function_equals_eager(caplog):
    import torch

    calls = {n: (lambda z, f=f, y=y: f(z, y)) for n, (f, y) in _loss_calls(torch).items()}
    _compiled_equals_eager(torch, calls, Z, caplog, dict(rtol=1e-13, atol=1e-16))


@pytest.mark.slow  # Inductor's C++ compile: 20 to 60 s on two busy cores
@torch_only
def test_torch_compile_with_inductor_equals_eager():
    """One real compile (Inductor, C++ on the CPU; AOTAutograd traces the backward passes):
    prelu, softmax and the categorical cross-entropy (whose forward hands intermediates to its
    backward) in one graph."""
    import torch

    rng = np.random.default_rng(5)
    x = torch.tensor(rng.normal(size=(4, 7)), dtype=torch.float32)
    y = torch.nn.functional.one_hot(torch.tensor([0, 6, 2, 3]), 7).float()
    alpha = torch.tensor(PRELU_ALPHA, dtype=torch.float32)

    def step(x, alpha):
        return L.categorical_crossentropy(y, A.softmax(A.prelu(x, alpha))).mean()

    torch._dynamo.reset()
    compiled = torch.compile(step, fullgraph=True)
    results = []
    for fn in (compiled, step):
        xx, aa = x.clone().requires_grad_(), alpha.clone().requires_grad_()
        value = fn(xx, aa)
        results.append((value, *torch.autograd.grad(value, (xx, aa))))
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
