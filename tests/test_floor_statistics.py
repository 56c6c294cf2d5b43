"""The random-init floor's BatchNorm statistics (evaluation/floor.py, ``eval.floor_statistics``).

A real MONAI ResNet on real built-in images: with one batch holding the whole split, the first
BatchNorm layer's running statistics must be the mean and unbiased variance of the stem
convolution's outputs over the split, computed here in float64 with NumPy from the convolution's
weights. An encoder without BatchNorm must come back bit for bit.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY
from torch import nn

import modalities  # noqa: F401  (registers encoders, datasets, views)
import objectives  # noqa: F401  (registers objectives)
from core import config as config_lib
from core.errors import UserError
from evaluation.floor import set_batch_norm_statistics
from evaluation.protocols import check_protocol
from training.build import build_model_and_data, initial_encoder

CPU = torch.device("cpu")


def stem_outputs_float64(x: np.ndarray, weight: np.ndarray, stride: int) -> np.ndarray:
    """(N, 1, H, W) images through a bias-free 'same'-padded conv of weight (C, 1, k, k), as NumPy loops
    over the kernel taps: (N, C, H', W')."""
    k = weight.shape[-1]
    pad = k // 2
    padded = np.pad(x[:, 0], ((0, 0), (pad, pad), (pad, pad)))
    h = (x.shape[2] + 2 * pad - k) // stride + 1
    out = np.zeros((x.shape[0], weight.shape[0], h, h))
    for i in range(k):
        for j in range(k):
            window = padded[:, i:i + stride * h:stride, j:j + stride * h:stride]  # (N, H', W')
            out += weight[None, :, 0, i, j, None, None] * window[:, None]
    return out


def test_the_first_batch_norm_takes_the_mean_and_variance_of_its_inputs_over_the_train_split():
    cfg = config_lib.load_config("medical", "simclr", overrides=TINY["medical"])
    datasets, _, _ = build_model_and_data(cfg, CPU)
    train = datasets["train"]
    encoder = initial_encoder(cfg, train)
    conv, norm = encoder.features.conv1, encoder.features.bn1
    assert conv.bias is None and float(norm.running_mean.abs().max()) == 0.0  # the placeholders
    assert set_batch_norm_statistics(encoder, train, batch_size=len(train), seed=0, device=CPU) > 1
    x = np.stack([train[i]["x"].double().numpy() for i in range(len(train))])
    stem = stem_outputs_float64(x, conv.weight.detach().double().numpy(), conv.stride[0])
    np.testing.assert_allclose(norm.running_mean.double().numpy(), stem.mean(axis=(0, 2, 3)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(norm.running_var.double().numpy(), stem.var(axis=(0, 2, 3), ddof=1), rtol=1e-4)
    assert not encoder.training and not norm.training and norm.momentum == 0.1  # eval mode, momentum restored


def test_an_encoder_without_batch_norm_is_untouched():
    cfg = config_lib.load_config("sequence", "simclr", overrides=TINY["sequence"])
    datasets, _, _ = build_model_and_data(cfg, CPU)
    encoder = initial_encoder(cfg, datasets["train"])
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in encoder.modules())
    assert set_batch_norm_statistics(encoder, datasets["train"], batch_size=4, seed=0, device=CPU) == 0
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())


def test_a_bad_floor_statistics_value_names_the_choices():
    cfg = config_lib.load_config("medical", "simclr", overrides=["eval.floor_statistics=running"])
    with pytest.raises(UserError, match="eval.floor_statistics must be train or init"):
        check_protocol(cfg)


def test_evaluate_run_reads_the_floor_with_train_statistics_or_the_placeholders(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from evaluation.protocols import evaluate_model, evaluate_run

    floors = {}
    for choice in ("train", "init"):
        cfg = config_lib.load_config("medical", "simclr", overrides=[*TINY["medical"], "eval.probe_epochs=5",
                                                                     f"eval.floor_statistics={choice}"])
        datasets, model, _ = build_model_and_data(cfg, CPU)
        built = initial_encoder(cfg, datasets["train"])
        before = {k: v.clone() for k, v in built.state_dict().items()}
        writer = SummaryWriter(str(tmp_path / choice))
        floors[choice] = evaluate_run(cfg, model, built, datasets, CPU, writer, step=1)["floor"]
        writer.close()
        assert all(torch.equal(before[k], v) for k, v in built.state_dict().items())  # the caller's copy untouched
        expected = initial_encoder(cfg, datasets["train"])
        if choice == "train":
            set_batch_norm_statistics(expected, datasets["train"], cfg["eval"]["batch_size"], cfg["seed"], CPU)
        metrics, _ = evaluate_model({"x": expected}, None, datasets, cfg, CPU, announce=False)
        assert floors[choice]["linear_probe_acc"] == metrics["linear_probe_acc"]
        assert floors[choice]["effective_rank"] == pytest.approx(metrics["effective_rank"], abs=1e-9)
    assert floors["train"]["effective_rank"] != pytest.approx(floors["init"]["effective_rank"], abs=1e-3)
