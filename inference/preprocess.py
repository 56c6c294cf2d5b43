"""Raw inputs -> one model input, as the run's loader made its items (the spec: ``inference/spec.py``).

Each ``preprocess`` calls the loader's own functions, so an input prepared here equals the item
the loader makes of the same file:

- audio ``preprocess(wave, sample_rate)`` or ``preprocess(path)`` -> (1, clip_samples) float32:
  ``wave`` is (T,) or (C, T) / (T, C) (the shorter axis is channels: soundfile gives (T, C),
  torchaudio (C, T)); mono, resampled, center-cropped or zero-padded (``audio.loaders.fit_clip``);
- medical ``preprocess(image)`` or ``preprocess(path)`` -> (channels, *image_size) float32 in
  [0, 1]: ``image`` is (*spatial), (C, *spatial) or, for 2-D, (H, W, C) with C of 1, 3 or 4;
  converted, resized and scaled by the manifest loader's MONAI transforms;
- sequence ``preprocess(series)`` -> (C, length) float32: ``series`` is (T,) or (C, T), cropped or
  NaN-padded to ``length``; NaN (or inf) marks missing steps, which ``LoadedRun.embed`` masks as
  the loader does (``sequence.loaders.masked``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from core.errors import UserError
from modalities.audio.loaders import fit_clip, read_audio
from modalities.medical.loaders import failure_reason, image_transforms, load_image, pipeline
from modalities.sequence.loaders import fixed_length


class AudioPreprocess:
    """A waveform and its sample rate (or an audio file) -> (1, clip_samples) float32."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.sample_rate, self.clip_samples = int(spec["sample_rate"]), int(spec["clip_samples"])

    def __call__(self, audio, sample_rate: int | None = None) -> torch.Tensor:
        """Raises:
            UserError: an array without ``sample_rate``, an empty or non-finite wave, or more than 2
                axes; AudioFileError (a UserError) naming a file that cannot be read.
        """
        if isinstance(audio, (str, Path)):
            wave, _ = read_audio(Path(audio), self.sample_rate, self.clip_samples)
            return torch.from_numpy(wave)[None]
        if sample_rate is None:
            raise UserError("preprocess(wave, sample_rate): a waveform array needs its sample rate")
        wave = np.asarray(audio, dtype=np.float32)
        if wave.ndim == 2:
            wave = wave.mean(axis=0 if wave.shape[0] <= wave.shape[1] else 1)
        if wave.ndim != 1 or wave.size == 0:
            raise UserError(f"preprocess: a waveform is (T,), (C, T) or (T, C) with samples, got shape {wave.shape}")
        if not np.isfinite(wave).all():
            raise UserError("preprocess: the waveform holds non-finite samples")
        return torch.from_numpy(fit_clip(wave, int(sample_rate), self.sample_rate, self.clip_samples))[None]

    def __repr__(self) -> str:
        return f"AudioPreprocess(sample_rate={self.sample_rate}, clip_samples={self.clip_samples})"


class ImagePreprocess:
    """An image or volume array (or an image file) -> (channels, *image_size) float32 in [0, 1]."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.channels, self.spatial_dims = int(spec["channels"]), int(spec["spatial_dims"])
        self.image_size = [int(n) for n in spec["image_size"]]
        self.origin = f"the run's preprocess, spatial_dims={self.spatial_dims}"

    def __call__(self, image) -> torch.Tensor:
        """Raises:
            UserError: an array of another number of axes or channels; MedicalFileError (a
                UserError) naming a file that cannot be read.
        """
        if isinstance(image, (str, Path)):
            transform = pipeline(self.image_size, self.channels, self.spatial_dims, self.origin)
            return load_image(transform, Path(image), f"'{image}'")
        x = torch.as_tensor(np.asarray(image), dtype=torch.float32)
        if x.dim() == self.spatial_dims:
            x = x[None]
        elif x.dim() == 3 == self.spatial_dims + 1 and x.shape[0] not in (1, 3, 4) and x.shape[-1] in (1, 3, 4):
            x = x.permute(2, 0, 1)
        if x.dim() != self.spatial_dims + 1:
            raise UserError(f"preprocess: expected an image of {self.spatial_dims} spatial axes, with or "
                            f"without a channel axis, got shape {tuple(x.shape)}")
        from monai.transforms import Compose

        try:
            transform = Compose(image_transforms(self.image_size, self.channels, self.spatial_dims, self.origin))
            return transform({"image": x})["image"]
        except Exception as err:  # MONAI wraps the shape errors of its transforms in RuntimeError
            raise UserError(f"preprocess: image of shape {tuple(x.shape)} {failure_reason(err)}") from None

    def __repr__(self) -> str:
        return f"ImagePreprocess(channels={self.channels}, image_size={self.image_size})"


class SeriesPreprocess:
    """A series (T,) or (C, T) -> (C, length) float32, NaN at missing and padded steps."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.channels, self.length = int(spec["channels"]), int(spec["length"])

    def __call__(self, series) -> torch.Tensor:
        """Raises:
            UserError: not 1 or 2 axes, or another channel count than the run's.
        """
        x = np.asarray(series, dtype=np.float64)
        x = x[None] if x.ndim == 1 else x
        if x.ndim != 2 or x.shape[0] != self.channels or x.shape[1] == 0:
            raise UserError(f"preprocess: expected a series ({self.channels}, T) (or (T,) for one channel), "
                            f"got shape {np.shape(series)}")
        return torch.from_numpy(fixed_length([x], self.length)[0]).float()

    def __repr__(self) -> str:
        return f"SeriesPreprocess(channels={self.channels}, length={self.length})"


PREPROCESS = {"audio": AudioPreprocess, "medical": ImagePreprocess, "sequence": SeriesPreprocess}


def make_preprocess(spec: dict):
    """The preprocess callable of a spec (``inference.spec.preprocess_spec``)."""
    return PREPROCESS[spec["modality"]](spec)
