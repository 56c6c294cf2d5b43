"""DINO (objectives/functional/distillation.py, objectives/dino.py): the loss against a float64
loop reference and analytic values, the center update, the teacher temperature schedule, the
teacher's frozen EMA, and two gloo ranks against one process (loss, gradients, center)."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from torch import nn

import objectives  # noqa: F401  (registers dino)
from conftest import gloo_group, spawn_ranks
from core import registry
from objectives import functional as L
from objectives.momentum import momentum_at


def softmax(row):
    e = np.exp(row - row.max())
    return e / e.sum()


def loop_reference(student, teacher, center, student_temp, teacher_temp):
    """Explicit loops over (teacher view i, student view v != i) and samples, float64."""
    s, t, c = (a.double().numpy() for a in (student, teacher, center))
    b, n_student, _ = s.shape
    pair_means = []
    for i in range(t.shape[1]):
        for v in range(n_student):
            if v == i:
                continue
            terms = []
            for n in range(b):
                p_t = softmax((t[n, i] - c) / teacher_temp)
                log_p_s = np.log(softmax(s[n, v] / student_temp))
                terms.append(-sum(p_t[k] * log_p_s[k] for k in range(len(p_t))))
            pair_means.append(sum(terms) / b)
    return sum(pair_means) / len(pair_means)


def logits(seed, b=3, views=5, k=7, scale=1.0):
    return scale * torch.randn(b, views, k, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("n_teacher, n_student", [(2, 2), (2, 6), (3, 4), (1, 3)])
def test_dino_loss_equals_a_loop_reference(n_teacher, n_student):
    student, teacher = logits(0, views=n_student), logits(1, views=n_teacher, scale=0.3)
    center = 0.2 * torch.randn(7, generator=torch.Generator().manual_seed(2))
    expected = loop_reference(student, teacher, center, 0.1, 0.04)
    assert L.dino_loss(student, teacher, center, 0.1, 0.04).item() == pytest.approx(expected, rel=1e-5)


def test_loss_is_the_mean_entropy_when_every_view_has_the_same_logits():
    # -sum P log P = H(P) for each pair when teacher and student agree; no centering, one temperature.
    base = logits(3, b=4, views=1, k=9)[:, 0]
    p = torch.softmax(base.double() / 0.5, dim=-1)
    entropy = -(p * p.log()).sum(-1).mean().item()
    loss = L.dino_loss(base[:, None].expand(4, 5, 9), base[:, None].expand(4, 2, 9), torch.zeros(9), 0.5, 0.5)
    assert loss.item() == pytest.approx(entropy, rel=1e-5)
    uniform = L.dino_loss(torch.zeros(2, 3, 9), torch.zeros(2, 2, 9), torch.zeros(9), 0.1, 0.04)
    assert uniform.item() == pytest.approx(math.log(9), rel=1e-6)


def test_dino_loss_refuses_bad_shapes_and_temperatures():
    s, t, c = logits(0, views=4), logits(1, views=2), torch.zeros(7)
    for args in [(s, t[:, :, :5], c), (s[:, :1], t[:, :1], c), (s[:, :1], t, c), (s, t, torch.zeros(5)),
                 (s[:2], t, c), (s[0], t, c)]:
        with pytest.raises(ValueError, match="dino_loss"):
            L.dino_loss(*args)
    with pytest.raises(ValueError, match="temperatures"):
        L.dino_loss(s, t, c, 0.1, 0.0)


def test_center_update_by_hand():
    center = torch.tensor([1.0, 0.0, -1.0])
    teacher = torch.tensor([[[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]],
                            [[0.0, 0.0, 4.0], [0.0, 4.0, 0.0]]])  # mean over the 4 rows: (1, 2, 2)
    expected = torch.tensor([0.9 * 1.0 + 0.1 * 1.0, 0.9 * 0.0 + 0.1 * 2.0, 0.9 * -1.0 + 0.1 * 2.0])
    torch.testing.assert_close(L.dino_center(center, teacher, 0.9), expected)
    torch.testing.assert_close(center, torch.tensor([1.0, 0.0, -1.0]))  # a new tensor: the input is unchanged
    with pytest.raises(ValueError, match="dino_center"):
        L.dino_center(center, teacher[..., :2], 0.9)


def test_teacher_temperature_warms_up_linearly_then_stays():
    assert L.teacher_temperature(0, 0.04, 0.07, 30) == pytest.approx(0.04)
    assert L.teacher_temperature(15, 0.04, 0.07, 30) == pytest.approx(0.055)
    assert L.teacher_temperature(30, 0.04, 0.07, 30) == pytest.approx(0.07)
    assert L.teacher_temperature(500, 0.04, 0.07, 30) == 0.07
    assert L.teacher_temperature(0, 0.04, 0.07, 0) == 0.07  # no warmup
    with pytest.raises(ValueError, match="temperatures"):
        L.teacher_temperature(0, 0.0, 0.07, 30)


# ---- the objective module


class PoolEncoder(nn.Module):
    """Conv1d then the mean over time: takes series of any length (local views are shorter)."""

    def __init__(self, channels=2, dim=8):
        super().__init__()
        self.conv = nn.Conv1d(channels, dim, 3, padding=1)
        self.dims = {"embedding": dim}

    def forward(self, x, mask=None):
        return {"embedding": self.conv(x).mean(-1)}


def make(**options):
    torch.manual_seed(0)
    encoders = {"x": PoolEncoder()}
    # No BatchNorm in the head: its per-rank batch statistics would make two ranks differ from one
    # process by design (the registry-wide tests in test_objectives.py build the default, with it).
    options = {"out_dim": 16, "hidden_dim": 12, "bottleneck_dim": 6, "head_batch_norm": False, **options}
    return encoders, registry.build("objective", "dino", encoders=encoders, **options)


def make_batch(b=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"views": torch.randn(b, 2, 2, 10, generator=g), "local_views": torch.randn(b, 3, 2, 4, generator=g)}


def test_teacher_takes_no_gradient_and_student_does():
    encoders, dino = make()
    out = dino(encoders, make_batch())
    out["loss"].backward()
    teacher = [*dino.teacher_encoder.parameters(), *dino.teacher_head.parameters()]
    assert teacher and all(not p.requires_grad and p.grad is None for p in teacher)
    student = [*encoders["x"].parameters(), *dino.head.parameters()]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student)
    for key in ("teacher_temp", "momentum", "output_std", "teacher_entropy", "teacher_marginal_entropy", "center_norm"):
        assert math.isfinite(float(out[key])), key
    assert 0 <= float(out["teacher_entropy"]) <= math.log(16) + 1e-5


def test_ema_moves_the_teacher_toward_the_student_by_the_schedules_tau():
    encoders, dino = make(momentum=0.9)
    with torch.no_grad():
        for p in [*encoders["x"].parameters(), *dino.head.parameters()]:
            p.add_(torch.randn_like(p))
    before = [p.detach().double().clone() for p in [*dino.teacher_encoder.parameters(), *dino.teacher_head.parameters()]]
    dino.on_step_end(encoders, 3, 10)
    tau = momentum_at(0.9, 3, 10, "cosine")
    assert 0.9 < tau < 1 and float(dino.last_momentum) == pytest.approx(tau) and int(dino.steps_done) == 3
    online = [*encoders["x"].parameters(), *dino.head.parameters()]
    after = [*dino.teacher_encoder.parameters(), *dino.teacher_head.parameters()]
    for t, b, o in zip(after, before, online, strict=True):
        torch.testing.assert_close(t.double(), tau * b + (1 - tau) * o.detach().double(), rtol=0, atol=1e-6)


def test_module_loss_center_and_schedules_follow_the_functions():
    encoders, dino = make(warmup_teacher_temp_steps=4)
    batch = make_batch()
    dino.on_step_end(encoders, 2, 10)  # teacher temperature halfway through its warmup
    with torch.no_grad():
        h = torch.cat([encoders["x"](batch["views"].flatten(0, 1))["embedding"].unflatten(0, (8, 2)),
                       encoders["x"](batch["local_views"].flatten(0, 1))["embedding"].unflatten(0, (8, 3))], 1)
        _, student = dino.head(h)
        _, teacher = dino.teacher_head(dino.teacher_encoder(batch["views"].flatten(0, 1))["embedding"].unflatten(0, (8, 2)))
        out = dino(encoders, batch)
    assert float(out["teacher_temp"]) == pytest.approx(0.055)
    torch.testing.assert_close(out["loss"], L.dino_loss(student, teacher, torch.zeros(16), 0.1, 0.055))
    torch.testing.assert_close(dino.center, L.dino_center(torch.zeros(16), teacher, 0.9))
    dino.eval()  # validation leaves the center alone
    center = dino.center.clone()
    dino(encoders, batch)
    assert torch.equal(dino.center, center)


def test_frozen_prototypes_take_no_gradient_until_the_step_count():
    encoders, dino = make(freeze_last_layer_steps=2)
    dino(encoders, make_batch())["loss"].backward()
    assert dino.head.prototypes.grad is None and encoders["x"].conv.weight.grad is not None
    dino.on_step_end(encoders, 2, 10)
    dino(encoders, make_batch())["loss"].backward()
    assert dino.head.prototypes.grad is not None


def test_module_refuses_one_global_view_and_local_views_with_a_mask():
    encoders, dino = make()
    batch = make_batch()
    with pytest.raises(ValueError, match="2 global views"):
        dino(encoders, {**batch, "views": batch["views"][:, :1]})
    with pytest.raises(ValueError, match="mask"):
        dino(encoders, {**batch, "mask": torch.ones(8, 10, dtype=torch.bool)})


# ---- two gloo ranks, each with half the batch, against one process with all of it

WORLD, BATCH = 2, 8


def two_steps(rows):
    """Two training forwards (the first moves the center the second uses): losses, gradients, centers."""
    encoders, dino = make()
    batch = {k: v[rows] for k, v in make_batch(BATCH, seed=4).items()}
    results = []
    for _ in range(2):
        for p in [*encoders["x"].parameters(), *dino.head.parameters()]:
            p.grad = None
        loss = dino(encoders, batch)["loss"]
        loss.backward()
        grads = [p.grad.clone() for p in [*encoders["x"].parameters(), *dino.head.parameters()]]
        results.append((loss.detach(), grads, dino.center.clone()))
    return results


def worker(rank, out_dir):
    with gloo_group(rank, WORLD, out_dir):
        half = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        uneven = slice(0, 3) if rank == 0 else slice(3, BATCH)  # 3 and 5 rows: the center counts rows
        teacher = logits(5, b=BATCH, views=2, k=6)
        result = {"steps": two_steps(half), "uneven_center": L.dino_center(torch.ones(6), teacher[uneven], 0.8)}
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))


@pytest.fixture(scope="module")
def per_rank(tmp_path_factory):
    out_dir = str(tmp_path_factory.mktemp("ddp_dino"))
    return spawn_ranks(worker, WORLD, out_dir)


def test_two_ranks_equal_one_process(per_rank):
    whole = two_steps(slice(0, BATCH))
    for step, (loss, grads, center) in enumerate(whole):
        ranks = [r["steps"][step] for r in per_rank]
        torch.testing.assert_close(sum(r[0] for r in ranks) / WORLD, loss, rtol=1e-5, atol=1e-6)
        for i, grad in enumerate(grads):
            torch.testing.assert_close(sum(r[1][i] for r in ranks) / WORLD, grad, rtol=1e-5, atol=1e-6)
        assert torch.equal(ranks[0][2], ranks[1][2]), f"step {step + 1}: the ranks' centers differ"
        torch.testing.assert_close(ranks[0][2], center, rtol=1e-6, atol=1e-7)
    assert not torch.equal(whole[1][2], torch.zeros(16))


def test_center_of_uneven_rank_batches_is_the_global_mean(per_rank):
    expected = L.dino_center(torch.ones(6), logits(5, b=BATCH, views=2, k=6), 0.8)
    for r in per_rank:
        torch.testing.assert_close(r["uneven_center"], expected, rtol=1e-6, atol=1e-7)
