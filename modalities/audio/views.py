"""Batched random views of raw waveforms (B, 1, T), on x's device, all randomness from one generator.

Each augmentation is applied to each (sample, view) independently, with its
own probability and its own random parameters, in this order:

1. crop: keep a window of a random fraction in [crop_min, 1] of T, placed at a
   random position of an otherwise silent clip (a crop plus a time shift);
2. shift: delay or advance by up to ``max_shift`` of T, zero-filled (no wrap-around);
3. speed: resample by a factor 2 ** (u / 12), u uniform in [-speed_semitones, speed_semitones],
   linear interpolation from the clip's start, zero past its end: pitch and tempo change
   together (Kaldi's speed perturbation, Ko et al. 2015);
4. gain: multiply by a random gain in [gain_db_min, gain_db_max] dB;
5. mix: add another clip of the batch, v <- (1 - lam) v + lam other, lam uniform in
   [0, mix_max], the other clip's own unaugmented waveform (mixing with other clips as
   background, as BYOL-A and COLA do); off by default (it did not add to speed on gm_notes);
6. noise: add white Gaussian noise at a random SNR in [snr_db_min, snr_db_max] dB
   relative to the view's own power (a silent view gets no noise);
7. frequency masks: SpecAugment's frequency masking on the waveform: an
   FFT band-stop (rfft, zero a band of up to ``freq_mask_max`` of the
   spectrum, irfft) per mask;
8. time masks: SpecAugment's time masking on the waveform: zero spans of up
   to ``time_mask_max`` of T.

Every draw has a shape that depends only on (B, V, T), so without mixing a sample's views
depend only on that sample and the generator state, never on the other samples of the
batch (mixing reads another clip by design). Speed and mixing draw nothing when their
probability is 0. Pure tensor ops: runs on the GPU with a CUDA generator.
"""
from __future__ import annotations

import torch
from torch import nn

from core.registry import register
from modalities.crops import LocalCrops


