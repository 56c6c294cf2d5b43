"""objectives.functional losses against float64 loop references and analytic values.

The references below are written from the papers' formulas, one anchor/pair
at a time, in float64, so they share no code with the implementation.
"""
import math

import pytest
import torch

from objectives import functional as L

torch.set_num_threads(1)


def unit(x):
    return x.double() / x.double().norm(dim=-1, keepdim=True)


def logsumexp(values):
    m = max(v.item() for v in values)
    return m + torch.log(sum(torch.exp(v - m) for v in values))


def ref_supcon(features, labels, t):
    """Khosla et al. Eq. 2, anchor by anchor; rows ordered view-major."""
    b, v, _ = features.shape
    z = [unit(features[s, w]) for w in range(v) for s in range(b)]
    ids = [(s if labels is None else int(labels[s])) for w in range(v) for s in range(b)]
    terms = []
    for i in range(len(z)):
        others = [j for j in range(len(z)) if j != i]
        positives = [j for j in others if ids[j] == ids[i]]
        if not positives:
            continue
        log_denominator = logsumexp([z[i] @ z[a] / t for a in others])
        terms.append(-sum(z[i] @ z[p] / t - log_denominator for p in positives) / len(positives))
    return sum(terms) / len(terms)


def ref_infonce_row(anchor, keys, target, scale):
    return logsumexp([scale * anchor @ k for k in keys]) - scale * anchor @ keys[target]


def ref_clip(a, b, s):
    a, b = unit(a), unit(b)
    n = len(a)
    return sum(ref_infonce_row(a[i], b, i, s) + ref_infonce_row(b[i], a, i, s) for i in range(n)) / (2 * n)


def ref_convirt(image, text, t, lam):
    x, y = unit(image), unit(text)
    n = len(x)
    return sum(lam * ref_infonce_row(x[i], y, i, 1 / t) + (1 - lam) * ref_infonce_row(y[i], x, i, 1 / t)
               for i in range(n)) / n


def ref_siglip(a, b, s, bias):
    a, b = unit(a), unit(b)
    n = len(a)
    total = 0
    for i in range(n):
        for j in range(n):
            z = 1.0 if i == j else -1.0
            total = total - torch.log(torch.sigmoid(z * (s * (a[i] @ b[j]) + bias)))
    return total / n


def ref_triplet(a, p, n, margin):
    a, p, n = unit(a), unit(p), unit(n)
    return sum(max(0.0, math.dist(a[i].tolist(), p[i].tolist()) - math.dist(a[i].tolist(), n[i].tolist())
                   + margin) for i in range(len(a))) / len(a)


def ref_contrastive(x1, x2, same, margin):
    total = 0.0
    for u, w, y in zip(x1.double().tolist(), x2.double().tolist(), same.tolist()):
        d = math.dist(u, w)
        total += y * d ** 2 + (1 - y) * max(0.0, margin - d) ** 2
    return total / len(x1)


def ref_vicreg(a, b, sim_w, var_w, cov_w, eps):
    a, b = a.double(), b.double()
    n, d = a.shape
    sim = ((a - b) ** 2).mean()
    var = cov = 0
    for x in (a, b):
        mean = [x[:, k].mean() for k in range(d)]
        for k in range(d):
            std = math.sqrt(sum((x[i, k] - mean[k]) ** 2 for i in range(n)) / (n - 1) + eps)
            var += max(0.0, 1 - std) / d / 2
            for m in range(d):
                if m != k:
                    c = sum((x[i, k] - mean[k]) * (x[i, m] - mean[m]) for i in range(n)) / (n - 1)
                    cov += c ** 2 / d
    return sim_w * sim + var_w * var + cov_w * cov


def close(actual, expected, tol=1e-5):
    assert actual.dtype == torch.float32
    assert torch.isfinite(actual)
    actual, expected = actual.item(), float(expected.detach() if torch.is_tensor(expected) else expected)
    assert abs(actual - expected) <= tol * max(1.0, abs(expected)), (actual, expected)


