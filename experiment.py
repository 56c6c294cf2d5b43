"""One training run from a validated config: build, train, evaluate, write results.json and MODEL_CARD.md.

The run directory's layout is in ``training/run_dir.py``.

Under torchrun (training/distributed.py) every rank builds the same model from
the same seed (rank 0's weights are broadcast anyway) and trains on its block
of each global batch of ``train.batch_size * world_size``; only rank 0 writes
the run directory and evaluates (the whole test split, nothing duplicated)
after the process group is closed, while the other ranks return None.
"""
from __future__ import annotations

import time
from pathlib import Path

from evaluation.model_card import write_model_card
from evaluation.online import OnlineValidation
from evaluation.protocols import check_protocol, evaluate_run
from core.process_group import is_main, world_size
from training import checkpoint
from training import distributed as dist
from training.build import build_training, initial_encoder, pick_device
from training.data_summary import print_data_summary
from training.loop import train
from training.run_dir import identity, model_facts, open_run_dir, write_results
from training.weight_average import WeightAverage


def run_experiment(cfg: dict, run_dir: Path, resume: bool = False) -> dict | None:
    """Train (or continue) the run in ``run_dir`` and evaluate it; returns results.json's dict,
    or {"stopped_at_step", "steps"} when ``train.stop_after_steps`` ended the session early.
    Under torchrun, ranks other than 0 return None.

    Raises:
        UserError: a bad setting or data (before the run directory is written where it can be
            known then), a damaged checkpoint to resume from.
    """
    device = dist.setup(pick_device(cfg["device"]))
    try:
        return _run(cfg, Path(dist.broadcast_object(str(run_dir))), resume, device)
    finally:
        dist.teardown()


def _run(cfg: dict, run_dir: Path, resume: bool, device) -> dict | None:
    began = time.time()
    main, world = is_main(), world_size()
    check_protocol(cfg)  # an eval error before minutes of training
    datasets, model, views, optimizer, scheduler, speed, online = build_training(cfg, device)
    print_data_summary(cfg, datasets, world)
    # train.average_weights: the average starts with the initial weights as its first member
    average = WeightAverage(model["encoders"]) if cfg["train"]["average_weights"] else None

    start_step, counters = 0, {}
    if resume:
        state = checkpoint.load(run_dir / "checkpoints" / "last.pt")
        start_step = checkpoint.restore(state, model, optimizer, scheduler, online, average)
        counters = state.get("counters", {})
    writer = open_run_dir(cfg, model, run_dir, start_step) if main else None

    watch = OnlineValidation(cfg, datasets, device) if cfg["train"]["online_eval"] and main else None
    stats = train(cfg, model, views, datasets, optimizer, scheduler, writer, run_dir, device, speed, start_step,
                  counters, online=online, online_validation=watch, average=average)
    dist.teardown()  # the rest is rank 0 alone: no collective (a loss's gather) can wait on a finished rank
    if not main:
        return None
    steps = cfg["train"]["steps"]
    if stats["step"] < steps:
        writer.close()
        return {"stopped_at_step": stats["step"], "steps": steps}

    evaluation = evaluate_run(cfg, model, initial_encoder(cfg, datasets["train"]).to(device), datasets, device,
                              writer, step=steps)
    writer.close()
    results = {**identity(cfg, datasets, steps, world), **model_facts(model), "device": str(device),
               "resumed_from_step": start_step, "wall_time_s": round(time.time() - began, 2),
               "samples_per_s": round(stats["samples_per_s"], 2), "final_train_loss": stats["final_loss"],
               **evaluation}
    write_results(run_dir, results)
    write_model_card(run_dir, cfg, results)
    return results
