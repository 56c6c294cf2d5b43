"""A run's batch size and number of steps, fitted to the size of its train split.

Both are settled once the datasets are built and before ``config.yaml`` is
written, so the saved config holds what the run really used.
"""
from __future__ import annotations

import math

from core.errors import UserError
from core.notes import say_once


def fit_budget(train_config: dict, n_train: int, world_size: int = 1, item_size: int = 1) -> None:
    """Set ``batch_size`` and ``steps`` of ``train_config`` (cfg["train"], changed in place) for ``n_train`` items
    of ``item_size`` values each (the product of the input shape).

    - A train split smaller than one global batch (``batch_size x world_size``)
      trains with the whole split as its batch: ``batch_size`` becomes
      ``n_train // world_size``, and one line says so.
    - ``epochs`` (when set) gives ``steps = ceil(epochs x n_train / global batch)``,
      the global batch counting ``accumulate_steps`` micro-batches.
    - ``steps_by_size`` [V, S, L] (when set) gives ``steps = S`` for a train split of at most V
      values (``n_train x item_size``), L otherwise (TS2Vec's reference code: 200 iterations up to
      100,000 values, 600 beyond), and one line says which.

    Raises:
        UserError: fewer than 2 train items per process, none of steps, epochs and steps_by_size set,
            a budget <= 0, or a steps_by_size that is not three positive integers.
    """
    tc = train_config
    if n_train < tc["batch_size"] * world_size:
        per_process = n_train // world_size
        if per_process < 2:
            raise UserError(f"the train split has {n_train} items: fewer than 2 per process "
                            f"({world_size} processes); add data or use fewer processes")
        say_once(f"the train split has {n_train} items, fewer than one batch of {tc['batch_size']}"
                 f"{f' x {world_size} processes' if world_size > 1 else ''}: training on the whole split as one "
                 f"batch (train.batch_size={per_process}, recorded in config.yaml)")
        tc["batch_size"] = per_process
    if tc["epochs"] is not None:
        if tc["epochs"] <= 0:
            raise UserError(f"train.epochs must be positive, got {tc['epochs']}")
        global_batch = tc["batch_size"] * world_size * tc["accumulate_steps"]
        tc["steps"] = math.ceil(tc["epochs"] * n_train / global_batch)
    elif tc.get("steps_by_size") is not None:
        rule = tc["steps_by_size"]
        if len(rule) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in rule):
            raise UserError(f"train.steps_by_size must be three positive integers [values, steps up to them, "
                            f"steps beyond], got {rule!r}")
        values = n_train * item_size
        tc["steps"] = rule[1] if values <= rule[0] else rule[2]
        say_once(f"train.steps_by_size: the train split holds {values} values ({n_train} items x {item_size}), "
                 f"{'at most' if values <= rule[0] else 'more than'} {rule[0]}: {tc['steps']} steps")
    elif tc["steps"] is None or tc["steps"] <= 0:
        raise UserError(f"train.steps must be a positive number (or set train.epochs), got {tc['steps']}")


def epochs_done(train_config: dict, step: int, n_train: int, world_size: int = 1) -> float:
    """Passes over the train split after ``step`` steps (samples seen / train items)."""
    return step * train_config["batch_size"] * world_size * train_config["accumulate_steps"] / n_train
