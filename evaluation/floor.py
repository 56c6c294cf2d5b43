"""The random-init floor's BatchNorm statistics (``eval.floor_statistics``).

A BatchNorm layer normalizes by the statistics of its batch while it trains and by its running
statistics in eval mode, where every protocol reads the encoder. At initialization those running
statistics are placeholders (mean 0, variance 1): no data has passed through the layer yet, so an
initial encoder in eval mode skips normalization altogether, a function the network never computes
on data, neither at its first training step (batch statistics) nor after training (running
statistics of the views it trained on). ``train`` (the default) gives the floor the statistics of
its own inputs over the train split before it is evaluated, as SWA's ``update_bn`` (Izmailov et al.
2018) does for averaged weights: every BatchNorm layer's running mean and variance become the
cumulative average of its per-batch statistics, batches of ``eval.batch_size`` unaugmented train
items in a seeded order, each layer normalizing by its batch as in training. ``init`` keeps the
placeholders (the floor of runs before this option). Encoders without BatchNorm (the sequence
encoders, the default audio encoder, LayerNorm and ChannelNorm keep no running statistics) are
the same either way.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from objectives.parts import encode_batch
from training.data import to_device

FLOOR_STATISTICS = ("train", "init")


def set_batch_norm_statistics(encoder: nn.Module, dataset, batch_size: int, seed: int, device) -> int:
    """Replace the running mean and variance of every BatchNorm layer of ``encoder`` by the
    cumulative average of its batch statistics over ``dataset`` (items' ``x``, and ``mask`` where
    there is one); the encoder is left in eval mode. Returns how many layers were set (0: the encoder
    has none and is untouched).

    With ``batch_size`` >= len(dataset) a layer's running mean is the mean of its inputs over the
    whole split and its running variance their unbiased variance.
    """
    norms = [m for m in encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
    encoder.eval()  # dropout and masking off; only the BatchNorm layers below see batch statistics
    for m in norms:
        m.train()
    order = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=order):
            encode_batch(encoder, to_device(batch, device))["embedding"]
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    encoder.eval()
    return len(norms)
