"""BYOL, SimSiam and Barlow Twins losses against float64 loop references and analytic values."""
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
