"""A log-mel CNN audio encoder in the style of PANNs' CNN14 (Kong et al. 2020), small by default."""
from __future__ import annotations

import torch
import torchaudio
from einops import rearrange, reduce
from torch import nn

from core.registry import register


class ConvBlock(nn.Module):
    """Two 3x3 conv + BatchNorm + ReLU, then 2x2 average pooling: (B, C, T, F) -> (B, C', T/2, F/2)."""

    def __init__(self, channels_in: int, channels_out: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False), nn.BatchNorm2d(channels_out), nn.ReLU(),
            nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False), nn.BatchNorm2d(channels_out), nn.ReLU(),
            nn.AvgPool2d(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@register("encoder", "logmel_cnn", modality="audio", outputs=("embedding", "sequence"))
class LogMelCNN(nn.Module):
    """Raw waveform -> log-mel spectrogram (computed in the model, so on its device) -> CNN.

    The mel filterbank and window are buffers of ``torchaudio.transforms.MelSpectrogram``;
    log(mel + 1e-6) is normalized per mel bin by BatchNorm (CNN14's ``bn0``), then
    ``len(widths)`` conv blocks each halve time and frequency.

    Input:  x (B, T_samples) or (B, 1, T_samples), float waveform at ``sample_rate``.
    Output: "sequence" (B, T', widths[-1]): the last block averaged over frequency,
            T' = (T_samples // hop_length + 1) // 2**len(widths) (about 80 ms a step with the defaults);
            "embedding" (B, 2 * widths[-1]): mean and max of "sequence" over time, concatenated.

    The 3x3 convolutions see neighbouring frames and BatchNorm statistics span
    the whole batch, so a step of "sequence" is not causal and not independent
    of the other steps. CPC can still train on it, but its prediction task is
    easier than on the causal ``cpc_wave`` encoder; and CPC needs more steps than
    ``objective.prediction_steps`` (12): 1 s clips give only 12, so use clips of
    2 s (``clip_samples: 32000``: 25 steps) or a smaller ``hop_length``.

    ``dropout``: in training, nn.Dropout with this p on the last block's feature map, before
    it is pooled; 0 (default) leaves the outputs unchanged bit for bit.

    Raises:
        ValueError: n_mels too small for the number of blocks; a clip too short
            for ``2**len(widths)`` frames; more than one channel.
    """

    def __init__(self, sample_rate: int = 16000, n_mels: int = 64, widths=(16, 32, 64), n_fft: int = 400,
                 hop_length: int = 160, dropout: float = 0.0):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if not widths:
            raise ValueError("widths must name at least one block")
        self.min_frames = 2 ** len(widths)
        if n_mels < self.min_frames:
            raise ValueError(f"n_mels={n_mels} is too few for {len(widths)} blocks (each halves it); "
                             f"need >= {self.min_frames}")
        self.mel = torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels)
        self.bn0 = nn.BatchNorm1d(n_mels)
        self.blocks = nn.Sequential(*(ConvBlock(a, b) for a, b in zip((1,) + widths[:-1], widths)))
        self.dropout = nn.Dropout(dropout)  # p = 0 returns its input untouched and draws no random numbers
        self.dims = {"embedding": 2 * widths[-1], "sequence": widths[-1]}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.dim() == 3:
            if x.shape[1] != 1:
                raise ValueError(f"logmel_cnn takes mono audio (B, 1, T) or (B, T), got {tuple(x.shape)}")
            x = x[:, 0]
        logmel = torch.log(self.mel(x) + 1e-6)  # (B, n_mels, frames)
        if logmel.shape[-1] < self.min_frames:
            raise ValueError(f"a clip of {x.shape[-1]} samples gives {logmel.shape[-1]} frames; "
                             f"logmel_cnn needs at least {self.min_frames}")
        h = self.dropout(self.blocks(rearrange(self.bn0(logmel), "b f t -> b 1 t f")))
        seq = reduce(h, "b c t f -> b t c", "mean")
        return {"sequence": seq, "embedding": torch.cat([seq.mean(dim=1), seq.amax(dim=1)], dim=-1)}
