"""The Siamese margin loss over all pairs (Hadsell et al. 2006), the decoupled loss DCL / DCLW
(Yeh et al. 2022) and SimCSE's one-directional InfoNCE, against float64 loop references written
from the papers' formulas (one pair or anchor at a time, no shared code) and hand-computed values;
the contrastive objective's wiring and logged distances; simclr / supcon with ``decoupled`` off
unchanged."""
import math

import numpy as np
import pytest
import torch

import objectives  # noqa: F401  (registers every objective)
from core import registry
from core.errors import UserError
from objectives import functional as L
from objectives.functional.decoupled import dclw_weights

torch.set_num_threads(1)


def features(seed, b=5, v=2, d=4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, v, d, generator=g, dtype=torch.float64)


def rows_and_ids(x, labels):
    """Rows sample-major (sample 0's views first) as numpy vectors, with their ids."""
    b, v, _ = x.shape
    rows = [x[s, w].numpy() for s in range(b) for w in range(v)]
    ids = [(s if labels is None else int(labels[s])) for s in range(b) for w in range(v)]
    return rows, ids


def siamese_reference(x, labels, margin, normalize, balanced):
    rows, ids = rows_and_ids(x, labels)
    if normalize:
        rows = [r / np.linalg.norm(r) for r in rows]
    similar, dissimilar = [], []
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            dist = math.dist(rows[i], rows[j])
            if ids[i] == ids[j]:
                similar.append(dist ** 2)
            else:
                dissimilar.append(max(0.0, margin - dist) ** 2)
    if balanced:
        return (np.mean(similar) if similar else 0.0) + (np.mean(dissimilar) if dissimilar else 0.0)
    return (sum(similar) + sum(dissimilar)) / (len(similar) + len(dissimilar))


@pytest.mark.parametrize("normalize, margin", [(True, 1.0), (True, 1.9), (False, 2.5)])
@pytest.mark.parametrize("balanced", [False, True])
def test_siamese_loss_equals_a_loop_over_pairs(normalize, margin, balanced):
    x = features(0, b=5, v=3, d=3)
    for labels in (None, torch.tensor([0, 1, 0, 2, 1])):
        expected = siamese_reference(x, labels, margin, normalize, balanced)
        got = L.siamese_loss(x, labels, margin, normalize, balanced).item()
        assert got == pytest.approx(expected, rel=1e-5), labels


def test_siamese_loss_of_identical_views_and_far_negatives_is_zero():
    x = torch.eye(3)[:, None, :].repeat(1, 2, 1) * 3.0  # orthogonal samples: D = sqrt(2) > 1 once normalized
    assert L.siamese_loss(x, margin=1.0).item() == pytest.approx(0.0, abs=1e-6)
    assert L.siamese_loss(x, margin=1.0, balanced=True).item() == pytest.approx(0.0, abs=1e-6)
    assert L.siamese_loss(x, margin=1.5).item() > 0.0  # the same negatives inside a wider margin


def test_siamese_loss_hand_computed_two_samples():
    # Sample 0: views (1, 0), (0, 1), D^2 = 2. Sample 1: views (1, 0), (-1, 0), D^2 = 4.
    # Dissimilar: (1,0)-(1,0) D = 0 -> (1 - 0)^2 = 1; (1,0)-(-1,0) D = 2 and both (0,1) pairs
    # D = sqrt(2) are outside the margin 1 -> 0. Six pairs in all.
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [-1.0, 0.0]]], requires_grad=True)
    assert L.siamese_loss(x, margin=1.0).item() == pytest.approx((2 + 4 + 1) / 6, rel=1e-6)
    assert L.siamese_loss(x, margin=1.0, balanced=True).item() == pytest.approx((2 + 4) / 2 + 1 / 4, rel=1e-6)
    L.siamese_loss(x, margin=1.0).backward()
    assert torch.isfinite(x.grad).all()  # a dissimilar pair at distance 0 gives no NaN


def test_siamese_loss_refuses_bad_input():
    with pytest.raises(ValueError, match="batch, views, dim"):
        L.siamese_loss(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="at least 2 rows"):
        L.siamese_loss(torch.ones(1, 1, 3))
    with pytest.raises(ValueError, match="labels must have shape"):
        L.siamese_loss(torch.ones(3, 2, 3), torch.tensor([0, 1]))


