"""Momentum (EMA) teachers: BYOL's cosine schedule, the update rule, the frozen copy (objectives/momentum.py)."""
import math

import pytest
import torch
from torch import nn

from objectives.momentum import ema_update, frozen_copy, momentum_at


def test_cosine_schedule_at_start_middle_and_end():
    # tau_k = 1 - (1 - base)(cos(pi k / K) + 1) / 2 (Grill et al. 2020): base at k = 0, halfway at K/2, 1 at K.
    assert momentum_at(0.996, 0, 100, "cosine") == pytest.approx(0.996, abs=1e-15)
    assert momentum_at(0.996, 50, 100, "cosine") == pytest.approx(0.998, abs=1e-15)
    assert momentum_at(0.996, 100, 100, "cosine") == pytest.approx(1.0, abs=1e-15)
    assert momentum_at(0.996, 25, 100, "cosine") == pytest.approx(1 - 0.004 * (math.cos(math.pi / 4) + 1) / 2)
    assert momentum_at(0.999, 37, 100, "constant") == 0.999


@pytest.mark.parametrize("base, schedule", [(1.5, "constant"), (-0.1, "cosine"), (0.99, "linear")])
def test_bad_momentum_or_schedule_is_refused(base, schedule):
    with pytest.raises(ValueError, match="momentum"):
        momentum_at(base, 1, 10, schedule)


def test_ema_update_is_the_weighted_average_and_leaves_buffers_alone():
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    teacher = frozen_copy(online)
    assert all(not p.requires_grad for p in teacher.parameters())
    assert all(p.requires_grad for p in online.parameters())
    with torch.no_grad():
        for p in online.parameters():
            p.add_(torch.randn_like(p))
        online[1].running_mean.fill_(3.0)
    before = [p.detach().double().clone() for p in teacher.parameters()]
    ema_update(teacher, online, 0.75)
    for t, b, o in zip(teacher.parameters(), before, online.parameters()):
        expected = 0.75 * b + 0.25 * o.detach().double()
        assert torch.allclose(t.double(), expected, atol=1e-7, rtol=0)
    assert torch.equal(teacher[1].running_mean, torch.zeros(4))  # the teacher's own statistics


def test_the_teacher_gets_no_gradient():
    online = nn.Linear(3, 2)
    teacher = frozen_copy(online)
    loss = (online(torch.ones(1, 3)) - teacher(torch.ones(1, 3))).pow(2).sum() + 1.0
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in online.parameters())


def test_ema_update_refuses_modules_of_different_shapes():
    with pytest.raises(ValueError, match="differ"):
        ema_update(nn.Linear(3, 2), nn.Linear(2, 3), 0.5)
