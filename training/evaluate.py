"""Frozen-encoder evaluation: embeddings and a linear probe.

Protocol (fixed, nothing chosen by looking at test): embed train and test
splits with the frozen encoder in eval mode; standardize with train
statistics; fit a multinomial logistic regression on train only (full batch,
AdamW, ``probe_epochs`` epochs at ``probe_lr``, weight decay
``probe_weight_decay``, seeded); report accuracy once on test.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from objectives.inputs import encode
from training.data import eval_loader, to_device


@torch.no_grad()
def embed(encoder, dataset, batch_size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings (N, D) float32 on CPU and labels (N,) of a whole split, in order."""
    was_training = encoder.training
    encoder.eval()
    embeddings, labels = [], []
    for batch in eval_loader(dataset, batch_size):
        batch = to_device(batch, device)
        embeddings.append(encode(encoder, batch)["embedding"].float().cpu())
        labels.append(batch["label"].cpu())
    encoder.train(was_training)
    return torch.cat(embeddings), torch.cat(labels)


def linear_probe(train_x, train_y, test_x, test_y, epochs: int = 100, lr: float = 0.01,
                 weight_decay: float = 1e-4, seed: int = 0) -> float:
    """Test accuracy of a logistic regression fit on (train_x, train_y) only.

    Args:
        train_x: (N, D) float; train_y: (N,) long in [0, C).
        test_x: (M, D) float; test_y: (M,) long.

    Returns:
        accuracy on the test embeddings, a float in [0, 1].
    """
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    n_classes = int(max(train_y.max(), test_y.max())) + 1
    generator = torch.Generator().manual_seed(seed)
    weight = (torch.randn(train_x.shape[1], n_classes, generator=generator) * 0.01).requires_grad_()
    bias = torch.zeros(n_classes, requires_grad=True)
    optimizer = torch.optim.AdamW([weight, bias], lr=lr, weight_decay=weight_decay)
    with torch.enable_grad():
        for _ in range(epochs):
            optimizer.zero_grad()
            F.cross_entropy(train_x @ weight + bias, train_y).backward()
            optimizer.step()
    with torch.no_grad():
        return ((test_x @ weight + bias).argmax(1) == test_y).float().mean().item()


def probe_encoder(encoder, datasets: dict, cfg: dict, device) -> dict:
    """{'linear_probe_acc': ...} for one encoder: fit on train, report on test."""
    ev = cfg["eval"]
    train_x, train_y = embed(encoder, datasets["train"], ev["batch_size"], device)
    test_x, test_y = embed(encoder, datasets["test"], ev["batch_size"], device)
    acc = linear_probe(train_x, train_y, test_x, test_y, ev["probe_epochs"], ev["probe_lr"],
                       ev["probe_weight_decay"], cfg["seed"])
    return {"linear_probe_acc": acc}


def evaluate_run(cfg: dict, model, floor_encoder, datasets: dict, device, writer, step: int) -> dict:
    """Every protocol on the trained encoder and on ``floor_encoder`` (its random init).

    Logs ``eval/<metric>`` and ``eval/floor_<metric>`` at ``step`` and returns
    {"metrics": {...}, "floor": {...}} with the same keys, merged into results.json.
    """
    metrics = probe_encoder(model["encoders"]["x"], datasets, cfg, device)
    floor = probe_encoder(floor_encoder, datasets, cfg, device)
    for key, value in metrics.items():
        writer.add_scalar(f"eval/{key}", value, step)
        writer.add_scalar(f"eval/floor_{key}", floor[key], step)
    return {"metrics": metrics, "floor": floor}
