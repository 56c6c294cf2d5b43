"""Gradient cache (training/grad_cache.py): the same parameter gradients as the whole batch at once.

Real encoders of the sequence modality (tcn with dropout, LayerNorm-style norms)
and the real text transformer with dropout, in float64. The references are
written here: one forward of the whole batch (no dropout), or, with dropout,
the whole-batch loss over representations computed chunk by chunk with a
graph (the dropout masks then come from the same RNG stream as the cache's).
"""
from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY, run_cli

from core import config as config_lib
import modalities  # noqa: F401  (registers encoders, datasets, views)
import objectives  # noqa: F401  (registers objectives)
from core.errors import UserError
from training import grad_cache
from training.build import (
    build_datasets,
    build_encoder,
    build_objective,
    build_text_encoder,
    build_views,
)
from training.data import train_batches
from training.loop import add_views

BATCH, CHUNK = 16, 4


def setup(objective: str, dropout: float):
    cfg = config_lib.load_config("sequence", objective, overrides=[
        *TINY["sequence"], "data.sequence_builtin.train_per_class=2", f"model.tcn.dropout={dropout}",
        f"model.text.text_transformer.dropout={dropout}", "model.text.text_transformer.width=16",
        "model.text.text_transformer.layers=1", "model.text.text_transformer.heads=2"])
    datasets = build_datasets(cfg)
    torch.manual_seed(0)
    encoders = torch.nn.ModuleDict({"x": build_encoder(cfg, datasets["train"].input_shape)})
    if objective in ("clap", "convirt", "siglip"):
        encoders["text"] = build_text_encoder(cfg, datasets["train"].captions)
    model = torch.nn.ModuleDict({"encoders": encoders, "objective": build_objective(cfg, encoders, 8)})
    model = model.double().train()
    batch = next(train_batches(datasets["train"], BATCH, seed=0))
    batch["x"] = batch["x"].double()
    batch = add_views(batch, build_views(cfg), seed=0, step=1, device=torch.device("cpu"))
    if "views" in batch:
        batch["views"] = batch["views"].double()
    return model, batch


def grads(model) -> dict:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def cached_grads(model, batch, seed: int) -> dict:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    out = grad_cache.backward(model["objective"], model["encoders"], batch, CHUNK)
    assert not out["loss"].requires_grad
    return grads(model)


def rows(batch: dict, start: int, stop: int) -> dict:
    return {k: v[start:stop] if torch.is_tensor(v) or isinstance(v, list) else v for k, v in batch.items()}


def chunkwise_reference(model, batch, seed: int) -> dict:
    """d loss / d params of the whole-batch loss, representations built chunk by chunk *with* a graph."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    parts = [model["objective"].represent(model["encoders"], rows(batch, i, i + CHUNK)) for i in range(0, BATCH, CHUNK)]
    reps = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    model["objective"].loss_from(reps, batch)["loss"].backward()
    return grads(model)


def assert_same(a: dict, b: dict, atol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for name, value in a.items():
        torch.testing.assert_close(value, b[name], rtol=0, atol=atol, msg=name)


@pytest.mark.parametrize("objective", ["supcon", "simclr", "clap", "convirt", "siglip", "contrastive"])
def test_without_dropout_cache_equals_one_whole_batch_forward(objective):
    model, batch = setup(objective, dropout=0.0)
    model.zero_grad(set_to_none=True)
    model["objective"](model["encoders"], batch)["loss"].backward()
    plain = grads(model)
    assert len(plain) == len(list(model.parameters())), "every parameter should get a gradient"
    assert_same(cached_grads(model, batch, seed=0), plain)


@pytest.mark.parametrize("objective", ["supcon", "simclr", "clap", "siglip", "contrastive", "simcse"])
def test_with_dropout_cache_replays_the_masks_of_its_first_pass(objective):
    model, batch = setup(objective, dropout=0.3)
    cached = cached_grads(model, batch, seed=7)
    after_cache = torch.get_rng_state()
    assert_same(cached, chunkwise_reference(model, batch, seed=7))
    # The RNG ends where one pass of represent leaves it (the run's later draws do not depend on the cache).
    assert torch.equal(after_cache, torch.get_rng_state())
    # The dropout masks matter: other masks give other gradients, so a second pass that did
    # not replay the first pass's RNG state would fail the equality above.
    other = chunkwise_reference(model, batch, seed=8)
    assert max((cached[n] - other[n]).abs().max().item() for n in cached) > 1e-3


def test_objective_without_represent_is_refused_with_the_supported_list():
    with pytest.raises(UserError, match="'moco' is not one") as err:
        grad_cache.check({"grad_cache_chunk": 4, "accumulate_steps": 1}, "moco")
    for name in ["supcon", "simclr", "clap", "convirt", "siglip"]:
        assert name in str(err.value)
    assert "cpc" not in grad_cache.supported() and "moco" not in grad_cache.supported()


def test_run_with_grad_cache_through_run_py(tmp_path):
    common = ["--modality", "sequence", "--objective", "simclr", *TINY["sequence"], "train.steps=2",
              "train.batch_size=8", "train.accumulate_steps=2", "train.val_every=0", "train.progress=false",
              "eval.probe_epochs=5"]
    finished = {}
    for chunk in (3, 0):  # the gradient cache, then the plain backward of each whole micro-batch
        run_dir = tmp_path / f"chunk{chunk}"
        done = run_cli(*common, "--run-dir", run_dir, f"train.grad_cache_chunk={chunk}")
        assert done.returncode == 0, done.stderr
        finished[chunk] = json.loads((run_dir / "results.json").read_text())
    # Same gradients, so the same second step: its loss and the trained encoder's probe agree.
    assert finished[3]["steps"] == 2
    assert finished[3]["final_train_loss"] == pytest.approx(finished[0]["final_train_loss"], rel=1e-5)
    assert finished[3]["metrics"]["linear_probe_acc"] == finished[0]["metrics"]["linear_probe_acc"]

    refused = run_cli("--modality", "sequence", "--objective", "cpc", "--run-dir", tmp_path / "cpc",
                      *TINY["sequence"], "train.steps=1", "train.grad_cache_chunk=2")
    assert refused.returncode == 2 and "train.grad_cache_chunk needs" in refused.stderr
    assert not (tmp_path / "cpc").exists()  # refused before the run directory (or anything) was made
