"""Second-wave losses (BYOL, SimSiam, Barlow Twins, debiased and hard-negative contrast) against float64 loop references and analytic values."""
import numpy as np
import pytest
import torch

from objectives import functional as L


def cos(u, v):
    return float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))


def views(seed, b=5, d=4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 2, d, generator=g, dtype=torch.float64), torch.randn(b, 2, d, generator=g,
                                                                              dtype=torch.float64)


def test_byol_equals_the_summed_two_directions_of_a_loop_reference():
    q, z = views(0)
    qn, zn = q.numpy(), z.numpy()
    expected = np.mean([(2 - 2 * cos(qn[i, 0], zn[i, 1])) + (2 - 2 * cos(qn[i, 1], zn[i, 0])) for i in range(len(q))])
    assert L.byol_loss(q, z).item() == pytest.approx(expected, rel=1e-6)


def test_byol_and_simsiam_analytic_values():
    q, _ = views(1)
    swapped = q[:, [1, 0]]  # targets whose other view is the prediction itself: cosine 1
    assert L.byol_loss(q, swapped).item() == pytest.approx(0.0, abs=1e-6)
    assert L.byol_loss(q, -swapped).item() == pytest.approx(8.0, abs=1e-5)
    assert L.simsiam_loss(q, swapped).item() == pytest.approx(-1.0, abs=1e-6)
    assert L.simsiam_loss(q, -swapped).item() == pytest.approx(1.0, abs=1e-6)


def test_simsiam_equals_a_loop_reference():
    p, z = views(2)
    pn, zn = p.numpy(), z.numpy()
    expected = np.mean([-cos(pn[i, 0], zn[i, 1]) / 2 - cos(pn[i, 1], zn[i, 0]) / 2 for i in range(len(p))])
    assert L.simsiam_loss(p, z).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("loss", [L.byol_loss, L.simsiam_loss])
def test_no_gradient_reaches_the_target_side(loss):
    p, z = views(3)
    p.requires_grad_(True)
    z.requires_grad_(True)
    loss(p, z).backward()
    assert z.grad is None and p.grad is not None and p.grad.abs().sum() > 0


def barlow_reference(a, b, lambd, eps=1e-5):
    n, d = a.shape
    an = (a - a.mean(0)) / np.sqrt(a.var(0) + eps)  # numpy var: biased, as batch norm
    bn = (b - b.mean(0)) / np.sqrt(b.var(0) + eps)
    total = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(an[k, i] * bn[k, j] for k in range(n)) / n
            total += (1 - c) ** 2 if i == j else lambd * c ** 2
    return total


def test_barlow_twins_equals_a_loop_reference():
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(7, 3, generator=g, dtype=torch.float64), torch.randn(7, 3, generator=g, dtype=torch.float64)
    for lambd in (5e-3, 1.0):
        expected = barlow_reference(a.numpy(), b.numpy(), lambd)
        assert L.barlow_twins_loss(a, b, lambd).item() == pytest.approx(expected, rel=1e-5)


def test_barlow_twins_of_decorrelated_matching_projections_is_zero():
    # Columns with mean 0, variance 1 and zero correlation: C is the identity (up to eps), so both terms vanish.
    a = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert L.barlow_twins_loss(a, a.clone()).item() == pytest.approx(0.0, abs=1e-8)
    # The same projections with the columns swapped: C has zeros on its diagonal, ones off it.
    assert L.barlow_twins_loss(a, a[:, [1, 0]], lambd=0.5).item() == pytest.approx(2 + 0.5 * 2, rel=1e-4)


@pytest.mark.parametrize("loss, args", [(L.byol_loss, ((4, 3, 2), (4, 2, 2))), (L.simsiam_loss, ((4, 2), (4, 2))),
                                        (L.barlow_twins_loss, ((4, 2), (4, 3)))])
def test_bad_shapes_are_refused(loss, args):
    with pytest.raises(ValueError, match="expected"):
        loss(torch.zeros(args[0]), torch.zeros(args[1]))


def debiased_reference(features, t, tau_plus, beta, labels=None):
    """Chuang et al. / Robinson et al. per anchor in float64 loops."""
    b = features.shape[0]
    z = features.reshape(2 * b, -1)
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    sample = np.repeat(np.arange(b), 2)
    lab = None if labels is None else np.repeat(labels, 2)
    losses = []
    for i in range(2 * b):
        p = i + 1 if i % 2 == 0 else i - 1
        s_pos = z[i] @ z[p] / t
        negs = [z[i] @ z[j] / t for j in range(2 * b)
                if sample[j] != sample[i] and (lab is None or lab[j] != lab[i])]
        neg = np.exp(negs)
        imp = neg ** beta
        reweighted = (imp * neg).sum() / imp.mean()
        n = len(negs)
        ng = max((reweighted - n * tau_plus * np.exp(s_pos)) / (1 - tau_plus), n * np.exp(-1 / t))
        losses.append(-np.log(np.exp(s_pos) / (np.exp(s_pos) + ng)))
    return float(np.mean(losses))


@pytest.mark.parametrize("tau_plus, beta", [(0.1, 0.0), (0.05, 1.0), (0.0, 0.5)])
def test_debiased_loss_equals_a_loop_reference(tau_plus, beta):
    x, _ = views(5, b=6, d=3)
    assert L.debiased_loss(x, 0.5, tau_plus, beta).item() == pytest.approx(
        debiased_reference(x.numpy(), 0.5, tau_plus, beta), rel=1e-5)
    labels = np.array([0, 1, 0, 2, 1, 2])
    assert L.debiased_loss(x, 0.5, tau_plus, beta, torch.tensor(labels)).item() == pytest.approx(
        debiased_reference(x.numpy(), 0.5, tau_plus, beta, labels), rel=1e-5)


def test_debiased_loss_without_prior_or_hardness_is_nt_xent():
    x, _ = views(6, b=5, d=4)
    for t in (0.1, 0.5):
        assert L.debiased_loss(x, t, 0.0, 0.0).item() == pytest.approx(L.nt_xent_loss(x, t).item(), rel=1e-6)