LABEL_CASES = {
    "none": (5, 2, None),
    "duplicates": (6, 2, [0, 1, 0, 2, 1, 0]),
    "singletons": (5, 2, [0, 0, 1, 2, 3]),
    "one_view_with_labels": (6, 1, [3, 3, 1, 2, 2, 7]),
    "three_views": (4, 3, [1, 2, 1, 0]),
    "n_equals_2": (1, 2, None),
}


@pytest.mark.parametrize("tiled", [False, True])
@pytest.mark.parametrize("case", LABEL_CASES)
def test_supcon_matches_reference_value_and_gradient(case, tiled):
    b, v, labels = LABEL_CASES[case]
    torch.manual_seed(0)
    x = torch.randn(b, v, 8, requires_grad=True)
    labels = None if labels is None else torch.tensor(labels)
    loss = L.supcon_loss(x, labels, temperature=0.5, tiled=tiled)
    x64 = x.detach().double().requires_grad_()
    expected = ref_supcon(x64, labels, 0.5)
    close(loss, expected)
    loss.backward()
    expected.backward()
    torch.testing.assert_close(x.grad.double(), x64.grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("tiled", [False, True])
def test_clip_and_convirt_match_reference_including_scale_gradient(tiled):
    torch.manual_seed(1)
    a, b = torch.randn(7, 6, requires_grad=True), torch.randn(7, 6, requires_grad=True)
    scale = torch.tensor(3.0, requires_grad=True)
    a64, b64 = a.detach().double().requires_grad_(), b.detach().double().requires_grad_()
    s64 = scale.detach().double().requires_grad_()
    loss, expected = L.clip_loss(a, b, scale, tiled=tiled), ref_clip(a64, b64, s64)
    close(loss, expected)
    loss.backward()
    expected.backward()
    for got, want in [(a.grad, a64.grad), (b.grad, b64.grad), (scale.grad, s64.grad)]:
        torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-4)
    close(L.convirt_loss(a, b, 0.2, 0.75, tiled=tiled), ref_convirt(a64, b64, 0.2, 0.75))


@pytest.mark.parametrize("chunk", [4096, 3])
def test_siglip_matches_reference(chunk):
    torch.manual_seed(2)
    a, b = torch.randn(7, 5, requires_grad=True), torch.randn(7, 5)
    scale, bias = torch.tensor(10.0, requires_grad=True), torch.tensor(-10.0, requires_grad=True)
    a64, s64, bias64 = (t.detach().double().requires_grad_() for t in (a, scale, bias))
    loss, expected = L.siglip_loss(a, b, scale, bias, chunk=chunk), ref_siglip(a64, b, s64, bias64)
    close(loss, expected)
    loss.backward()
    expected.backward()
    for got, want in [(a.grad, a64.grad), (scale.grad, s64.grad), (bias.grad, bias64.grad)]:
        torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-4)


def test_triplet_contrastive_vicreg_match_reference():
    torch.manual_seed(3)
    a, p, n = torch.randn(3, 9, 4).unbind(0)
    close(L.triplet_loss(a, p, n, margin=0.5), ref_triplet(a, p, n, 0.5))
    same = torch.tensor([1, 0, 1, 0, 0, 1, 1, 0, 0])
    close(L.contrastive_pair_loss(a, p * 0.3, same, margin=2.0), ref_contrastive(a, p * 0.3, same, 2.0))
    close(L.vicreg_loss(a, p), ref_vicreg(a, p, 25, 25, 1, 1e-4))
    close(L.vicreg_loss(a * 0.2, n, 3.0, 2.0, 0.5, 1e-3), ref_vicreg(a * 0.2, n, 3.0, 2.0, 0.5, 1e-3))


