"""Online evaluation (training/online_eval.py, evaluation/online.py): the encoder trains exactly as
without it, its embeddings are matched to the right labels, its scores equal an independent NumPy
formulation, and unlabelled data skips the label-based parts with one line.

Real tiny training runs in this process (``training.loop.train``) with real TensorBoard event files.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY, TINY_AUDIO
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from core import config as config_lib
import modalities  # noqa: F401  (registers encoders, datasets, views)
import objectives  # noqa: F401  (registers objectives)
from evaluation.online import OnlineValidation, representation_scores
from objectives.parts import encode_views
from training.build import build_training, resolve_dataset
from training.loop import train
from training.online_eval import OnlineProbe

CPU = torch.device("cpu")
ONLINE_TAGS = ["train/online_probe_acc", "train/online_probe_loss", "val/online_probe_acc", "val/knn_acc",
               "val/effective_rank", "val/output_std"]
# The ways an objective's encoder sees a batch: x itself (cpc), every view flattened (simclr), one
# view (moco), x twice with dropout on (simcse), x itself with the embedding made on demand from what
# the forward computed (medical cpc: the mean of the patch grid, read after the backward), and none of
# these, so the classifier embeds x once more (ts2vec's random crops; every step here: extra_every=1).
PAIRS = [("audio", "cpc"), ("sequence", "simclr"), ("sequence", "moco"), ("sequence", "simcse"), ("medical", "cpc"),
         ("sequence", "ts2vec")]


def tiny(modality: str) -> list[str]:
    return TINY_AUDIO if modality == "audio" else TINY[modality]


def run(run_dir, modality: str, objective: str, online_eval: bool, steps: int, extra=()):
    """A real ``train`` of ``steps`` steps (validation every step) as experiment.py wires it; returns the
    Training and the run's TensorBoard scalars."""
    cfg = config_lib.load_config(modality, objective, overrides=[
        *tiny(modality), "train.batch_size=4", f"train.steps={steps}", "train.val_every=1", "train.val_batches=1",
        "train.progress=false", "train.checkpoint_every=1000", f"train.online_eval={online_eval}",
        "train.online_eval_extra_every=1", *extra])
    cfg["data"]["name"] = resolve_dataset(cfg)  # as run.py does: the loader of data.path
    training = build_training(cfg, CPU)
    writer = SummaryWriter(str(run_dir))
    watch = OnlineValidation(cfg, training.datasets, CPU) if online_eval else None
    train(cfg, training.model, training.views, training.datasets, training.optimizer, training.scheduler, writer,
          run_dir, CPU, training.speed, online=training.online, online_validation=watch)
    writer.close()
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return training, {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.mark.parametrize("modality,objective", PAIRS)
def test_encoder_gradients_after_one_step_are_identical_with_online_eval_on_and_off(tmp_path, modality, objective):
    on, tags = run(tmp_path / "on", modality, objective, True, steps=1)
    off, _ = run(tmp_path / "off", modality, objective, False, steps=1)
    assert on.online is not None and off.online is None
    assert tags["train/online_probe_loss"][0][1] > 0  # the classifier did learn from this step
    grads_on = dict(on.model["encoders"]["x"].named_parameters())
    for name, p in off.model["encoders"]["x"].named_parameters():
        assert p.grad is not None, name
        assert torch.equal(p.grad, grads_on[name].grad), name


@pytest.mark.parametrize("modality,objective", [("medical", "cpc"), ("sequence", "simclr")])
def test_three_steps_with_validation_end_with_the_same_model_on_and_off(tmp_path, modality, objective):
    """Validation embeds in eval mode under a forked RNG: parameters, BatchNorm statistics and the
    global RNG end as without online evaluation; the off run writes none of its tags."""
    on, tags_on = run(tmp_path / "on", modality, objective, True, steps=3)
    rng_on = torch.get_rng_state()
    off, tags_off = run(tmp_path / "off", modality, objective, False, steps=3)
    assert torch.equal(rng_on, torch.get_rng_state())
    state_on = on.model.state_dict()
    for key, value in off.model.state_dict().items():
        assert torch.equal(value, state_on[key]), key
    assert tags_on["val/loss"] == tags_off["val/loss"]
    for tag in ONLINE_TAGS:
        assert [s for s, _ in tags_on[tag]] == [1, 2, 3], tag
        assert tag not in tags_off, tag


class FirstValue(nn.Module):
    """embedding = (x.flatten(1)[:, :1], 2 x.flatten(1)[:, :1]): row i carries the first input value of item i."""

    dims = {"embedding": 2}

    def forward(self, x):
        first = x.flatten(1)[:, :1]
        return {"embedding": torch.cat([first, 2 * first], dim=1)}


def test_embeddings_are_matched_to_their_labels_for_x_one_view_and_flattened_views():
    b, v = 5, 3
    labels = torch.tensor([3, 0, 4, 1, 2])
    x = labels.float().view(b, 1, 1).expand(b, 1, 4).contiguous()
    views = x.unsqueeze(1).repeat(1, v, 1, 1) + torch.arange(v).view(1, v, 1, 1) * 10  # view j: label + 10 j
    batch = {"x": x, "label": labels, "views": views}
    encoder, probe = FirstValue(), OnlineProbe(2, 5, 1e-2, CPU)
    probe.attach(encoder)
    for call in (lambda: encoder(batch["x"]), lambda: encoder(batch["views"][:, 1]),
                 lambda: encode_views(encoder, batch), lambda: encoder(torch.cat([batch["x"], batch["x"]]))):
        with probe.watch(encoder, batch):
            call()
    with probe.watch(encoder, batch):  # other values: no match, so x is embedded once more
        encoder(torch.cat([batch["x"], batch["x"]]) + 100)
    probe.detach()
    (e_x, y_x), (e_one, y_one), (e_all, y_all), (e_twice, y_twice), (e_again, y_again) = probe.seen
    assert torch.equal(e_x[:, 0], labels.float()) and torch.equal(y_x, labels)
    assert torch.equal(e_one[:, 0], labels.float() + 10) and torch.equal(y_one, labels)
    assert len(e_all) == b * v and torch.equal(y_all, labels.repeat_interleave(v))
    assert torch.equal(e_all[:, 0] % 10, y_all.float())  # each row's value is its own item's label (+ 10 v)
    assert torch.equal(e_twice[:, 0], labels.float().repeat(2)) and torch.equal(y_twice, labels.repeat(2))
    assert torch.equal(e_again[:, 0], labels.float()) and torch.equal(y_again, labels)


class NoisyFirstValue(FirstValue):
    """FirstValue that draws from the global RNG on every call and has a BatchNorm that counts its batches."""

    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm1d(1)

    def forward(self, x):
        torch.rand(3)
        self.norm(x.flatten(1)[:, :1])
        return super().forward(x)


def test_the_extra_forward_leaves_rng_mode_and_batchnorm_as_they_were():
    encoder, labels = NoisyFirstValue().train(), torch.tensor([1, 0, 1])
    batch = {"x": labels.float().view(3, 1, 1).expand(3, 1, 4).contiguous(), "label": labels}
    rng = torch.get_rng_state()
    embedding, seen = OnlineProbe.embed_again(encoder, batch)
    assert torch.equal(embedding[:, 0], labels.float()) and torch.equal(seen, labels)
    assert torch.equal(rng, torch.get_rng_state())
    assert encoder.training and int(encoder.norm.num_batches_tracked) == 0


def test_scores_equal_a_numpy_formulation_on_a_hand_made_input():
    bank = np.array([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 1.0, 0.0], [0.1, 0.8, 0.3], [0.0, 0.0, 2.0],
                     [0.2, 0.0, 1.0]])
    bank_labels = np.array([0, 0, 1, 1, 2, 2])
    queries = np.array([[0.8, 0.3, 0.0], [0.1, 0.2, 1.5], [0.5, 0.6, 0.0], [0.0, 3.0, 0.1]])
    query_labels = np.array([0, 2, 0, 1])
    k, temperature = 3, 0.5

    def unit(a):
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    sims = unit(queries) @ unit(bank).T
    predicted = []
    for row in sims:
        top = np.argsort(-row)[:k]
        votes = np.zeros(3)
        for j in top:
            votes[bank_labels[j]] += np.exp(row[j] / temperature)
        predicted.append(int(np.argmax(votes)))
    knn = float(np.mean(np.array(predicted) == query_labels))
    output_std = float(unit(queries).std(axis=0, ddof=1).mean())
    sigma = np.linalg.svd(queries - queries.mean(0), compute_uv=False)
    p = sigma / sigma.sum()
    rank = float(np.exp(-(p[p > 0] * np.log(p[p > 0])).sum()))

    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    scores = representation_scores(t(queries), torch.tensor(query_labels), t(bank), torch.tensor(bank_labels),
                                   n_classes=3, k=k, temperature=temperature)
    assert knn == 0.75  # the third query's nearest neighbours vote 1 over its label 0 (hand-checked)
    assert scores["knn_acc"] == pytest.approx(knn, abs=1e-7)
    assert scores["output_std"] == pytest.approx(output_std, rel=1e-6)
    assert scores["effective_rank"] == pytest.approx(rank, rel=1e-6)
    assert set(representation_scores(t(queries))) == {"effective_rank", "output_std"}


