"""MoCo: the loss against a float64 reference with the queue before enqueueing,
the queue filling and wrapping, the momentum update, supervised positives from
queue labels, and the queue under two gloo processes."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_objectives import build, make_batch

from objectives.moco import NO_LABEL

# ---- MoCo


def moco_reference(q, k, queue, queue_labels, labels, t, supervised):
    """Per query: -mean over positives of log softmax over [own key, queue], in float64."""
    losses = []
    for i in range(len(q)):
        candidates = [k[i]] + list(queue)
        logits = torch.stack([q[i].double() @ c.double() for c in candidates]) / t
        log_prob = logits - torch.logsumexp(logits, dim=0)
        pos = [0] + [j + 1 for j in range(len(queue)) if supervised and queue_labels[j] == labels[i]]
        losses.append(-log_prob[pos].mean())
    return torch.stack(losses).mean()


def moco_qk(objective, encoders, batch):
    with torch.no_grad():
        views, mask = batch["views"], batch.get("mask")
        q = F.normalize(objective.head(encoders["x"](views[:, 0], mask=mask)["embedding"]), dim=1)
        k = F.normalize(objective.key_head(objective.key_encoder(views[:, 1], mask=mask)["embedding"]), dim=1)
    return q, k


def test_moco_loss_uses_the_queue_before_enqueueing_then_fills_and_wraps():
    encoders, moco = build("moco", proj_dim=8, queue_size=6, temperature=0.2)
    initial = moco.queue.clone()
    batch1, batch2 = make_batch(B=4, seed=1), make_batch(B=4, seed=2)
    q1, k1 = moco_qk(moco, encoders, batch1)
    out = moco(encoders, batch1)
    expected = moco_reference(q1, k1, initial, moco.queue_labels, batch1["label"], 0.2, False)
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    torch.testing.assert_close(moco.queue[:4], k1)
    torch.testing.assert_close(moco.queue[4:], initial[4:])
    assert moco.queue_labels.tolist() == batch1["label"].tolist() + [NO_LABEL] * 2
    assert int(moco.queue_ptr) == 4

    _, k2 = moco_qk(moco, encoders, batch2)
    moco(encoders, batch2)
    torch.testing.assert_close(moco.queue, torch.cat([k2[2:], k1[2:], k2[:2]]))
    assert moco.queue_labels.tolist() == batch2["label"][2:].tolist() + batch1["label"][2:].tolist() \
        + batch2["label"][:2].tolist()
    assert int(moco.queue_ptr) == 2

    moco.eval()  # validation batches are not enqueued
    before = moco.queue.clone()
    moco(encoders, make_batch(B=4, seed=3))
    assert torch.equal(moco.queue, before) and int(moco.queue_ptr) == 2


def test_moco_momentum_update_moves_key_params_by_one_minus_m():
    encoders, moco = build("moco", proj_dim=8, queue_size=8, momentum=0.9)
    online = [*encoders["x"].parameters(), *moco.head.parameters()]
    keys = [*moco.key_encoder.parameters(), *moco.key_head.parameters()]
    for p_key, p_online in zip(keys, online):
        assert torch.equal(p_key, p_online) and p_key is not p_online and not p_key.requires_grad
    with torch.no_grad():
        for p in online:
            p.add_(torch.randn_like(p))
    key_before = [p.clone() for p in keys]
    moco.on_step_end(encoders, step=1, total_steps=10)
    for p_key, before, p_online in zip(keys, key_before, online):
        torch.testing.assert_close(p_key - before, 0.1 * (p_online - before))


def test_supervised_moco_takes_positives_from_queue_labels():
    batch = make_batch(B=4, seed=4)
    losses = {}
    for supervised in (True, False):
        torch.manual_seed(0)
        encoders, moco = build("moco", proj_dim=8, queue_size=8, supervised=supervised)
        with torch.no_grad():
            moco.queue.copy_(F.normalize(torch.randn(8, 8), dim=1))
            moco.queue_labels.copy_(torch.tensor([0, 1, 2, 0, 1, 2, NO_LABEL, NO_LABEL]))
        queue, queue_labels = moco.queue.clone(), moco.queue_labels.clone()
        q, k = moco_qk(moco, encoders, batch)
        losses[supervised] = moco(encoders, batch)["loss"].item()
        expected = moco_reference(q, k, queue, queue_labels, batch["label"], 0.2, supervised)
        assert losses[supervised] == pytest.approx(expected.item(), rel=1e-5)
    assert losses[True] != pytest.approx(losses[False], rel=1e-3)
    _, moco = build("moco", encoders, supervised=True, queue_size=8)
    with pytest.raises(ValueError, match="needs labels"):
        moco(encoders, {"x": batch["x"], "views": batch["views"]})



# ---- MoCo under two gloo processes: the queue holds the keys of every rank


def moco_worker(rank, out_dir):
    import os

    import torch.distributed as dist

    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{os.path.join(out_dir, 'rendezvous')}",
                            rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        encoders, moco = build("moco", proj_dim=8, queue_size=16)
        batch = make_batch(B=8, seed=5)
        rows = slice(4 * rank, 4 * rank + 4)
        out = moco(encoders, {k: v[rows] for k, v in batch.items() if k != "text"})
        torch.save({"loss": out["loss"].detach(), "queue": moco.queue, "labels": moco.queue_labels,
                    "ptr": moco.queue_ptr}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_moco_queue_gathers_keys_from_every_rank(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(moco_worker, args=(str(tmp_path),), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    torch.manual_seed(0)
    encoders, moco = build("moco", proj_dim=8, queue_size=16)
    batch = make_batch(B=8, seed=5)
    out = moco(encoders, batch)
    for r in ranks:
        torch.testing.assert_close(r["queue"], moco.queue)
        assert torch.equal(r["labels"], moco.queue_labels) and int(r["ptr"]) == 8
    torch.testing.assert_close((ranks[0]["loss"] + ranks[1]["loss"]) / 2, out["loss"].detach())


def test_a_non_finite_key_leaves_its_queue_slot_as_it_was():
    """A NaN sample (its key is NaN) must not poison the queue: the next finite batch's loss stays finite."""
    encoders, moco = build("moco", proj_dim=8, queue_size=6, temperature=0.2, supervised=True)
    initial, initial_labels = moco.queue.clone(), moco.queue_labels.clone()
    bad = make_batch(B=4, seed=1)
    bad["views"] = bad["views"].clone()
    bad["views"][2] = float("nan")
    _, k = moco_qk(moco, encoders, bad)
    assert torch.isfinite(k[[0, 1, 3]]).all() and not torch.isfinite(k[2]).any()
    moco(encoders, bad)
    assert torch.isfinite(moco.queue).all()
    torch.testing.assert_close(moco.queue[[0, 1, 3]], k[[0, 1, 3]])
    torch.testing.assert_close(moco.queue[2], initial[2])
    assert moco.queue_labels[2] == initial_labels[2] == NO_LABEL
    assert moco.queue_labels[[0, 1, 3]].tolist() == bad["label"][[0, 1, 3]].tolist()
    assert int(moco.queue_ptr) == 4
    assert torch.isfinite(moco(encoders, make_batch(B=4, seed=2))["loss"])
