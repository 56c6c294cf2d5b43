"""What the evaluation writes to the run's TensorBoard, all in the run's own folder.

- ``eval/<metric>`` and ``eval/floor_<metric>`` scalars, one per key of the evaluation's
  metrics (``svm_c``, the SVM's chosen C, included); a per-class metric (a dict) gives one
  scalar per class, ``eval/<metric>/<class>`` (e.g. ``eval/linear_probe_per_class_acc/nodule``);
- single-label data: the linear probe's confusion matrix on the reported split as an image
  (``eval/confusion_matrix``, ``eval/floor_confusion_matrix``; ``evaluation.confusion_image``);
- one hparams entry (modality, objective, ``eval.split`` and key hyperparameters against the
  scalar ``eval/*`` metrics), written with the run's own writer (``SummaryWriter.add_hparams``
  would open a sub-folder, i.e. a second run);
- the embedding projector of the reported split (``eval.split``: ``eval_embedding``, ``eval_floor_embedding``)
  with class names (and captions) as labels, and thumbnails for 2D images; written
  once per step (``run.py eval`` of the same checkpoint leaves the first one);
- a few clips of the reported split (``eval/audio/<class>``) for audio data (datasets with ``sample_rate``);
- paired objectives: ``eval/similarity_matrix``, the cosine similarities of the first
  ``SIM_ITEMS`` reported items (rows) and their captions (columns) in the joint space, mapped
  from [-1, 1] to [0, 1] (a bright diagonal is a model that matches its pairs).
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.tensorboard.summary import hparams

from evaluation.classification import confusion_counts
from evaluation.confusion_image import confusion_image
from modalities.multi_label import NO_FINDING, SEPARATOR

AUDIO_EXAMPLES = 4   # test clips written per run
SIM_ITEMS = 32       # rows and columns of the similarity-matrix image
THUMBNAIL = 32       # projector thumbnail side, pixels


def log_all(writer, cfg: dict, step: int, test_set, trained: dict, floor: dict, trained_test: dict,
            floor_test: dict) -> None:
    """Every TensorBoard output of one evaluation (see the module docstring); ``test_set`` and
    ``trained_test``/``floor_test`` are the reported split (``eval.split``) and its embeddings."""
    log_scalars(writer, step, trained, floor)
    log_hparams(writer, cfg, trained)
    log_projector(writer, "eval_embedding", trained_test, test_set, step)
    log_projector(writer, "eval_floor_embedding", floor_test, test_set, step)
    for tag, reported in (("eval/confusion_matrix", trained_test), ("eval/floor_confusion_matrix", floor_test)):
        if reported.get("probe_predicted") is not None:
            log_confusion(writer, tag, reported["label"], reported["probe_predicted"], test_set.classes, step)
    if hasattr(test_set, "sample_rate"):
        log_audio(writer, test_set, step)
    if "joint" in trained_test and "text" in trained_test:
        log_similarity(writer, trained_test["joint"], trained_test["text"], step)
    writer.flush()


def tag_part(name) -> str:
    """``name`` as one part of a TensorBoard tag: characters other than letters, digits, '-', '_', '.' become '_'."""
    return re.sub(r"[^-\w.]", "_", str(name))


def flat_scalars(values: dict, prefix: str) -> dict:
    """{tag: value}: ``prefix<key>`` per number of ``values``, ``prefix<key>/<name>`` per entry of a dict value."""
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update({f"{prefix}{key}/{tag_part(name)}": v for name, v in value.items() if v is not None})
        elif value is not None:
            out[f"{prefix}{key}"] = value
    return out


def log_scalars(writer, step: int, trained: dict, floor: dict) -> None:
    for tag, value in {**flat_scalars(trained, "eval/"), **flat_scalars(floor, "eval/floor_")}.items():
        writer.add_scalar(tag, value, step)


def log_confusion(writer, tag: str, labels: torch.Tensor, predicted: torch.Tensor, classes, step: int) -> None:
    """The confusion matrix of ``predicted`` (N,) against ``labels`` (N,) as an image at ``tag``."""
    n = max(len(classes), int(labels.max()) + 1, int(predicted.max()) + 1)
    writer.add_image(tag, confusion_image(confusion_counts(labels, predicted, n), classes), step, dataformats="HWC")


def hparam_values(cfg: dict) -> dict:
    """The run's identity and key hyperparameters, as TensorBoard hparams (scalars and strings only)."""
    values = {"modality": cfg["modality"], "objective": cfg["objective"]["name"], "encoder": cfg["model"]["encoder"],
              "dataset": cfg["data"]["name"], "seed": cfg["seed"], "steps": cfg["train"]["steps"],
              "batch_size": cfg["train"]["batch_size"], "lr": cfg["optim"]["lr"],
              "weight_decay": cfg["optim"]["weight_decay"], "eval.split": cfg["eval"]["split"]}
    for key, value in cfg["objective"].items():
        if key != "name" and isinstance(value, (bool, int, float, str)):
            values[f"objective.{key}"] = value
    return values


