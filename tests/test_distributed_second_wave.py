"""Two gloo processes, each with half the batch, against one process with all of it, for the
second-wave losses: Barlow Twins, debiased / hard-negative contrast, the all-pairs Siamese margin
loss, the decoupled loss DCL / DCLW and SimCSE's one-directional InfoNCE.

As tests/test_distributed_losses.py: inputs come from small shared linear layers, so parameter
gradients exist; each rank computes its loss on its half and backpropagates through the gather;
the mean of the per-rank losses and of the per-rank gradients (what DDP averages) must equal
the one-process full-batch loss and gradient.
"""
import os

import pytest
import torch

from conftest import gloo_group, spawn_ranks
from objectives import functional as L

WORLD = 2
BATCH = 8  # full batch; 4 rows per rank
# Classes spread over both halves: label 1 has a sample on each rank, label 3 one sample only.
LABELS = torch.tensor([0, 1, 2, 3, 1, 0, 2, 2])


def make_model():
    torch.manual_seed(0)
    return torch.nn.ModuleDict({"a": torch.nn.Linear(6, 5), "b": torch.nn.Linear(6, 5)})


def make_inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randn(BATCH, 2, 6, generator=g)


def case_loss(name, model, views, labels):
    feats = model["a"](views)  # (B, 2, 5)
    if name == "barlow_twins":
        return L.barlow_twins_loss(feats[:, 0], model["b"](views[:, 1]), lambd=0.1)
    if name.startswith("debiased"):
        return L.debiased_loss(feats, 0.5, 0.1, 1.0, labels if name.endswith("labels") else None)
    if name == "siamese_raw":  # not normalized: the margin in the head's scale
        return L.siamese_loss(feats, None, 3.0, normalize=False)
    if name.startswith("siamese"):  # a margin most pairs fall inside, so the hinge has gradient
        return L.siamese_loss(feats, labels if "labels" in name else None, 1.8, balanced="balanced" in name)
    if name.startswith(("decoupled", "dclw")):
        sigma = 0.5 if name.startswith("dclw") else None
        return L.decoupled_loss(feats, labels if name.endswith("labels") else None, 0.2, sigma)
    if name == "infonce":
        return L.infonce_loss(feats[:, 0], model["b"](views[:, 1]), 0.05)
    raise KeyError(name)


CASES = ["barlow_twins", "debiased", "debiased_labels", "siamese", "siamese_balanced", "siamese_labels",
         "siamese_balanced_labels", "siamese_raw", "decoupled", "decoupled_labels", "dclw", "dclw_labels", "infonce"]


def loss_and_grads(name, views, labels):
    model = make_model()
    loss = case_loss(name, model, views, labels)
    loss.backward()
    return loss.detach(), [torch.zeros_like(p) if p.grad is None else p.grad for p in model.parameters()]


def worker(rank, out_dir):
    with gloo_group(rank, WORLD, out_dir):
        views = make_inputs()
        rows = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        results = {name: loss_and_grads(name, views[rows], LABELS[rows]) for name in CASES}
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))


@pytest.fixture(scope="module")
def per_rank(tmp_path_factory):
    out_dir = str(tmp_path_factory.mktemp("ddp"))
    return spawn_ranks(worker, WORLD, out_dir)


@pytest.mark.parametrize("name", CASES)
def test_two_ranks_equal_one_process(per_rank, name):
    views = make_inputs()
    loss, grads = loss_and_grads(name, views, LABELS)
    assert any(float(g.abs().max()) > 1e-4 for g in grads), "the case has no gradient to compare"
    ddp_loss = sum(r[name][0] for r in per_rank) / WORLD
    torch.testing.assert_close(ddp_loss, loss, atol=1e-5, rtol=1e-5)
    for i, grad in enumerate(grads):
        ddp_grad = sum(r[name][1][i] for r in per_rank) / WORLD
        torch.testing.assert_close(ddp_grad, grad, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["siamese", "decoupled", "dclw"])
def test_ranks_see_different_losses(per_rank, name):
    # Guards the comparison above: were each rank scoring only its own half, or the whole batch
    # twice, the ranks' losses would not be the halves' shares of the full one.
    assert not torch.equal(per_rank[0][name][0], per_rank[1][name][0])