def take_interpolated(x: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """x (N, 1, T) read at fractional positions (N, T) by linear interpolation; outside [0, T - 1] reads 0."""
    low = position.floor()
    frac = (position - low).unsqueeze(1).to(x.dtype)
    low = low.long()
    return take(x, low) * (1 - frac) + take(x, low + 1) * frac


def take(x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """x (N, 1, T) read at integer positions source (N, T); positions outside [0, T) read 0."""
    t = x.shape[-1]
    valid = (source >= 0) & (source < t)
    picked = torch.gather(x[:, 0], 1, source.clamp(0, t - 1))
    return torch.where(valid, picked, torch.zeros_like(picked)).unsqueeze(1)


@register("views", "audio_views", modality="audio", provides=("views",))
class AudioViews(LocalCrops, nn.Module):
    """``n_views`` augmented copies of every clip: (B, 1, T) -> (B, V, 1, T).

    Args (each ``*_p`` is the per-view probability of that augmentation; see the module docstring):
        crop_min: shortest crop window, as a fraction of T.
        max_shift: largest shift, as a fraction of T.
        speed_semitones: largest speed change, in semitones of the pitch it moves (2: factors 0.89..1.12).
        gain_db_min, gain_db_max: gain range in dB.
        mix_max: largest weight of the other clip mixed in.
        snr_db_min, snr_db_max: noise SNR range in dB.
        freq_masks, freq_mask_max: band-stop count and widest band, as a fraction of 0..Nyquist.
        time_masks, time_mask_max: zeroed span count and longest span, as a fraction of T.
        local_views, local_scale: multi-crop (``modalities/crops.py``): ``local_crops(x, generator)`` makes
            ``local_views`` more views, each cut to a random window of ``local_scale`` of every extent.

    Raises:
        ValueError: a probability outside [0, 1], n_views < 1, an empty or reversed range,
            speed_semitones < 0, mix_max outside [0, 1], or x not of shape (B, 1, T).
    """

    def __init__(self, n_views: int = 2, crop_p: float = 0.5, crop_min: float = 0.7,
                 shift_p: float = 0.5, max_shift: float = 0.2,
                 speed_p: float = 0.5, speed_semitones: float = 2.0,
                 gain_p: float = 0.8, gain_db_min: float = -10.0, gain_db_max: float = 6.0,
                 mix_p: float = 0.0, mix_max: float = 0.4,
                 noise_p: float = 0.5, snr_db_min: float = 5.0, snr_db_max: float = 30.0,
                 freq_mask_p: float = 0.5, freq_masks: int = 1, freq_mask_max: float = 0.15,
                 time_mask_p: float = 0.5, time_masks: int = 2, time_mask_max: float = 0.1,
                 local_views: int = 0, local_scale: float = 0.4):
        super().__init__()
        self.p = dict(crop_p=crop_p, shift_p=shift_p, speed_p=speed_p, gain_p=gain_p, mix_p=mix_p, noise_p=noise_p,
                      freq_mask_p=freq_mask_p, time_mask_p=time_mask_p)
        bad = {k: v for k, v in self.p.items() if not 0.0 <= v <= 1.0}
        if bad:
            raise ValueError(f"probabilities must lie in [0, 1], got {bad}")
        if n_views < 1 or not 0 < crop_min <= 1 or not 0 <= max_shift <= 1:
            raise ValueError("need n_views >= 1, 0 < crop_min <= 1 and 0 <= max_shift <= 1")
        if gain_db_min > gain_db_max or snr_db_min > snr_db_max:
            raise ValueError("gain_db_min must not exceed gain_db_max, nor snr_db_min snr_db_max")
        if freq_masks < 0 or time_masks < 0 or not 0 <= freq_mask_max <= 1 or not 0 <= time_mask_max <= 1:
            raise ValueError("need freq_masks, time_masks >= 0 and freq_mask_max, time_mask_max in [0, 1]")
        if speed_semitones < 0 or not 0 <= mix_max <= 1:
            raise ValueError(f"need speed_semitones >= 0 and mix_max in [0, 1], got {speed_semitones}, {mix_max}")
        self.speed_semitones, self.mix_max = speed_semitones, mix_max
        self.n_views, self.crop_min, self.max_shift = n_views, crop_min, max_shift
        self.gain_db, self.snr_db = (gain_db_min, gain_db_max), (snr_db_min, snr_db_max)
        self.freq_masks, self.freq_mask_max = freq_masks, freq_mask_max
        self.time_masks, self.time_mask_max = time_masks, time_mask_max
        self.init_local(local_views, local_scale)

    def forward(self, x: torch.Tensor, generator: torch.Generator, n_views: int | None = None) -> torch.Tensor:
        n_views = self.n_views if n_views is None else n_views  # local_crops asks for local_views
        if x.dim() != 3 or x.shape[1] != 1:
            raise ValueError(f"expected mono audio of shape (B, 1, T), got {tuple(x.shape)}")
        b, _, t = x.shape
        n, dev = b * n_views, x.device
        v = x.unsqueeze(1).expand(b, n_views, 1, t).reshape(n, 1, t)

        def rand(*shape):
            return torch.rand(*shape, generator=generator, device=dev)

        def uniform(low, high, *shape):
            return low + (high - low) * rand(*shape)

        def chosen(key):  # (N, 1, 1) bool: which views get augmentation ``key``
            return (rand(n) < self.p[key]).view(n, 1, 1)

        steps = torch.arange(t, device=dev)
        # crop a window of w samples starting at a, placed at o: out[s] = x[s - o + a] for o <= s < o + w
        on = chosen("crop_p")
        width = (uniform(self.crop_min, 1.0, n, 1) * t).round().long().clamp(1, t)
        start = (rand(n, 1) * (t - width + 1)).long()
        place = (rand(n, 1) * (t - width + 1)).long()
        source = torch.where((steps >= place) & (steps < place + width), steps - place + start, -1)
        v = torch.where(on, take(v, source), v)
        # shift by a whole number of samples, zero-filled
        on = chosen("shift_p")
        shift = (uniform(-self.max_shift, self.max_shift, n, 1) * t).round().long()
        v = torch.where(on, take(v, steps - shift), v)
        if self.p["speed_p"] > 0:  # resample: out[s] = v[s * factor], pitch and tempo together
            on = chosen("speed_p")
            factor = 2 ** (uniform(-self.speed_semitones, self.speed_semitones, n, 1) / 12)
            v = torch.where(on, take_interpolated(v, steps * factor), v)
        # gain
        on = chosen("gain_p")
        v = torch.where(on, v * 10 ** (uniform(*self.gain_db, n, 1, 1) / 20), v)
        if self.p["mix_p"] > 0 and b > 1:  # another clip of the batch: index (i + k) mod B, k in 1..B-1
            on = chosen("mix_p")
            clip = torch.arange(n, device=dev) // n_views
            other = (clip + 1 + (rand(n) * (b - 1)).long().clamp(max=b - 2)) % b
            lam = uniform(0, self.mix_max, n, 1, 1)
            v = torch.where(on, (1 - lam) * v + lam * x[other].to(v.dtype), v)
        # white noise at a random SNR of the view's own power
        on = chosen("noise_p")
        power = v.square().mean(dim=-1, keepdim=True)
        noise_std = torch.sqrt(power / 10 ** (uniform(*self.snr_db, n, 1, 1) / 10))
        noise = torch.randn(n, 1, t, generator=generator, device=dev, dtype=v.dtype)
        v = torch.where(on, v + noise_std * noise, v)
        # frequency masks: zero a band of rfft bins, back to T samples
        on = chosen("freq_mask_p")
        bins = t // 2 + 1
        band = (uniform(0, self.freq_mask_max, n, self.freq_masks, 1) * bins).long()
        low = (rand(n, self.freq_masks, 1) * (bins - band + 1)).long()
        k = torch.arange(bins, device=dev)
        stop = ((k >= low) & (k < low + band)).any(dim=1, keepdim=True)  # (N, 1, bins)
        filtered = torch.fft.irfft(torch.fft.rfft(v, dim=-1).masked_fill(stop, 0), n=t, dim=-1)
        v = torch.where(on, filtered.to(v.dtype), v)
        # time masks: zero spans
        on = chosen("time_mask_p")
        span = (uniform(0, self.time_mask_max, n, self.time_masks, 1) * t).long()
        begin = (rand(n, self.time_masks, 1) * (t - span + 1)).long()
        masked = ((steps >= begin) & (steps < begin + span)).any(dim=1, keepdim=True)  # (N, 1, T)
        v = torch.where(on & masked, torch.zeros_like(v), v)
        return v.reshape(b, n_views, 1, t)
