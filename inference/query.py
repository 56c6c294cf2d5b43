"""Text-to-signal search in a paired run's joint space: the items nearest a sentence.

Paired objectives (CLAP, Elizalde et al. 2022 after CLIP, Radford et al. 2021; ConVIRT, Zhang et
al. 2020; SigLIP, Zhai et al. 2023) train a text encoder and two heads into one joint space, the
space of the evaluation's text->signal retrieval. A query is one sentence through the run's
tokenizer, text encoder and text head: t (P,); each item's joint embedding z_i (P,) comes from
``inference.embed`` (the arrays ``run.py embed`` writes). Items are ranked by cosine similarity
cos(t, z_i) = t . z_i / (|t| |z_i|), highest first, ties by the item's position.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from core import registry
from core.errors import UserError


class Hit(NamedTuple):
    """One row of a query's answer."""

    rank: int            # 1 = most similar
    id: str              # the item's id (its file, or <dataset>/<split>/<index>)
    split: str           # the split it is in
    label: str | None    # its class name, None when the data is unlabelled
    score: float         # cosine similarity to the query, in [-1, 1]


def text_objectives() -> list[str]:
    """The registered objectives that need ``text``: those with a text encoder and a joint space."""
    return [n for n in registry.names("objective") if "text" in registry.get("objective", n).capabilities]


def check_has_text(objective: str) -> None:
    """Raises UserError naming ``objective`` and the objectives that can be queried, unless it needs text."""
    known = text_objectives()
    if objective not in known:
        raise UserError(f"objective '{objective}' has no text encoder, so its run cannot be queried with a sentence; "
                        f"objectives with text: {', '.join(known)}")


def cosine_scores(query: np.ndarray, joint: np.ndarray) -> np.ndarray:
    """Cosine similarity (N,) float64 of one query vector (P,) to each row of ``joint`` (N, P).
    A zero vector scores 0 (its norm is clamped at 1e-12)."""
    q = np.asarray(query, dtype=np.float64)
    z = np.asarray(joint, dtype=np.float64)
    q = q / max(np.linalg.norm(q), 1e-12)
    z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    return z @ q


def top_k(query: np.ndarray, arrays: dict, k: int) -> list[Hit]:
    """The ``k`` items of ``arrays`` (``inference.embed.embed_datasets``: ``joint``, ``id``, ``split``
    and, when labelled, ``label`` and ``classes``) nearest ``query`` (P,), most similar first.

    Raises:
        UserError: ``k`` below 1, or ``arrays`` has no joint space (not a paired run's).
    """
    if k < 1:
        raise UserError(f"--k must be at least 1, got {k}")
    if "joint" not in arrays:
        raise UserError("these embeddings have no joint space (only paired runs' do: "
                        f"{', '.join(text_objectives())})")
    scores = cosine_scores(query, arrays["joint"])
    order = np.argsort(-scores, kind="stable")[:k]
    classes = arrays.get("classes")
    labels = arrays.get("label")
    return [Hit(rank + 1, str(arrays["id"][i]), str(arrays["split"][i]),
                None if labels is None else str(classes[int(labels[i])]), float(scores[i]))
            for rank, i in enumerate(order)]


def query_run(run, text: str, arrays: dict, k: int = 10) -> list[Hit]:
    """The ``k`` items of ``arrays`` nearest ``text`` in ``run``'s joint space (``run``: a
    ``LoadedRun``; ``arrays``: its ``embed_datasets`` of the items to search).

    Raises:
        UserError: the run's objective has no text side, an empty sentence, or what ``top_k`` raises.
    """
    check_has_text(run.config["objective"]["name"])
    if not text.strip():
        raise UserError("the query is empty: give a sentence, e.g. \"a rising chirp over heavy noise\"")
    query = run.embed_text([text])[0].numpy()
    return top_k(query, arrays, k)
