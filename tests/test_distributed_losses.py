"""Two gloo processes, each with half the batch, against one process with all of it.

Inputs come from small shared linear layers (and a learnable logit scale /
bias), so parameter gradients exist. Each rank computes its loss on its half
and backpropagates through the gather; the test then reduces as DDP does
(mean of per-rank gradients, and mean of per-rank losses) and compares with
the one-process full-batch loss and gradient.
"""
import os

import pytest
import torch

from conftest import gloo_group, spawn_ranks
from objectives import functional as L

WORLD = 2
BATCH = 8  # full batch; 4 rows per rank
# Labels spread over both halves, with singletons: with one view, rank 0 has
# one anchor with a positive (label 1, its positive on rank 1), rank 1 has four.
LABELS = torch.tensor([0, 1, 2, 3, 1, 4, 4, 4])


def make_model():
    torch.manual_seed(0)
    return torch.nn.ModuleDict({
        "a": torch.nn.Linear(6, 5), "b": torch.nn.Linear(6, 5),
        "scale": torch.nn.ParameterList([torch.nn.Parameter(torch.tensor(4.0)),
                                         torch.nn.Parameter(torch.tensor(-2.0))]),
    })


def make_inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randn(BATCH, 2, 6, generator=g), torch.randn(BATCH, 6, generator=g)


def case_loss(name, model, views, other, labels):
    scale, bias = model["scale"]
    feats, a, b = model["a"](views), model["a"](views[:, 0]), model["b"](other)
    if name == "supcon_multi_label":  # multi-hot labels from the classes; class 1 rows have none
        multi_hot = torch.stack([labels % 2 == 0, labels >= 3, labels == 2], 1).float()
        return L.supcon_loss(feats[:, :1], multi_hot, 0.2)
    if name.startswith("supcon"):  # one view: anchors with a positive differ per rank
        return L.supcon_loss(feats[:, :1], labels, 0.2, tiled=name.endswith("tiled"))
    if name.startswith("nt_xent"):
        return L.nt_xent_loss(feats, 0.2, tiled=name.endswith("tiled"))
    if name.startswith("clip"):
        return L.clip_loss(a, b, scale, tiled=name.endswith("tiled"))
    if name == "convirt":
        return L.convirt_loss(a, b, 0.3, 0.75)
    if name.startswith("siglip"):
        return L.siglip_loss(a, b, scale, bias, chunk=3 if name.endswith("chunked") else 4096)
    raise KeyError(name)


CASES = ["supcon", "supcon_tiled", "supcon_multi_label", "nt_xent", "nt_xent_tiled", "clip", "clip_tiled", "convirt",
         "siglip", "siglip_chunked"]


def loss_and_grads(name, views, other, labels):
    model = make_model()
    loss = case_loss(name, model, views, other, labels)
    loss.backward()
    return loss.detach(), [torch.zeros_like(p) if p.grad is None else p.grad for p in model.parameters()]


def worker(rank, out_dir):
    with gloo_group(rank, WORLD, out_dir):
        views, other = make_inputs()
        rows = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        results = {name: loss_and_grads(name, views[rows], other[rows], LABELS[rows]) for name in CASES}
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))


@pytest.fixture(scope="module")
def per_rank(tmp_path_factory):
    out_dir = str(tmp_path_factory.mktemp("ddp"))
    return spawn_ranks(worker, WORLD, out_dir)


@pytest.mark.parametrize("name", CASES)
def test_two_ranks_equal_one_process(per_rank, name):
    views, other = make_inputs()
    loss, grads = loss_and_grads(name, views, other, LABELS)
    ddp_loss = sum(r[name][0] for r in per_rank) / WORLD
    torch.testing.assert_close(ddp_loss, loss, atol=1e-5, rtol=1e-5)
    for i, grad in enumerate(grads):
        ddp_grad = sum(r[name][1][i] for r in per_rank) / WORLD
        torch.testing.assert_close(ddp_grad, grad, atol=1e-5, rtol=1e-5)


def test_helpers_without_process_group():
    from core import process_group
    from objectives import distributed as D

    x = torch.randn(3, 2)
    assert process_group.rank() == 0 and process_group.world_size() == 1 and process_group.is_main()
    assert not process_group.is_distributed()
    assert D.gather_with_grad(x) is x and D.gather_no_grad(x) is x
