"""optim.name (adamw, sgd, lars) and the parameter groups that keep biases and norms out of weight decay."""
import numpy as np
import pytest
import torch
from torch import nn

from core.errors import UserError
from training.optimizers import LARS, build_optimizer, parameter_groups

CFG = {"name": "adamw", "lr": 0.1, "weight_decay": 0.5, "betas": [0.9, 0.999], "momentum": 0.9, "lars_eta": 0.001}


def model() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    frozen = nn.Linear(2, 2)
    for p in frozen.parameters():
        p.requires_grad_(False)
    net.add_module("teacher", frozen)
    return net


def test_groups_put_weights_in_decay_and_biases_and_norms_out_and_leave_frozen_parameters_out():
    net = model()
    decay, no_decay = parameter_groups(net, 0.5)
    assert {id(p) for p in decay["params"]} == {id(net[0].weight), id(net[2].weight)}
    assert {id(p) for p in no_decay["params"]} == {id(net[0].bias), id(net[1].weight), id(net[1].bias),
                                                  id(net[2].bias)}
    assert decay["weight_decay"] == 0.5 and no_decay["weight_decay"] == 0.0


@pytest.mark.parametrize("name", ["adamw", "sgd", "lars"])
def test_with_a_zero_gradient_only_weights_decay(name):
    net = model()
    optimizer = build_optimizer({**CFG, "name": name}, net)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    for p in net.parameters():
        p.grad = torch.zeros_like(p) if p.requires_grad else None
    optimizer.step()
    for n, p in net.named_parameters():
        assert (not torch.equal(p, before[n])) == (p.ndim > 1 and p.requires_grad), n
    # AdamW's decay is decoupled: w <- w (1 - lr wd) when the gradient is zero.
    if name == "adamw":
        torch.testing.assert_close(net[0].weight, before["0.weight"] * (1 - 0.1 * 0.5))


def lars_reference(w, grads, lr, momentum, wd, eta, adapt):
    """LARS in float64 NumPy, step by step (You et al. 2017, SimCLR's implementation)."""
    w, v = w.astype(np.float64).copy(), np.zeros_like(w, dtype=np.float64)
    for g in grads:
        g = g.astype(np.float64)
        if adapt:
            g = g + wd * w
            wn, gn = np.linalg.norm(w), np.linalg.norm(g)
            g = g * (eta * wn / gn if wn > 0 and gn > 0 else 1.0)
        v = momentum * v + lr * g
        w = w - v
    return w


@pytest.mark.parametrize("adapt", [True, False])
def test_lars_matches_a_float64_reference_over_several_steps(adapt):
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((5, 3))
    grads = [rng.standard_normal((5, 3)) for _ in range(4)]
    p = nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    optimizer = LARS([{"params": [p], "weight_decay": 0.1 if adapt else 0.0, "adapt": adapt}], lr=0.5,
                     momentum=0.9, eta=0.02)
    for g in grads:
        p.grad = torch.tensor(g)
        optimizer.step()
    expected = lars_reference(w0, grads, 0.5, 0.9, 0.1 if adapt else 0.0, 0.02, adapt)
    np.testing.assert_allclose(p.detach().numpy(), expected, rtol=1e-12, atol=1e-12)


def test_lars_trust_ratio_is_one_for_a_zero_weight():
    p = nn.Parameter(torch.zeros(2, 2, dtype=torch.float64))
    optimizer = LARS([{"params": [p], "weight_decay": 0.0, "adapt": True}], lr=0.1, momentum=0.0, eta=0.001)
    p.grad = torch.ones(2, 2, dtype=torch.float64)
    optimizer.step()
    assert torch.equal(p.detach(), torch.full((2, 2), -0.1, dtype=torch.float64))


def test_unknown_optimizer_names_the_choices():
    with pytest.raises(UserError, match="optim.name must be one of adamw, sgd, lars; got 'adam'"):
        build_optimizer({**CFG, "name": "adam"}, model())
