"""Every registered objective on every compatible built-in modality: a finite loss and
a gradient on every trainable parameter, from a real batch of the built-in data."""
import pytest
import torch
from conftest import TINY

from core import config as config_lib
import modalities  # noqa: F401
import objectives  # noqa: F401
from core import registry
from training.build import build_datasets, build_model, build_views
from training.compatibility import missing_capabilities
from training.data import train_batches
from training.loop import add_views

PAIRS = [(m, o) for m in registry.modalities() for o in registry.names("objective")
         if not missing_capabilities(config_lib.load_config(m, o))]


def test_every_modality_has_tiny_test_settings_and_works_with_the_core_objectives():
    for modality in registry.modalities():
        assert modality in TINY, f"add tiny overrides for '{modality}' to tests/conftest.py"
        for objective in ("cpc", "supcon", "simclr", "moco", "ce", "clap", "convirt", "siglip"):
            assert (modality, objective) in PAIRS, f"{modality}/{objective} should work"


@pytest.mark.parametrize("modality, objective", PAIRS, ids=[f"{m}-{o}" for m, o in PAIRS])
def test_pair_gives_finite_loss_and_gradient_on_every_trainable_parameter(modality, objective):
    cfg = config_lib.load_config(modality, objective, overrides=[*TINY[modality], "train.batch_size=16"])
    datasets = build_datasets(cfg)
    model = build_model(cfg, datasets["train"])
    views = build_views(cfg)
    batch = next(train_batches(datasets["train"], 16, cfg["seed"]))  # 8 classes: some positives
    batch = add_views(batch, views, cfg["seed"], 1, torch.device("cpu"))
    out = model["objective"](model["encoders"], batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    for key, value in out.items():
        assert torch.isfinite(torch.as_tensor(value)).all(), key
    for name, p in model.named_parameters():
        if p.requires_grad:
            ok = p.grad is not None and bool(torch.isfinite(p.grad).all()) and float(p.grad.abs().sum()) > 0
            assert ok, f"{name}: no finite nonzero gradient"


def test_augment_x_builds_one_view_of_the_modality_for_a_paired_objective():
    plain = config_lib.load_config("medical", "clap", overrides=TINY["medical"])
    assert build_views(plain) is None
    cfg = config_lib.load_config("medical", "clap", overrides=[*TINY["medical"], "objective.augment_x=true"])
    views = build_views(cfg)
    assert type(views).__name__ == "MedicalViews" and views.n_views == 1
    assert build_views(config_lib.load_config("medical", "simclr", overrides=TINY["medical"])).n_views == 2
    datasets = build_datasets(cfg, splits=("train",))
    batch = add_views(next(train_batches(datasets["train"], 8, cfg["seed"])), views, cfg["seed"], 1,
                      torch.device("cpu"))
    assert batch["views"].shape == (8, 1, *batch["x"].shape[1:])
    assert not torch.equal(batch["views"][:, 0], batch["x"])
