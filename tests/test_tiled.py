"""The tiled log-sum-exp Function and the tiled loss paths.

Tiles are shrunk (monkeypatched BLOCK_ROWS / BLOCK_COLS) so that tiny inputs
cross many tile borders, including tiles that hold part of the diagonal.
"""
import pytest
import torch

from objectives import functional as L
from objectives import tiled as T

torch.set_num_threads(1)


@pytest.fixture
def small_tiles(monkeypatch):
    monkeypatch.setattr(T, "BLOCK_ROWS", 3)
    monkeypatch.setattr(T, "BLOCK_COLS", 4)


def dense_lse(q, k, self_offset):
    logits = q @ k.T
    if self_offset is not None:
        for i in range(q.shape[0]):
            logits[i, self_offset + i] = float("-inf")
    return torch.logsumexp(logits, dim=1)


@pytest.mark.parametrize("self_offset", [None, 0, 5])
def test_block_logsumexp_gradcheck_float64(self_offset):
    torch.manual_seed(0)
    q = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    k = torch.randn(11, 3, dtype=torch.float64, requires_grad=True)
    fn = lambda q, k: T.block_logsumexp(q, k, self_offset, block_rows=4, block_cols=3)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (q, k))
    torch.testing.assert_close(fn(q, k), dense_lse(q, k, self_offset))


def test_block_logsumexp_large_logits_and_excluded_only_column():
    q = torch.tensor([[100.0, 0.0], [-100.0, 0.0]])
    k = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    torch.testing.assert_close(T.block_logsumexp(q, k, None, 1, 1), dense_lse(q, k, None))
    # A row whose only column is itself: -inf, and a zero (not NaN) gradient.
    q1 = torch.randn(1, 2, requires_grad=True)
    lse = T.block_logsumexp(q1, q1.detach(), self_offset=0)
    assert lse.item() == float("-inf")
    (grad,) = torch.autograd.grad(lse.sum() * 0, q1)
    assert torch.equal(grad, torch.zeros_like(grad))


def grads(loss_fn, *tensors):
    tensors = [t.detach().clone().requires_grad_() for t in tensors]
    loss = loss_fn(*tensors)
    return loss.detach(), torch.autograd.grad(loss, tensors)


def assert_same(dense, tiled):
    torch.testing.assert_close(tiled[0], dense[0], atol=1e-5, rtol=1e-5)
    for a, b in zip(tiled[1], dense[1]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("labels", [None, [0, 1, 0, 2, 1, 3, 4, 0, 4], [5] * 9])
@pytest.mark.parametrize("temperature", [0.1, 0.01])
def test_supcon_tiled_equals_dense(small_tiles, labels, temperature):
    torch.manual_seed(1)
    x = torch.randn(9, 2, 5)
    labels = None if labels is None else torch.tensor(labels)
    run = lambda tiled: grads(lambda x: L.supcon_loss(x, labels, temperature, tiled=tiled), x)  # noqa: E731
    assert_same(run(False), run(True))


@pytest.mark.parametrize("name", ["clip", "convirt"])
def test_clip_convirt_tiled_equal_dense(small_tiles, name):
    torch.manual_seed(2)
    a, b, scale = torch.randn(10, 6), torch.randn(10, 6), torch.tensor(20.0)
    if name == "clip":
        fn = lambda tiled: lambda a, b, s: L.clip_loss(a, b, s, tiled=tiled)  # noqa: E731
    else:
        fn = lambda tiled: lambda a, b, s: L.convirt_loss(a, b, 1 / s, 0.75, tiled=tiled)  # noqa: E731
    assert_same(grads(fn(False), a, b, scale), grads(fn(True), a, b, scale))


def test_tiled_none_switches_at_threshold(monkeypatch):
    assert not T.use_tiled(None, T.TILE_THRESHOLD) and T.use_tiled(None, T.TILE_THRESHOLD + 1)
    assert T.use_tiled(True, 2) and not T.use_tiled(False, 10 ** 6)
    calls = []
    original = T.block_logsumexp
    monkeypatch.setattr(T, "block_logsumexp", lambda *a, **k: calls.append(1) or original(*a, **k))
    monkeypatch.setattr(T, "TILE_THRESHOLD", 8)
    L.supcon_loss(torch.randn(4, 2, 3))  # 8 rows: dense
    assert calls == []
    L.supcon_loss(torch.randn(5, 2, 3))  # 10 rows: tiled
    L.clip_loss(torch.randn(9, 3), torch.randn(9, 3), 10.0)  # two directions
    assert len(calls) == 3


def saved_elements(fn, *inputs):
    """Elements autograd keeps for backward, each storage counted once."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes() // t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*[x.requires_grad_() for x in inputs])
    return sum(storages.values())


def test_tiled_saved_memory_is_linear_in_batch():
    d = 4
    for n in (512, 1024):
        x, a, b = torch.randn(n // 2, 2, d), torch.randn(n, d), torch.randn(n, d)
        tiled_supcon = saved_elements(lambda x: L.supcon_loss(x, tiled=True), x)
        dense_supcon = saved_elements(lambda x: L.supcon_loss(x, tiled=False), x)
        tiled_clip = saved_elements(lambda a, b: L.clip_loss(a, b, 10.0, tiled=True), a, b)
        siglip = saved_elements(lambda a, b: L.siglip_loss(a, b, 10.0, -10.0, chunk=64), a, b)
        assert dense_supcon >= n * n  # the dense path holds the (N, N) logits
        for saved in (tiled_supcon, tiled_clip, siglip):
            assert saved <= 20 * n * d, (n, saved)