def test_analytic_values():
    n = 6
    same = torch.ones(n, 4)
    close(L.clip_loss(same, same, 7.0), math.log(n))
    close(L.nt_xent_loss(torch.ones(n, 2, 4)), math.log(2 * n - 1))
    close(L.siglip_loss(same, same, 10.0, -10.0), n * math.log(2))  # every logit is 0
    eye = torch.eye(n)  # diagonal logit s + b, others b
    softplus = lambda x: math.log1p(math.exp(x))  # noqa: E731
    close(L.siglip_loss(eye, eye, 10.0, -3.0), softplus(-7.0) + (n - 1) * softplus(-3.0))
    e0, e1 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    close(L.triplet_loss(e0, e0, -e0, margin=0.2), 0.0)
    close(L.triplet_loss(e0, e1, e0, margin=0.2), math.sqrt(2) + 0.2)
    x1, x2 = torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 4.0]])
    close(L.contrastive_pair_loss(x1, x2, torch.tensor([1]), margin=6.0), 25.0)
    close(L.contrastive_pair_loss(x1, x2, torch.tensor([0]), margin=6.0), 1.0)
    # Constant columns: std 0 -> hinge 1 - sqrt(eps) per dim, no covariance, a == b.
    close(L.vicreg_loss(torch.ones(5, 3), torch.ones(5, 3)), 25 * (1 - 0.01))


def test_equivalences():
    torch.manual_seed(4)
    x = torch.randn(6, 2, 5)
    close(L.supcon_loss(x, None, 0.3), L.nt_xent_loss(x, 0.3).item())
    close(L.supcon_loss(x, torch.tensor([9, 4, 2, 0, 1, 7]), 0.3), L.nt_xent_loss(x, 0.3).item())
    a, b = torch.randn(2, 8, 5).unbind(0)
    close(L.convirt_loss(a, b, temperature=1 / 4.0, lam=0.5), L.clip_loss(a, b, 4.0).item())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_inputs_give_float32_results(dtype):
    torch.manual_seed(5)
    x = torch.randn(6, 2, 16).to(dtype)
    labels = torch.tensor([0, 1, 0, 2, 2, 1])
    close(L.supcon_loss(x, labels, 0.05), ref_supcon(x.double(), labels, 0.05))
    a, b = torch.randn(2, 8, 16).to(dtype).unbind(0)
    close(L.clip_loss(a, b, 50.0), ref_clip(a.double(), b.double(), 50.0))
    close(L.siglip_loss(a, b, 50.0, -5.0), ref_siglip(a.double(), b.double(), 50.0, -5.0))


def test_temperature_001_is_finite_and_accurate():
    torch.manual_seed(6)
    x = torch.randn(5, 2, 8, requires_grad=True)
    labels = torch.tensor([0, 1, 0, 2, 3])
    for tiled in (False, True):
        loss = L.supcon_loss(x, labels, 0.01, tiled=tiled)
        close(loss, ref_supcon(x.detach().double(), labels, 0.01))
        (grad,) = torch.autograd.grad(loss, x)
        assert torch.isfinite(grad).all()
    a, b = torch.randn(2, 6, 8).unbind(0)
    close(L.clip_loss(a, b, 100.0), ref_clip(a, b, 100.0))
    close(L.convirt_loss(a, b, 0.01), ref_convirt(a, b, 0.01, 0.75))
    close(L.siglip_loss(a, b, 100.0, -10.0), ref_siglip(a, b, 100.0, -10.0))


def test_triplet_gradient_finite_when_anchor_equals_positive():
    a = torch.randn(4, 3, requires_grad=True)
    L.triplet_loss(a, a.detach().clone(), torch.randn(4, 3)).backward()
    assert torch.isfinite(a.grad).all()


def test_errors():
    with pytest.raises(ValueError, match="no anchor has a positive"):
        L.supcon_loss(torch.randn(4, 1, 3), torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="no anchor has a positive"):
        L.nt_xent_loss(torch.randn(1, 1, 3))
    with pytest.raises(ValueError, match="batch, views, dim"):
        L.supcon_loss(torch.randn(4, 3))
    with pytest.raises(ValueError, match="labels must have shape"):
        L.supcon_loss(torch.randn(4, 2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="clip_loss"):
        L.clip_loss(torch.randn(4, 3), torch.randn(5, 3), 10.0)
    with pytest.raises(ValueError, match="at least 2 rows"):
        L.vicreg_loss(torch.randn(1, 3), torch.randn(1, 3))
