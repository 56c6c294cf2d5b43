"""Audio encoders. Each returns {"embedding": (B, D), "sequence": (B, T, D), ...}."""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from modalities.layers import ChannelNorm
from core.registry import register


@register("encoder", "cpc_wave", modality="audio", outputs=("embedding", "sequence", "context"))
class CPCWaveEncoder(nn.Module):
    """Raw-waveform CPC encoder (van den Oord et al. 2018) with a GRU context network.

    Five strided 1-D convolutions (strides 5,4,2,2,2, kernels 10,8,4,4,4: one
    latent z_t per 160 samples, 10 ms at 16 kHz) then a GRU over z gives c_t.

    ``normalize_input`` standardizes each clip first, so that loudness alone
    cannot tell clips apart (a shortcut CPC's negatives from other clips invite).

    ``dropout``: in training, nn.Dropout with this p on the latents z (the "sequence"
    output and the GRU's input); 0 (default) leaves the outputs unchanged bit for bit.

    Input:  x (B, T_samples) or (B, 1, T_samples), float waveform.
    Output: "sequence" z (B, T, width), "context" c (B, T, context_dim),
            "embedding" mean and max of c over time, concatenated (B, 2 * context_dim),
            T = T_samples // 160. Mean+max pooling (as PANNs' CNN14) keeps a short
            event from being diluted by the silence around it.
    """

    STRIDES, KERNELS, PADDING = (5, 4, 2, 2, 2), (10, 8, 4, 4, 4), (3, 2, 1, 1, 1)

    def __init__(self, width: int = 64, context_dim: int = 128, normalize_input: bool = True,
                 dropout: float = 0.0):
        super().__init__()
        self.normalize_input = normalize_input
        layers, channels = [], 1
        for stride, kernel, pad in zip(self.STRIDES, self.KERNELS, self.PADDING):
            layers += [nn.Conv1d(channels, width, kernel, stride, pad), ChannelNorm(width), nn.ReLU()]
            channels = width
        self.convs = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)  # p = 0 returns its input untouched and draws no random numbers
        self.context = nn.GRU(width, context_dim, batch_first=True)
        self.dims = {"embedding": 2 * context_dim, "sequence": width, "context": context_dim}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.dim() == 2:
            x = x.unsqueeze(1)
        if self.normalize_input:  # zero mean, unit variance per clip, as wav2vec 2.0 does
            x = (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + 1e-5)
        z = self.dropout(rearrange(self.convs(x), "b c t -> b t c"))
        c, _ = self.context(z)
        return {"sequence": z, "context": c, "embedding": torch.cat([c.mean(dim=1), c.amax(dim=1)], dim=-1)}
