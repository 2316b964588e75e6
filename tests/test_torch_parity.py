"""Same weights as torch.nn.RNN/LSTM/GRU: outputs, final states and every gradient, float64."""

import numpy as np
import pytest

import seqbench as sb

torch = pytest.importorskip("torch")

MODULES = {
    ("elman", "tanh"): lambda **kw: torch.nn.RNN(nonlinearity="tanh", **kw),
    ("elman", "relu"): lambda **kw: torch.nn.RNN(nonlinearity="relu", **kw),
    ("lstm", None): lambda **kw: torch.nn.LSTM(**kw),
    ("gru", None): lambda **kw: torch.nn.GRU(**kw),
}
# (B, T, I, H, layers, bidirectional), including T=1 and B=1
SHAPES = [
    (3, 5, 4, 6, 1, False),
    (1, 1, 2, 3, 1, False),
    (1, 7, 1, 4, 1, True),
    (2, 6, 3, 5, 2, True),
    (4, 1, 3, 2, 2, False),
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}-T{}-I{}-H{}-L{}-bi{:d}".format(*s))
@pytest.mark.parametrize("kind", list(MODULES), ids=lambda k: "-".join(filter(None, k)))
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_matches_torch_float64(kind, shape, backend):
    B, T, I, H, L, bi = shape
    cell, nonlin = kind
    torch.manual_seed(0)
    mod = MODULES[kind](
        input_size=I, hidden_size=H, num_layers=L, bidirectional=bi, batch_first=True
    ).double()
    opts = {"nonlinearity": nonlin} if nonlin else {}
    model = sb.build_model(
        cell, I, H, num_layers=L, bidirectional=bi, dtype="float64", backend=backend, **opts
    )
    model.load_state_dict({k: v.detach().numpy() for k, v in mod.state_dict().items()})
    assert model.parameters == sum(p.numel() for p in mod.parameters())

    rng = np.random.default_rng(B * 100 + T)
    n = L * (2 if bi else 1)
    x = rng.standard_normal((B, T, I))
    h0 = rng.standard_normal((n, B, H))
    c0 = rng.standard_normal((n, B, H))
    xt = torch.tensor(x, requires_grad=True)
    h0t = torch.tensor(h0, requires_grad=True)
    c0t = torch.tensor(c0, requires_grad=True)
    lstm = cell == "lstm"
    yt, st = mod(xt, (h0t, c0t) if lstm else h0t)
    dy = rng.standard_normal(yt.shape)
    dh = rng.standard_normal((n, B, H))
    dc = rng.standard_normal((n, B, H))
    obj = (yt * torch.tensor(dy)).sum()
    if lstm:
        obj = obj + (st[0] * torch.tensor(dh)).sum() + (st[1] * torch.tensor(dc)).sum()
    else:
        obj = obj + (st * torch.tensor(dh)).sum()
    obj.backward()

    y, tape = model.forward(x, (h0, c0) if lstm else h0)
    g = model.backward(tape, dy, (dh, dc) if lstm else dh)
    tol = 1e-10
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=0, atol=tol)
    if lstm:
        np.testing.assert_allclose(tape.h_n, st[0].detach().numpy(), rtol=0, atol=tol)
        np.testing.assert_allclose(tape.c_n, st[1].detach().numpy(), rtol=0, atol=tol)
        np.testing.assert_allclose(g.initial_state[1], c0t.grad.numpy(), rtol=0, atol=tol)
        np.testing.assert_allclose(g.initial_state[0], h0t.grad.numpy(), rtol=0, atol=tol)
    else:
        np.testing.assert_allclose(tape.h_n, st.detach().numpy(), rtol=0, atol=tol)
        np.testing.assert_allclose(g.initial_state, h0t.grad.numpy(), rtol=0, atol=tol)
    np.testing.assert_allclose(g["input"], xt.grad.numpy(), rtol=0, atol=tol)
    for name, p in mod.named_parameters():
        np.testing.assert_allclose(g[name], p.grad.numpy(), rtol=0, atol=tol, err_msg=name)
