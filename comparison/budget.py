"""``run.py compare --budget KIND=VALUE``: every cell trained for the same steps, epochs or samples.

Without ``--budget`` a cell trains what its settings say (``train.steps``, by default 300, or the
budgets file's entry for it). With it, every cell gets ``train.steps`` worked out from its own
batch and its modality's train split (one process, as compare runs its cells):

- ``steps=N``: N steps for every cell;
- ``epochs=E``: ``ceil(E x n_train / global batch)`` steps, E passes over the train split;
- ``samples=S``: ``ceil(S / global batch)`` steps, at least S training samples seen.

global batch = b x ``train.accumulate_steps``, with b = ``train.batch_size``, or n_train when the
train split is smaller than one batch (the run then trains on the whole split as one batch,
``training/budget.py``). The epochs formula is the one ``train.epochs`` uses. Samples count
items drawn per step, not views: a two-view objective encodes 2 x b inputs per step.
"""
from __future__ import annotations

import copy
import math
from typing import NamedTuple

from core.errors import UserError
from training.build import build_datasets

KINDS = ("steps", "epochs", "samples")


class Budget(NamedTuple):
    """``--budget KIND=VALUE``: KIND in KINDS, VALUE > 0 (an integer for steps and samples)."""
    kind: str
    value: float

    def __str__(self) -> str:
        return f"{self.kind}={self.value:g}"


def parse_budget(text: str) -> Budget:
    """'epochs=5' -> Budget('epochs', 5.0).

    Raises:
        UserError: not KIND=VALUE with KIND steps, epochs or samples, or VALUE not a positive number
            (a whole number for steps and samples).
    """
    kind, equals, raw = text.partition("=")
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    whole = kind in ("steps", "samples")
    if not equals or kind not in KINDS or not value > 0 or not math.isfinite(value) or (whole and value != int(value)):
        raise UserError(f"--budget '{text}': expected steps=N, epochs=E or samples=S with a positive number "
                        f"(whole for steps and samples), e.g. --budget epochs=5 or --budget samples=9600")
    return Budget(kind, value)


def budget_steps(budget: Budget, batch_size: int, accumulate_steps: int, n_train: int) -> int:
    """``train.steps`` of a cell under ``budget`` (module docstring), for a train split of ``n_train``
    items and the cell's ``train.batch_size`` and ``train.accumulate_steps``.

    Raises:
        UserError: a train split of fewer than 2 items (no batch can be drawn from it).
    """
    if n_train < 2:
        raise UserError(f"--budget {budget}: the train split has {n_train} items, fewer than 2")
    global_batch = min(batch_size, n_train) * accumulate_steps
    if budget.kind == "steps":
        return int(budget.value)
    if budget.kind == "epochs":
        return math.ceil(budget.value * n_train / global_batch)
    return math.ceil(budget.value / global_batch)


def check_budget_overrides(budget: Budget | None, overrides: list[str]) -> None:
    """Raises UserError when ``--budget`` comes with a train.steps or train.epochs override (scoped or not)."""
    if budget is None:
        return
    for text in overrides:
        key = text.split("=", 1)[0].rsplit(":", 1)[-1].strip()
        if key in ("train.steps", "train.epochs"):
            raise UserError(f"--budget {budget} sets train.steps of every cell; drop the override '{text}' "
                            f"(or drop --budget)")


def train_size(cfg: dict, sizes: dict) -> int:
    """Items in the train split of ``cfg``'s data (built once per data settings and seed, cached in ``sizes``)."""
    key = (cfg["modality"], repr(cfg["data"]), cfg["seed"])
    if key not in sizes:
        sizes[key] = len(build_datasets(cfg, ("train",))["train"])
    return sizes[key]


def with_budget(cfg: dict, budget: Budget, sizes: dict) -> tuple[dict, str]:
    """(``cfg`` with ``train.steps`` from ``budget`` and ``train.epochs`` cleared, a note of the numbers)."""
    tc, n_train = cfg["train"], train_size(cfg, sizes)
    steps = budget_steps(budget, tc["batch_size"], tc["accumulate_steps"], n_train)
    out = copy.deepcopy(cfg)
    out["train"].update(steps=steps, epochs=None)
    batch = min(tc["batch_size"], n_train) * tc["accumulate_steps"]
    return out, f"{steps} steps of {batch} ({n_train} train items)"
