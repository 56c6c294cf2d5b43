"""TS2Vec's three losses (objectives/functional/temporal.py): against float64 loop references
and analytic values, and two gloo ranks, each with half the batch, against one process with all
of it. The crops, the encoder and the configs: test_ts2vec_objective.py."""
import math
import os

import pytest
import torch
from torch import nn

from conftest import gloo_group, spawn_ranks
from objectives import functional as L
from objectives import ts2vec as T2V


# ---- loop references: plain Python floats, one score at a time

def dot(u, v):
    return sum(a * b for a, b in zip(u, v))


def nll(scores, positive):
    """-log softmax(scores)[positive] with the max subtracted."""
    top = max(scores)
    return top + math.log(sum(math.exp(s - top) for s in scores)) - scores[positive]


def ref_instance(z1, z2):
    B, T = len(z1), len(z1[0])
    if B == 1:
        return 0.0
    terms = []
    for t in range(T):
        rows = [z1[i][t] for i in range(B)] + [z2[i][t] for i in range(B)]
        for a in range(2 * B):
            others = [c for c in range(2 * B) if c != a]
            positive = others.index(a + B if a < B else a - B)
            terms.append(nll([dot(rows[a], rows[c]) for c in others], positive))
    return sum(terms) / len(terms)


def ref_temporal(z1, z2):
    B, T = len(z1), len(z1[0])
    if T == 1:
        return 0.0
    terms = []
    for i in range(B):
        steps = z1[i] + z2[i]
        for a in range(2 * T):
            others = [c for c in range(2 * T) if c != a]
            positive = others.index(a + T if a < T else a - T)
            terms.append(nll([dot(steps[a], steps[c]) for c in others], positive))
    return sum(terms) / len(terms)


