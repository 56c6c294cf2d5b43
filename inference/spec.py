"""What the loader did to a run's inputs, as one JSON-able dict (``preprocess.json`` of an export).

The spec is read off the run's train split, so it holds what the model was trained on:

- every modality: ``modality``, ``dataset`` (the loader of the train split), ``input_shape``
  (C, ...) of one item, ``channels`` (C);
- audio: ``sample_rate``, ``clip_samples``; mono (channel mean), librosa resampling, center
  crop or zero padding at the end (``modalities/audio/loaders.py``);
- medical: ``spatial_dims``, ``image_size`` (one size per spatial axis); MONAI Resize (area),
  min-max scaling to [0, 1] per image (``modalities/medical/loaders.py``);
- sequence: ``length``; crop or NaN-pad at the end, missing steps 0 and masked
  (``modalities/sequence/loaders.py``).

``loader_options`` turns a spec back into the options of a file loader, so that ``run.py embed
--data`` reads new files exactly as the model's inputs were made.
"""
from __future__ import annotations

import json
from pathlib import Path

from core.errors import UserError
from training.build import takes

MODALITIES = ("audio", "medical", "sequence")
STEPS = {
    "audio": "mono (mean of the channels); resampled with librosa to sample_rate; center-cropped, or "
             "zero-padded at the end, to clip_samples; no normalization (the encoder standardizes each clip)",
    "medical": "read by MONAI LoadImage, channel first; RGBA -> RGB, RGB -> gray by the channel mean, gray -> "
               "channels by repetition; MONAI Resize (mode area) to image_size; min-max scaled to [0, 1] per image "
               "(MONAI ScaleIntensity)",
    "sequence": "cropped, or NaN-padded at the end, to length; a step where any channel is missing (NaN, inf) "
                "or padded is set to 0 and masked out; no normalization (the encoder standardizes)",
}


def preprocess_spec(cfg: dict, train_set) -> dict:
    """The spec of a run whose config is ``cfg`` and train split ``train_set``.

    Raises:
        UserError: the run's modality has no preprocessing here (not audio, medical or sequence).
    """
    modality, shape = cfg["modality"], [int(n) for n in train_set.input_shape]
    if modality not in MODALITIES:
        raise UserError(f"modality '{modality}' has no preprocessing for inference; known: {', '.join(MODALITIES)}")
    spec = {"modality": modality, "dataset": cfg["data"]["name"], "input_shape": shape, "channels": shape[0]}
    if modality == "audio":
        spec.update(sample_rate=int(train_set.sample_rate), clip_samples=shape[1])
    elif modality == "medical":
        spec.update(spatial_dims=len(shape) - 1, image_size=shape[1:])
    else:
        spec.update(length=shape[1])
    spec["steps"] = STEPS[modality]
    return spec


def loader_options(spec: dict, loader: str) -> dict:
    """The options of dataset ``loader`` that fix the model's input, set as the spec says
    (only those the loader takes: e.g. ``sample_rate`` and ``clip_samples`` for audio files)."""
    sizes = spec.get("image_size") or []
    image_size = sizes[0] if sizes and len(set(sizes)) == 1 else sizes
    candidates = {"sample_rate": spec.get("sample_rate"), "clip_samples": spec.get("clip_samples"),
                  "image_size": image_size, "channels": spec["channels"],
                  "spatial_dims": spec.get("spatial_dims"), "length": spec.get("length")}
    return {k: v for k, v in candidates.items() if v not in (None, []) and takes("dataset", loader, k)}


def write_spec(spec: dict, path: Path) -> None:
    Path(path).write_text(json.dumps(spec, indent=2) + "\n")


def read_spec(path: Path) -> dict:
    """A spec written by ``write_spec``.

    Raises:
        UserError: the file is missing, not JSON, or lacks ``modality`` and ``input_shape``.
    """
    path = Path(path)
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"'{path}' cannot be read as a preprocess spec ({type(err).__name__}: {err})") from None
    if not isinstance(spec, dict) or spec.get("modality") not in MODALITIES or "input_shape" not in spec:
        raise UserError(f"'{path}' is not a preprocess spec (it needs 'modality' and 'input_shape')")
    return spec
