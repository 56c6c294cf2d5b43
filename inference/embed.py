"""A split's embeddings and what each item is, as the arrays of ``run.py embed``'s ``.npz``.

Arrays, one row per item, splits in the order given:

- ``embedding`` (N, D) float32: the x encoder's ``embedding`` (what every evaluation protocol but
  retrieval uses);
- ``joint`` (N, P) float32, paired objectives only: the joint (text-aligned) space of the
  evaluation's retrieval and zero-shot (``objective.project_x`` of the embedding);
- ``id`` (N,) str: the item's file for file loaders, else ``<dataset>/<split>/<index>``;
- ``row`` (N,) int64, when the loader knows it: the 1-based manifest row (or n-th series of its
  file), -1 where there is none;
- ``split`` (N,) str and ``index`` (N,) int64: the item's split and its index there;
- ``label`` (N,) int64 and ``classes`` (K,) str, when the data is labelled: ``classes[label]`` is
  the item's class name.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from core.errors import UserError
from inference.load import LoadedRun
from inference.progress import ItemProgress
from training.data import eval_loader

UNLABELLED = ["unlabelled"]  # the one class of the loaders' data without labels


def item_ids(dataset, split: str, name: str) -> tuple[list[str], list[int] | None]:
    """(id of every item, its 1-based file row or None when the loader keeps no rows)."""
    files, rows = getattr(dataset, "files", None), getattr(dataset, "rows", None)
    ids = [str(f) for f in files] if files is not None else [f"{name}/{split}/{i}" for i in range(len(dataset))]
    if rows is None or all(r is None for r in rows):
        return ids, None
    return ids, [-1 if r is None else int(r) for r in rows]


def embed_split(run: LoadedRun, dataset, split: str, name: str, batch_size: int, progress: bool = True) -> dict:
    """The arrays of the module docstring for one split, in the dataset's order (as the evaluation's
    ``embed``: the loader's batches of ``batch_size``, encoders in eval mode)."""
    out: dict[str, list] = {"embedding": [], "joint": [], "label": []}
    bar = ItemProgress(split, len(dataset), progress)
    done = 0
    for batch in eval_loader(dataset, batch_size):
        embedded = run.embed_batch({k: batch[k] for k in ("x", "mask") if k in batch})
        for key, value in embedded.items():
            out[key].append(value)
        out["label"].append(batch["label"])
        done += len(batch["label"])
        bar.update(done)
    arrays = {k: torch.cat(v).numpy() for k, v in out.items() if v}
    ids, rows = item_ids(dataset, split, name)
    arrays.update(id=np.array(ids, dtype=str), split=np.array([split] * len(ids), dtype=str),
                  index=np.arange(len(ids), dtype=np.int64))
    if rows is not None:
        arrays["row"] = np.array(rows, dtype=np.int64)
    return arrays


def embed_datasets(run: LoadedRun, datasets: dict, name: str, batch_size: int, progress: bool = True) -> dict:
    """The splits of ``datasets`` ({split: dataset}) embedded and concatenated in order, with
    ``classes`` (and ``label``) when the data is labelled. Empty splits are left out.

    Raises:
        UserError: every split is empty.
    """
    parts = [embed_split(run, d, s, name, batch_size, progress) for s, d in datasets.items() if len(d)]
    if not parts:
        raise UserError(f"the {', '.join(datasets)} split(s) of '{name}' hold no items to embed")
    keys = [k for k in parts[0] if all(k in p for p in parts)]
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in keys}
    classes = list(next(iter(datasets.values())).classes)
    if classes == UNLABELLED:
        arrays.pop("label")
    else:
        arrays["classes"] = np.array(classes, dtype=str)
    return arrays


def write_npz(arrays: dict, out: Path) -> Path:
    """``arrays`` as one .npz (no pickled objects: strings are fixed-width unicode arrays); returns
    the file written (``out``, with ``.npz`` appended when it has another suffix, as NumPy does)."""
    out = Path(out)
    out = out if out.suffix == ".npz" else out.with_name(out.name + ".npz")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **arrays)
    return out