def log_hparams(writer, cfg: dict, trained: dict) -> None:
    """One hparams entry for this run, in its own folder: the three hparams summaries
    go through ``writer.file_writer``; the metric values are the ``eval/*`` scalars."""
    metric_dict = {f"eval/{k}": v for k, v in trained.items() if v is not None and not isinstance(v, dict)}
    for summary in hparams(hparam_values(cfg), metric_dict):
        writer.file_writer.add_summary(summary)


def thumbnails(dataset, n: int) -> torch.Tensor | None:
    """(n, C, THUMBNAIL, THUMBNAIL) images in [0, 1] for 2D image data ((C, H, W) items, C in 1 or 3), else None."""
    shape = tuple(getattr(dataset, "input_shape", ()))
    if len(shape) != 3 or shape[0] not in (1, 3) or shape[1] < 8:
        return None
    images = torch.stack([dataset[i]["x"].float() for i in range(n)])
    images = F.interpolate(images, size=(THUMBNAIL, THUMBNAIL), mode="bilinear", align_corners=False)
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    high = images.amax(dim=(1, 2, 3), keepdim=True)
    return (images - low) / (high - low).clamp_min(1e-8)


def label_name(classes, y: torch.Tensor) -> str:
    """The class name of label ``y`` (a scalar), or for a multi-hot ``y`` (K,) its labels joined by '|'
    (NO_FINDING for none, as a manifest writes them); an index past ``classes`` is written as the number."""
    def name(i: int) -> str:
        return str(classes[i]) if i < len(classes) else str(i)
    if y.dim() == 0:
        return name(int(y))
    return SEPARATOR.join(name(i) for i in torch.nonzero(y > 0.5).flatten().tolist()) or NO_FINDING


def log_projector(writer, tag: str, test: dict, test_set, step: int) -> None:
    """The test embeddings in the projector, labelled by class name (and caption when there is one)."""
    if (Path(writer.get_logdir()) / f"{step:05d}" / tag).exists():
        return  # add_embedding would append a duplicate entry to projector_config.pbtxt
    labels = [label_name(test_set.classes, y) for y in test["label"]]
    captions = list(getattr(test_set, "captions", []) or [])
    if len(captions) == len(labels):
        metadata, header = [[c, t.replace("\t", " ").replace("\n", " ")] for c, t in zip(labels, captions)], ["class", "caption"]
    else:
        metadata, header = labels, None
    writer.add_embedding(test["embedding"], metadata=metadata, metadata_header=header,
                         label_img=thumbnails(test_set, len(labels)), global_step=step, tag=tag)


def log_audio(writer, test_set, step: int) -> None:
    """The first test clip of each of the first ``AUDIO_EXAMPLES`` classes."""
    seen = set()
    for i in range(len(test_set)):
        item = test_set[i]
        label = int(item["label"])
        if label in seen:
            continue
        seen.add(label)
        name = str(test_set.classes[label]).replace(" ", "_") if label < len(test_set.classes) else str(label)
        writer.add_audio(f"eval/audio/{name}", item["x"].float().reshape(1, -1).clamp(-1, 1), step,
                         sample_rate=test_set.sample_rate)
        if len(seen) == AUDIO_EXAMPLES:
            break


def log_similarity(writer, items: torch.Tensor, captions: torch.Tensor, step: int) -> None:
    n = min(SIM_ITEMS, len(items))
    sim = F.normalize(items[:n], dim=1) @ F.normalize(captions[:n], dim=1).T
    image = ((sim + 1) / 2).clamp(0, 1)
    scale = max(1, 256 // n)  # a readable size in the image tab
    image = image.repeat_interleave(scale, 0).repeat_interleave(scale, 1)
    writer.add_image("eval/similarity_matrix", image[None], step)
