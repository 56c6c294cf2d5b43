"""Representation quality watched during training: what the loop logs at every validation.

With ``train.online_eval`` on, each validation (``train.val_every``) embeds, with the x encoder
frozen (eval mode, no gradient, the global RNG restored), two fixed subsets chosen once from
``seed``: up to ``train.online_eval_items`` train items (the kNN bank) and as many val items
(the queries), and logs

- ``val/online_probe_acc``: the online classifier (``training.online_eval``) in its current state on the
  val items, standardized by its running statistics;
- ``val/knn_acc``: weighted kNN (``metrics.knn_accuracy``, ``eval.knn_k``, ``eval.knn_temperature``)
  of the val items against the bank;
- ``val/effective_rank`` (``metrics.effective_rank``) and ``val/output_std`` (the mean over
  dimensions of the standard deviation over items of the L2-normalized embeddings,
  ``objectives.parts.normalized_std``: about 1/sqrt(D) when spread, 0 at collapse) of the val items.

The first two need labels and are left out when the train split has one class. Under torchrun
rank 0 alone computes these (only the encoder runs, no collective), on the same items as one
process would, while the other ranks wait at the next step's gradient reduction.
"""
from __future__ import annotations

import torch
from torch.utils.data import Subset

from evaluation import metrics
from evaluation.protocols import embed, frozen
from objectives.parts import normalized_std
from training.online_eval import OnlineProbe, has_labels


def fixed_subset(dataset, items: int, seed: int):
    """``dataset`` itself when it has at most ``items`` items, else a Subset of ``items`` of them drawn
    once from ``seed`` (in index order)."""
    if len(dataset) <= items:
        return dataset
    chosen = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:items]
    return Subset(dataset, chosen.sort().values.tolist())


def representation_scores(queries: torch.Tensor, query_labels: torch.Tensor | None = None,
                          bank: torch.Tensor | None = None, bank_labels: torch.Tensor | None = None,
                          n_classes: int = 0, k: int = 20, temperature: float = 0.07) -> dict:
    """{"effective_rank", "output_std"} of ``queries`` (M, D), and "knn_acc" of the queries (labels
    (M,)) against ``bank`` (N, D) with labels (N,) in [0, n_classes) when a bank is given."""
    out = {"effective_rank": metrics.effective_rank(queries), "output_std": normalized_std(queries).item()}
    if bank is not None:
        out["knn_acc"] = metrics.knn_accuracy(bank, bank_labels, queries, query_labels, n_classes, k, temperature)
    return out


class OnlineValidation:
    """The fixed bank and val items of one run, and the scores of an encoder on them.

    Args:
        cfg: the run's config (``seed``, ``train.online_eval_items``, ``eval.batch_size``,
            ``eval.knn_k``, ``eval.knn_temperature``).
        datasets: {"train", "val", ...}.
    """

    def __init__(self, cfg: dict, datasets: dict, device):
        items, seed = cfg["train"]["online_eval_items"], cfg["seed"]
        self.labelled = has_labels(datasets["train"])
        self.bank = fixed_subset(datasets["train"], items, seed) if self.labelled else None
        self.queries = fixed_subset(datasets["val"], items, seed + 1)
        self.n_classes = len(datasets["train"].classes)
        self.batch_size, self.device = cfg["eval"]["batch_size"], device
        self.k, self.temperature = cfg["eval"]["knn_k"], cfg["eval"]["knn_temperature"]

    def __call__(self, encoder, probe: OnlineProbe | None) -> dict:
        """{"effective_rank", "output_std"[, "knn_acc", "online_probe_acc"]} as Python floats; {} when the
        val split is empty. The encoder's mode, BatchNorm statistics and the global RNG are left as they were."""
        if len(self.queries) == 0:
            return {}
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), frozen(encoder):
            queries = embed(encoder, self.queries, self.batch_size, self.device)
            bank = embed(encoder, self.bank, self.batch_size, self.device) if self.labelled else None
        if bank is None:
            return representation_scores(queries["embedding"])
        n_classes = max(self.n_classes, int(bank["label"].max()) + 1, int(queries["label"].max()) + 1)
        out = representation_scores(queries["embedding"], queries["label"], bank["embedding"], bank["label"],
                                    n_classes, self.k, self.temperature)
        if probe is not None:
            out["online_probe_acc"] = probe.accuracy(queries["embedding"], queries["label"])
        return out
