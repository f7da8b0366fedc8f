"""Same weights in PyTorch and mlplab give the same outputs, gradients and steps."""

from __future__ import annotations

import numpy as np
import pytest

from mlplab.gradcheck import analytic_gradients
from mlplab.nn.layers import BatchNorm, Dense, ReLU
from mlplab.nn.network import Network
from mlplab.optim import SGD, Adam, Cosine, Cyclic, StepDecay

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _float64_torch():
    """PyTorch in float64 for these comparisons only: the default is put back after each
    test, so no other test sees a changed global."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _torch_model(net: Network) -> torch.nn.Sequential:
    mods = []
    for layer in net.layers:
        if isinstance(layer, Dense):
            d_in, d_out = layer.shape
            lin = torch.nn.Linear(d_in, d_out, bias="b" in layer.params)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(layer.params["W"].T.copy()))
                if "b" in layer.params:
                    lin.bias.copy_(torch.from_numpy(layer.params["b"]))
            mods.append(lin)
        elif isinstance(layer, ReLU):
            mods.append(torch.nn.ReLU())
        elif isinstance(layer, BatchNorm):
            bn = torch.nn.BatchNorm1d(
                layer.params["gamma"].size, eps=layer.eps, momentum=1 - layer.alpha
            )
            with torch.no_grad():
                bn.weight.copy_(torch.from_numpy(layer.params["gamma"]))
                bn.bias.copy_(torch.from_numpy(layer.params["beta"]))
            mods.append(bn)
    return torch.nn.Sequential(*mods)


def _torch_grads(model, net: Network) -> dict[str, np.ndarray]:
    """Map torch parameter grads to mlplab names (weights transposed)."""
    out = {}
    tmods = [m for m in model if isinstance(m, torch.nn.Linear | torch.nn.BatchNorm1d)]
    ours = [ly for ly in net.layers if isinstance(ly, Dense | BatchNorm)]
    for m, ly in zip(tmods, ours, strict=True):
        if isinstance(ly, Dense):
            out[f"{ly.name}.W"] = m.weight.grad.numpy().T
            if m.bias is not None:
                out[f"{ly.name}.b"] = m.bias.grad.numpy()
        else:
            out[f"{ly.name}.gamma"] = m.weight.grad.numpy()
            out[f"{ly.name}.beta"] = m.bias.grad.numpy()
    return out


def _rel(a, b):
    return np.max(np.abs(a - b) / np.maximum(1e-10, np.abs(a) + np.abs(b)))


@pytest.mark.parametrize(
    ("d", "hidden", "bn", "lam"),
    [
        (30, [50], False, 0.0),
        (30, [50], False, 0.01),
        (64, [40, 30], False, 0.1),
        (20, [16, 16, 16, 16], False, 0.005),
        (30, [50, 50], True, 0.005),
        (20, [20, 15, 10], True, 0.0),
    ],
)
def test_network_gradients_match_autograd(d, hidden, bn, lam):
    rng = np.random.default_rng(7)
    net = Network.build(
        d, hidden, 10, rng=rng, init="he", batch_norm=bn, bn_running_init="torch", dtype="float64"
    )
    for ly in net.layers:
        if isinstance(ly, BatchNorm):  # non-trivial gamma/beta
            ly.params["gamma"][...] = rng.uniform(0.5, 1.5, ly.params["gamma"].shape)
            ly.params["beta"][...] = rng.normal(0, 0.5, ly.params["beta"].shape)
    X = rng.standard_normal((16, d))
    y = rng.integers(0, 10, 16)
    model = _torch_model(net)
    loss = net.loss_grad(X, y)
    cost = loss + net.l2_penalty(lam)
    grads = analytic_gradients(net, X, y, lam)  # of the cost: the loss's plus 2 lam W
    logits = model(torch.from_numpy(X))
    tl = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y))
    l2 = sum((m.weight**2).sum() for m in model if isinstance(m, torch.nn.Linear))
    (tl + lam * l2).backward()
    assert np.isclose(loss, tl.item(), rtol=1e-12)
    assert np.isclose(cost, (tl + lam * l2).item(), rtol=1e-12)
    tg = _torch_grads(model, net)
    for k, g in grads.items():
        assert _rel(g, tg[k]) < 1e-6, k


def test_batchnorm_matches_torch_train_and_eval():
    rng = np.random.default_rng(0)
    d = 7
    ours = BatchNorm(
        d, alpha=0.9, running_init="torch", unbiased_running_var=True, dtype=np.float64
    )
    ours.params["gamma"][...] = rng.uniform(0.5, 2, d)
    ours.params["beta"][...] = rng.normal(size=d)
    tb = torch.nn.BatchNorm1d(d, momentum=0.1)
    with torch.no_grad():
        tb.weight.copy_(torch.from_numpy(ours.params["gamma"]))
        tb.bias.copy_(torch.from_numpy(ours.params["beta"]))
    tb.train()
    for _ in range(4):  # several batches: running statistics accumulate
        x = rng.normal(2.0, 3.0, (12, d))
        dout = rng.standard_normal((12, d))
        xt = torch.from_numpy(x).requires_grad_(True)
        out_t = tb(xt)
        out_t.backward(torch.from_numpy(dout))
        out = ours.forward(x, train=True)
        dx = ours.backward(dout)
        np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(ours.grads["gamma"], tb.weight.grad.numpy(), rtol=1e-10)
        np.testing.assert_allclose(ours.grads["beta"], tb.bias.grad.numpy(), rtol=1e-10)
        tb.weight.grad = None
        tb.bias.grad = None
        np.testing.assert_allclose(
            ours.buffers["running_mean"], tb.running_mean.numpy(), rtol=1e-12
        )
        np.testing.assert_allclose(ours.buffers["running_var"], tb.running_var.numpy(), rtol=1e-12)
    tb.eval()
    x = rng.normal(size=(5, d))
    np.testing.assert_allclose(
        ours.forward(x, train=False), tb(torch.from_numpy(x)).detach().numpy(), rtol=1e-10
    )


def test_cyclic_equals_torch_cycliclr_over_several_cycles():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1e-5)
    sched = torch.optim.lr_scheduler.CyclicLR(
        opt, base_lr=1e-5, max_lr=1e-1, step_size_up=800, mode="triangular", cycle_momentum=False
    )
    ours = Cyclic(1e-5, 1e-1, 800)
    for t in range(3 * 1600 + 1):
        assert np.isclose(opt.param_groups[0]["lr"], ours(t), rtol=1e-9, atol=1e-15), t
        opt.step()
        sched.step()


def test_step_and_cosine_match_torch():
    p = torch.nn.Parameter(torch.zeros(1))
    o1, o2 = torch.optim.SGD([p], lr=0.1), torch.optim.SGD([p], lr=0.1)
    s1 = torch.optim.lr_scheduler.StepLR(o1, step_size=30, gamma=0.5)
    s2 = torch.optim.lr_scheduler.CosineAnnealingLR(o2, T_max=200)
    a, b = StepDecay(0.1, 30, 0.5), Cosine(0.1, 200)
    for t in range(200):
        assert np.isclose(o1.param_groups[0]["lr"], a(t), rtol=1e-9)
        assert np.isclose(o2.param_groups[0]["lr"], b(t), rtol=1e-9, atol=1e-15)
        o1.step()
        o2.step()
        s1.step()
        s2.step()


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (lambda: SGD(), lambda ps: torch.optim.SGD(ps, lr=0.05)),
        (lambda: SGD(momentum=0.9), lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9)),
        (
            lambda: SGD(momentum=0.9, nesterov=True),
            lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True),
        ),
        (lambda: Adam(), lambda ps: torch.optim.Adam(ps, lr=0.05)),
        (
            lambda: Adam(decoupled_weight_decay=0.1, decay_names=["w"]),
            lambda ps: torch.optim.AdamW(
                [{"params": ps[:1], "weight_decay": 0.1}, {"params": ps[1:], "weight_decay": 0.0}],
                lr=0.05,
            ),
        ),
        (lambda: SGD(momentum=0.5, decoupled_weight_decay=0.2, decay_names=["w"]), None),
        # the course's L2 on "w" only is PyTorch's (coupled) weight_decay = 2 * l2 on it
        (
            lambda: SGD(l2=0.3, decay_names=["w"]),
            lambda ps: torch.optim.SGD(
                [{"params": ps[:1], "weight_decay": 0.6}, {"params": ps[1:]}], lr=0.05
            ),
        ),
        (
            lambda: SGD(momentum=0.9, nesterov=True, l2=0.3, decay_names=["w"]),
            lambda ps: torch.optim.SGD(
                [{"params": ps[:1], "weight_decay": 0.6}, {"params": ps[1:]}],
                lr=0.05,
                momentum=0.9,
                nesterov=True,
            ),
        ),
        (
            lambda: Adam(l2=0.3, decay_names=["w"]),
            lambda ps: torch.optim.Adam(
                [{"params": ps[:1], "weight_decay": 0.6}, {"params": ps[1:]}], lr=0.05
            ),
        ),
    ],
)
def test_optimizer_steps_match_torch(ours, theirs):
    rng = np.random.default_rng(4)
    w0, b0 = rng.standard_normal((5, 3)), rng.standard_normal(3)
    params = {"w": w0.copy(), "b": b0.copy()}
    opt = ours()
    tw = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    tb = torch.nn.Parameter(torch.from_numpy(b0.copy()))
    if theirs is None:  # SGDW: torch.optim.SGD couples weight decay; emulate decoupled by hand
        topt = torch.optim.SGD([tw, tb], lr=0.05, momentum=0.5)
    else:
        topt = theirs([tw, tb])
    target = rng.standard_normal((5, 3))
    for _ in range(6):
        loss_w = ((tw - torch.from_numpy(target)) ** 2).sum() + (tb**3).sum()
        topt.zero_grad()
        loss_w.backward()
        grads = {"w": tw.grad.numpy().copy(), "b": tb.grad.numpy().copy()}
        if theirs is None:
            with torch.no_grad():
                tw.mul_(1 - 0.05 * 0.2)
        topt.step()
        opt.step(params, grads, 0.05)  # plain gradients (scale 1)
        np.testing.assert_allclose(params["w"], tw.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(params["b"], tb.detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_softmax_cross_entropy_with_label_smoothing_matches_torch(eps):
    from mlplab.nn.losses import cross_entropy, softmax_cross_entropy

    rng = np.random.default_rng(5)
    logits = rng.normal(0, 3, (9, 10))
    y = rng.integers(0, 10, 9)
    t = torch.from_numpy(logits).requires_grad_(True)
    tl = torch.nn.functional.cross_entropy(t, torch.from_numpy(y), label_smoothing=eps)
    tl.backward()
    loss, grad = softmax_cross_entropy(logits, y, eps)
    assert loss == pytest.approx(tl.item(), rel=1e-12)
    assert cross_entropy(logits, y, eps) == pytest.approx(tl.item(), rel=1e-12)
    np.testing.assert_allclose(grad, t.grad.numpy(), rtol=1e-10, atol=1e-14)