def decoupled_reference(x, labels, t, sigma):
    """Yeh et al. eq. 6 / 8 per anchor; w over every (anchor, positive) pair of the batch."""
    rows, ids = rows_and_ids(x, labels)
    z = [r / np.linalg.norm(r) for r in rows]
    n = len(z)
    positives = {i: [p for p in range(n) if p != i and ids[p] == ids[i]] for i in range(n)}
    if sigma:
        mean_e = np.mean([math.exp(z[i] @ z[p] / sigma) for i in range(n) for p in positives[i]])
    losses = []
    for i in range(n):
        negatives = [k for k in range(n) if ids[k] != ids[i]]
        if not positives[i] or not negatives:
            continue
        pos = 0.0
        for p in positives[i]:
            w = 2 - math.exp(z[i] @ z[p] / sigma) / mean_e if sigma else 1.0
            pos += w * (z[i] @ z[p]) / t
        neg = math.log(sum(math.exp(z[i] @ z[k] / t) for k in negatives))
        losses.append(neg - pos / len(positives[i]))
    return float(np.mean(losses))


@pytest.mark.parametrize("sigma", [None, 0.5, 0.2])
@pytest.mark.parametrize("t", [0.1, 0.5])
def test_decoupled_loss_equals_a_loop_reference(sigma, t):
    x = features(1, b=6, v=2, d=3)
    assert L.decoupled_loss(x, None, t, sigma).item() == pytest.approx(decoupled_reference(x, None, t, sigma),
                                                                       rel=1e-5)
    x3 = features(2, b=5, v=3, d=4)
    labels = torch.tensor([0, 1, 0, 2, 1])  # label 2 has one sample: its rows' positives are its other views
    assert L.decoupled_loss(x3, labels, t, sigma).item() == pytest.approx(
        decoupled_reference(x3, labels, t, sigma), rel=1e-5)


def yeh_two_directions(x, t, sigma):
    """The reference code's form for two views: per direction -w diag(z1 z2^T)/t + logsumexp of
    [z1 z1^T, z1 z2^T] without the diagonals, w = 2 - B softmax(diag / sigma); both directions averaged."""
    z = x / x.norm(dim=-1, keepdim=True)
    total = 0.0
    for a, b in ((z[:, 0], z[:, 1]), (z[:, 1], z[:, 0])):
        n = len(a)
        diag = [float(a[i] @ b[i]) for i in range(n)]
        softmax = np.exp(np.array(diag) / sigma) / np.exp(np.array(diag) / sigma).sum() if sigma else None
        for i in range(n):
            w = 2 - n * softmax[i] if sigma else 1.0
            negatives = [float(a[i] @ a[k]) / t for k in range(n) if k != i]
            negatives += [float(a[i] @ b[k]) / t for k in range(n) if k != i]
            total += -w * diag[i] / t + math.log(sum(math.exp(v) for v in negatives))
    return total / (2 * len(z))


@pytest.mark.parametrize("sigma", [0, 0.5])
def test_decoupled_loss_equals_the_two_direction_form_of_the_reference_code(sigma):
    x = features(3, b=7, v=2, d=5)
    assert L.decoupled_loss(x, None, 0.2, sigma).item() == pytest.approx(yeh_two_directions(x, 0.2, sigma), rel=1e-5)


def test_decoupled_loss_analytic_value_and_its_bound_by_nt_xent():
    # Identical views of 3 orthonormal samples: s+ = 1 and 4 negatives at s = 0 for every anchor.
    x = torch.eye(3)[:, None, :].repeat(1, 2, 1)
    for sigma in (None, 0.5):  # equal positives: every DCLW weight is 1
        assert L.decoupled_loss(x, None, 0.5, sigma).item() == pytest.approx(-1 / 0.5 + math.log(4), rel=1e-6)
    y = features(4)
    # NT-Xent's denominator also holds the positive: it is larger, anchor by anchor.
    assert L.decoupled_loss(y, None, 0.1).item() < L.nt_xent_loss(y, 0.1).item()


def test_dclw_weights_by_hand():
    # Two samples whose views have cosines 1 and 0; sigma = 0.5: e = exp(2), exp(0).
    cos = torch.tensor([[1.0, 1.0, 0.3, -0.2], [1.0, 1.0, 0.1, 0.4], [0.3, 0.1, 1.0, 0.0], [-0.2, 0.4, 0.0, 1.0]])
    ids = torch.tensor([0, 0, 1, 1])
    positive = (ids[:, None] == ids[None, :]) & ~torch.eye(4, dtype=torch.bool)
    w = dclw_weights(cos, positive, 0.5)
    mean = (math.exp(2) + math.exp(0)) / 2  # each pair counted in both directions
    expected = torch.zeros(4, 4)
    expected[0, 1] = expected[1, 0] = 2 - math.exp(2) / mean
    expected[2, 3] = expected[3, 2] = 2 - 1 / mean
    torch.testing.assert_close(w, expected)
    assert float(w[positive].mean()) == pytest.approx(1.0)  # the weights average to 1 over the pairs