def test_unlabelled_data_skips_the_label_parts_with_one_line(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    np.savez(data / "train.npz", X=rng.normal(size=(24, 2, 32)).astype(np.float32))
    np.savez(data / "test.npz", X=rng.normal(size=(8, 2, 32)).astype(np.float32))
    training, tags = run(tmp_path / "run", "sequence", "simclr", True, steps=2, extra=[f"data.path={str(data)!r}"])
    assert training.online is None
    notes = [line for line in capsys.readouterr().err.splitlines() if "online evaluation" in line]
    assert len(notes) == 1 and "val/knn_acc are skipped" in notes[0], notes
    assert [s for s, _ in tags["val/effective_rank"]] == [1, 2] and "val/output_std" in tags
    assert not {"train/online_probe_acc", "val/online_probe_acc", "val/knn_acc"} & set(tags)


@pytest.mark.parametrize("replay", [1, 2])
def test_standardization_and_updates_equal_a_numpy_ema_and_an_independent_adamw(replay):
    """Three steps of rows of known scales: the running mean and variance follow a NumPy EMA (the first
    step sets them), the classifier reads rows standardized by them (this step's and, with ``replay``,
    the previous step's raw rows, standardized anew), takes ``updates`` AdamW steps per step exactly as a
    separate nn.Linear with torch's AdamW on the NumPy-standardized rows, and reports the loss of this
    step's rows before its updates (log K at the start, its weights being zero)."""
    rng = np.random.default_rng(0)
    d, k, momentum, lr, updates, eps = 3, 4, 0.25, 0.05, 3, 1e-5
    # Class counts 1, 1, 3, 3 of 8: no gradient of the first (zero-weight) step is zero up to rounding,
    # where AdamW's first step, lr * g / (|g| + eps), would take the sign of the rounding.
    batches = [(rng.normal(size=(8, d)) * [1.0, 10.0, 100.0] + [5.0, -3.0, 50.0],
                rng.permutation([0, 1, 2, 2, 2, 3, 3, 3])) for _ in range(3)]
    probe = OnlineProbe(d, k, lr, CPU, updates=updates, momentum=momentum, replay=replay)
    reference = nn.Linear(d, k)
    with torch.no_grad():
        reference.weight.zero_()
        reference.bias.zero_()
    adamw = torch.optim.AdamW(reference.parameters(), lr=lr, weight_decay=0.0, eps=1e-3)  # ADAM_EPS
    mean = var = None
    for i, (x, y) in enumerate(batches):
        m, v = x.mean(0), x.var(0)  # population variance (ddof 0), as BatchNorm's normalization
        mean, var = (m, v) if i == 0 else ((1 - momentum) * mean + momentum * m, (1 - momentum) * var + momentum * v)
        used = batches[max(0, i - replay + 1):i + 1]  # the steps replayed, oldest first, this one last
        rows = torch.tensor((np.concatenate([b[0] for b in used]) - mean) / np.sqrt(var + eps), dtype=torch.float32)
        targets = torch.tensor(np.concatenate([b[1] for b in used]))
        probe.seen.append((torch.tensor(x, dtype=torch.float32), torch.tensor(y)))
        out = probe.step()
        expected_loss = torch.nn.functional.cross_entropy(reference(rows[-8:]), targets[-8:]).item()
        for _ in range(updates):
            adamw.zero_grad()
            torch.nn.functional.cross_entropy(reference(rows), targets).backward()
            adamw.step()
        if i == 0:
            assert expected_loss == pytest.approx(np.log(k), rel=1e-6)
        assert float(out["online_probe_loss"]) == pytest.approx(expected_loss, rel=1e-5)
        np.testing.assert_allclose(probe.standardize.mean.numpy(), mean, rtol=1e-6)
        np.testing.assert_allclose(probe.standardize.var.numpy(), var, rtol=1e-4)
        torch.testing.assert_close(probe.linear.weight, reference.weight, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(probe.linear.bias, reference.bias, rtol=1e-4, atol=1e-6)
    assert int(probe.optimizer.state[probe.linear.weight]["step"]) == 3 * updates
    queries, query_labels = batches[0][0], torch.tensor(batches[0][1])
    predicted = reference(torch.tensor((queries - mean) / np.sqrt(var + eps), dtype=torch.float32)).argmax(1)
    assert probe.accuracy(torch.tensor(queries, dtype=torch.float32), query_labels) == pytest.approx(
        (predicted == query_labels).float().mean().item())
    copy = OnlineProbe(d, k, lr, CPU, updates=updates, momentum=momentum, replay=replay)
    assert copy.load_state_dict(probe.state_dict())  # the replayed rows resume too
    for a, b in zip(copy.recent, probe.recent, strict=True):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert len(probe.recent) == (replay if replay > 1 else 0)


def test_a_non_finite_step_changes_neither_the_statistics_nor_the_weights():
    probe, labels = OnlineProbe(2, 3, 0.1, CPU), torch.tensor([0, 1, 2, 1])
    probe.seen.append((torch.randn(4, 2), labels))
    probe.step()
    before = {k: v.clone() for k, v in probe.standardize.state_dict().items()}
    weight = probe.linear.weight.clone()
    probe.seen.append((torch.tensor([[1.0, float("nan")]] * 4), labels))
    probe.step()
    probe.seen.append((torch.randn(4, 2), labels))
    probe.step(update=False)  # the model's step was not finite
    for key, value in probe.standardize.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert torch.equal(probe.linear.weight, weight)


def test_a_classifier_saved_before_standardization_is_not_loaded():
    old, new = OnlineProbe(2, 3, 0.1, CPU), OnlineProbe(2, 3, 0.1, CPU)
    old.seen.append((torch.randn(4, 2), torch.tensor([0, 1, 2, 1])))
    old.step()
    state = old.state_dict()
    assert new.load_state_dict(state) and torch.equal(new.linear.weight, old.linear.weight)
    fresh = OnlineProbe(2, 3, 0.1, CPU)
    assert not fresh.load_state_dict({"linear": state["linear"], "optimizer": state["optimizer"]})
    assert not fresh.linear.weight.any()


def test_medical_cpc_reads_the_patch_embedding_its_forward_computed_without_another_pass():
    """CPC reads only the patch sequence; the classifier takes the patch embedding (the grid's mean) from
    the very same call: one forward (one BatchNorm batch counted), rows equal to that call's embedding."""
    cfg = config_lib.load_config("medical", "cpc", overrides=[*tiny("medical"), "train.batch_size=4"])
    cfg["data"]["name"] = resolve_dataset(cfg)
    training = build_training(cfg, CPU)
    encoder, objective = training.model["encoders"]["x"], training.model["objective"]
    batch = next(iter(torch.utils.data.DataLoader(training.datasets["train"], batch_size=4)))
    norm = next(m for m in encoder.modules() if isinstance(m, nn.BatchNorm2d))
    counted = int(norm.num_batches_tracked)
    probe = training.online
    probe.attach(encoder)
    with torch.random.fork_rng():
        torch.manual_seed(5)
        with probe.watch(encoder, batch, step=1):
            objective(training.model["encoders"], batch)["loss"].backward()
    probe.detach()
    assert int(norm.num_batches_tracked) == counted + 1
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(5)  # the same patch jitter as the objective's call
        out = encoder(batch["x"])
        expected = out["sequence"].mean(1)  # rows of patches averaged, then the rows: the grid's mean
    (rows, labels), = probe.seen
    torch.testing.assert_close(rows, expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(labels, batch["label"])


def test_the_extra_forward_path_trains_the_classifier_every_extra_every_steps(tmp_path):
    _, tags = run(tmp_path / "run", "sequence", "ts2vec", True, steps=4, extra=["train.online_eval_extra_every=2"])
    assert [s for s, _ in tags["train/online_probe_loss"]] == [2, 4]
    assert [s for s, _ in tags["train/loss"]] == [1, 2, 3, 4]