def ref_pool(z):
    return [[[max(s[2 * k][d], s[2 * k + 1][d]) for d in range(len(s[0]))] for k in range(len(s) // 2)] for s in z]


def ref_hierarchical(z1, z2, alpha=0.5, temporal_unit=0):
    """Returns (loss, number of levels)."""
    total, level = 0.0, 0
    while True:
        total += alpha * ref_instance(z1, z2)
        if len(z1[0]) > 1 and level >= temporal_unit:
            total += (1 - alpha) * ref_temporal(z1, z2)
        level += 1
        if len(z1[0]) == 1:
            return total / level, level
        z1, z2 = ref_pool(z1), ref_pool(z2)


def pair(B, T, D, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, D, generator=g, dtype=torch.float64), torch.randn(B, T, D, generator=g,
                                                                              dtype=torch.float64)


SHAPES = [(3, 8, 4), (2, 5, 3), (1, 6, 2), (4, 1, 3), (2, 7, 2)]


@pytest.mark.parametrize("B, T, D", SHAPES)
def test_instance_and_temporal_terms_equal_loop_references(B, T, D):
    z1, z2 = pair(B, T, D, seed=B * 100 + T)
    assert L.instance_contrastive_loss(z1, z2).item() == pytest.approx(ref_instance(z1.tolist(), z2.tolist()), rel=1e-9)
    assert L.temporal_contrastive_loss(z1, z2).item() == pytest.approx(ref_temporal(z1.tolist(), z2.tolist()), rel=1e-9)


@pytest.mark.parametrize("B, T, D", SHAPES)
@pytest.mark.parametrize("alpha, temporal_unit", [(0.5, 0), (0.3, 1), (0.0, 0), (1.0, 0)])
def test_hierarchical_loss_equals_loop_reference(B, T, D, alpha, temporal_unit):
    z1, z2 = pair(B, T, D, seed=T * 10 + D)
    expected, _ = ref_hierarchical(z1.tolist(), z2.tolist(), alpha, temporal_unit)
    got = L.hierarchical_contrastive_loss(z1, z2, alpha, temporal_unit).item()
    assert got == pytest.approx(expected, rel=1e-9)


def test_float32_inputs_match_the_float64_reference():
    z1, z2 = pair(3, 8, 4, seed=5)
    expected, _ = ref_hierarchical(z1.tolist(), z2.tolist())
    got = L.hierarchical_contrastive_loss(z1.float(), z2.float())
    assert got.dtype == torch.float32 and got.item() == pytest.approx(expected, rel=1e-5)


def test_eight_steps_give_four_levels_of_known_terms():
    # All scores 0: each instance term is log(2B - 1), each temporal term log(2T_level - 1).
    B = 2
    z = torch.zeros(B, 8, 3, dtype=torch.float64)
    _, levels = ref_hierarchical(z.tolist(), z.tolist())
    assert levels == 4  # lengths 8, 4, 2, 1
    instance = 0.5 * math.log(3)
    expected = (4 * instance + 0.5 * (math.log(15) + math.log(7) + math.log(3))) / 4
    assert L.hierarchical_contrastive_loss(z, z.clone()).item() == pytest.approx(expected, rel=1e-12)
    expected_unit2 = (4 * instance + 0.5 * math.log(3)) / 4  # temporal only at level 2 (length 2)
    assert L.hierarchical_contrastive_loss(z, z.clone(), temporal_unit=2).item() == pytest.approx(expected_unit2)


def test_hand_computed_two_series_one_step():
    # Rows at the one timestamp: a=1, b=0 (view 1), c=1, d=0 (view 2); positives a<->c, b<->d.
    z1 = torch.tensor([[[1.0]], [[0.0]]], dtype=torch.float64)
    z2 = z1.clone()
    row_one = math.log(math.e + 2) - 1  # a: scores ab=0, ac=1, ad=0, positive c (the same for c)
    row_zero = math.log(3)               # b: every score 0 (the same for d)
    instance = (2 * row_one + 2 * row_zero) / 4
    assert L.instance_contrastive_loss(z1, z2).item() == pytest.approx(instance, rel=1e-12)
    assert L.temporal_contrastive_loss(z1, z2).item() == 0.0
    assert L.hierarchical_contrastive_loss(z1, z2, alpha=0.5).item() == pytest.approx(0.5 * instance, rel=1e-12)


def test_one_series_has_no_instance_term_and_one_step_no_temporal_term():
    z1, z2 = pair(1, 6, 3, seed=0)
    assert L.instance_contrastive_loss(z1, z2).item() == 0.0
    assert L.temporal_contrastive_loss(z1, z2).item() > 0
    z1, z2 = pair(4, 1, 3, seed=1)
    assert L.temporal_contrastive_loss(z1, z2).item() == 0.0
    assert L.instance_contrastive_loss(z1, z2).item() > 0


@pytest.mark.parametrize("loss", [L.instance_contrastive_loss, L.temporal_contrastive_loss,
                                  L.hierarchical_contrastive_loss])
def test_shape_mismatch_is_a_value_error(loss):
    with pytest.raises(ValueError, match="equal shape"):
        loss(torch.randn(2, 5, 3), torch.randn(2, 4, 3))
    with pytest.raises(ValueError, match="equal shape"):
        loss(torch.randn(2, 5), torch.randn(2, 5))


def test_hierarchical_loss_gradcheck():
    z1, z2 = pair(2, 5, 3, seed=9)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: L.hierarchical_contrastive_loss(a, b), (z1, z2))


# ---- two gloo ranks, each with half the batch, against one process with all of it

WORLD, BATCH = 2, 6


def make_projection():
    torch.manual_seed(0)
    return nn.ModuleDict({"a": nn.Linear(4, 3), "b": nn.Linear(4, 3)})


def make_series():
    g = torch.Generator().manual_seed(1)
    return torch.randn(BATCH, 8, 4, generator=g), torch.randn(BATCH, 8, 4, generator=g)


LOSSES = {"hierarchical": lambda a, b: L.hierarchical_contrastive_loss(a, b, 0.4, 1),
          "instance": L.instance_contrastive_loss, "temporal": L.temporal_contrastive_loss}


def loss_and_grads(name, x1, x2):
    model = make_projection()
    loss = LOSSES[name](model["a"](x1), model["b"](x2))
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def worker(rank, out_dir):
    with gloo_group(rank, WORLD, out_dir):
        x1, x2 = make_series()
        rows = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        results = {name: loss_and_grads(name, x1[rows], x2[rows]) for name in LOSSES}
        torch.manual_seed(rank)  # different RNG states and spans on the two ranks
        end = torch.full((3,), 20 + 10 * rank)
        crop = T2V.draw_crop(torch.zeros(3, dtype=torch.long), end, 2, torch.device("cpu"))
        results["crop"] = (crop.length, crop.left, crop.eleft, crop.eright)
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))


@pytest.fixture(scope="module")
def per_rank(tmp_path_factory):
    out_dir = str(tmp_path_factory.mktemp("ts2vec_ddp"))
    return spawn_ranks(worker, WORLD, out_dir)


@pytest.mark.parametrize("name", list(LOSSES))
def test_two_ranks_equal_one_process(per_rank, name):
    loss, grads = loss_and_grads(name, *make_series())
    torch.testing.assert_close(sum(r[name][0] for r in per_rank) / WORLD, loss, atol=1e-5, rtol=1e-5)
    for i, grad in enumerate(grads):
        torch.testing.assert_close(sum(r[name][1][i] for r in per_rank) / WORLD, grad, atol=1e-5, rtol=1e-5)


def test_ranks_share_one_crop_geometry_within_the_shortest_span(per_rank):
    geometries = [r["crop"] for r in per_rank]
    assert geometries[0] == geometries[1]
    length, left, eleft, eright = geometries[0]
    assert 2 <= length and eleft <= left and left + length <= eright <= 20  # rank 0's span is the shortest