def test_decoupled_loss_refuses_anchors_without_negatives():
    with pytest.raises(ValueError, match="positive and a negative"):
        L.decoupled_loss(features(5, b=3), torch.tensor([1, 1, 1]))
    with pytest.raises(ValueError, match="weight_sigma"):
        L.decoupled_loss(features(5), None, 0.1, -1.0)


def test_infonce_loss_by_hand():
    a, b = features(6, b=4, v=2, d=3).unbind(1)
    an, bn = (a / a.norm(dim=1, keepdim=True)).numpy(), (b / b.norm(dim=1, keepdim=True)).numpy()
    t = 0.05
    expected = np.mean([-an[i] @ bn[i] / t + math.log(sum(math.exp(an[i] @ bn[j] / t) for j in range(4)))
                        for i in range(4)])
    assert L.infonce_loss(a, b, t).item() == pytest.approx(expected, rel=1e-5)
    assert L.infonce_loss(a, b, t, tiled=True).item() == pytest.approx(expected, rel=1e-5)


class Flat(torch.nn.Module):
    """Linear on the flattened input."""

    def __init__(self, in_dim=10, dim=6):
        super().__init__()
        self.linear, self.dims = torch.nn.Linear(in_dim, dim), {"embedding": dim}

    def forward(self, x):
        return {"embedding": self.linear(x.flatten(1))}


@pytest.mark.parametrize("name", ["simclr", "supcon"])
def test_decoupled_option_off_is_the_supcon_loss_and_on_is_the_decoupled_loss(name):
    g = torch.Generator().manual_seed(7)
    batch = {"views": torch.randn(8, 2, 2, 5, generator=g), "label": torch.arange(8) % 3}
    labels = batch["label"] if name == "supcon" else None
    losses = {}
    for decoupled, sigma in ((False, None), (True, None), (True, 0.5)):
        torch.manual_seed(0)
        encoders = {"x": Flat()}
        objective = registry.build("objective", name, encoders=encoders, decoupled=decoupled,
                                   decoupled_weight_sigma=sigma)
        z = objective.represent(encoders, batch)["z"]
        loss = objective(encoders, batch)["loss"]
        expected = L.decoupled_loss(z, labels, 0.1, sigma) if decoupled else L.supcon_loss(z, labels, 0.1)
        assert torch.equal(loss, expected)
        losses[decoupled, sigma] = loss.item()
    assert len(set(losses.values())) == 3


def test_decoupled_options_that_cannot_work_are_refused():
    with pytest.raises(UserError, match="objective.decoupled=true"):
        registry.build("objective", "simclr", encoders={"x": Flat()}, decoupled_weight_sigma=0.5)
    with pytest.raises(UserError, match="no tiled path"):
        registry.build("objective", "supcon", encoders={"x": Flat()}, decoupled=True, tiled=True)


def test_contrastive_objective_is_the_siamese_loss_of_its_projections_and_logs_distances():
    g = torch.Generator().manual_seed(8)
    batch = {"views": torch.randn(6, 2, 2, 5, generator=g), "label": torch.tensor([0, 1, 0, 2, 1, 2])}
    torch.manual_seed(0)
    encoders = {"x": Flat()}
    objective = registry.build("objective", "contrastive", encoders=encoders, margin=1.2)
    out = objective(encoders, batch)
    z = objective.represent(encoders, batch)["z"]
    torch.testing.assert_close(out["loss"], L.siamese_loss(z, None, 1.2, balanced=True))  # the default
    zn = (z / z.norm(dim=-1, keepdim=True)).reshape(12, -1).detach().tolist()
    similar, dissimilar = [], []
    for i in range(12):
        for j in range(12):
            if i != j:
                (similar if i // 2 == j // 2 else dissimilar).append(math.dist(zn[i], zn[j]))
    assert out["pos_dist"].item() == pytest.approx(np.mean(similar), abs=1e-5)
    assert out["neg_dist"].item() == pytest.approx(np.mean(dissimilar), abs=1e-5)
    assert out["neg_in_margin"].item() == pytest.approx(np.mean([d < 1.2 for d in dissimilar]))
    labelled = registry.build("objective", "contrastive", encoders=encoders, use_labels=True, balanced=True)
    torch.testing.assert_close(labelled(encoders, batch)["loss"], L.siamese_loss(
        labelled.represent(encoders, batch)["z"], batch["label"], 1.0, balanced=True))


def test_contrastive_margin_outside_the_unit_sphere_range_is_refused():
    with pytest.raises(UserError, match="margin must be in"):
        registry.build("objective", "contrastive", encoders={"x": Flat()}, margin=2.5)
    registry.build("objective", "contrastive", encoders={"x": Flat()}, margin=2.5, normalize=False)
