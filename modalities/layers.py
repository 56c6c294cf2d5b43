"""Layers shared by the encoders of several modalities."""
from __future__ import annotations

from einops import rearrange
from torch import nn


class ChannelNorm(nn.Module):
    """LayerNorm over channels at each step of (B, C, T) -> (B, C, T); statistics never mix time steps.

    Normalizing over time (BatchNorm, GroupNorm) would let step t see the future
    of its sequence, which CPC's prediction task could exploit (CPC_audio uses this).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x):
        return rearrange(self.norm(rearrange(x, "b c t -> b t c")), "b t c -> b c t")
