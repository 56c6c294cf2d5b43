"""Wall time of the whole evaluation (evaluation/protocols.py: every protocol, trained + floor) per cell.

    OMP_NUM_THREADS=1 python benchmarks/eval_time.py [--cells audio:supcon medical:convirt ...]

Evaluation time does not depend on how long the model trained, so each cell is
evaluated at its initialization (default config of the modality, built-in data).
Prints one row per cell: seconds embedding the train and test splits (trained and
floor encoders), seconds embedding captions and prompts (paired objectives), seconds
in everything else (linear probe, kNN, retrieval, zero-shot, alignment, uniformity,
effective rank, building the paired floor), seconds writing TensorBoard, and the total.
"""
from __future__ import annotations

import argparse
import functools
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import config as config_lib
import modalities  # noqa: F401
import objectives  # noqa: F401
from evaluation import protocols, tensorboard_extras
from training.build import build_datasets, build_model, initial_encoder

DEFAULT_CELLS = ["audio:cpc", "audio:clap", "medical:supcon", "medical:convirt", "sequence:supcon", "sequence:clap"]


def timed(fn):
    """Wrap ``fn`` so that its cumulative wall time is kept in ``wrapper.seconds``."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        began = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            wrapper.seconds += time.perf_counter() - began
    wrapper.seconds = 0.0
    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", nargs="*", default=DEFAULT_CELLS, metavar="MODALITY:OBJECTIVE")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. eval.batch_size=256")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}, overrides {args.overrides}")
    print("| cell | train / test items | embed s | text s | metrics s | TensorBoard s | total s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for cell in args.cells:
        modality, objective = cell.split(":")
        cfg = config_lib.load_config(modality, objective, overrides=args.overrides)
        datasets = build_datasets(cfg)
        model = build_model(cfg, datasets["train"])
        protocols.embed = embed = timed(protocols.embed)
        protocols.embed_texts = texts = timed(protocols.embed_texts)
        protocols.tensorboard_extras.log_all = logs = timed(tensorboard_extras.log_all)
        with tempfile.TemporaryDirectory() as folder:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(folder)
            began = time.perf_counter()
            protocols.evaluate_run(cfg, model, initial_encoder(cfg, datasets["train"]), datasets,
                                  torch.device("cpu"), writer, step=1)
            total = time.perf_counter() - began
            writer.close()
        rest = total - embed.seconds - texts.seconds - logs.seconds
        print(f"| {cell} | {len(datasets['train'])} / {len(datasets['test'])} | {embed.seconds:.1f} | "
              f"{texts.seconds:.1f} | {rest:.1f} | {logs.seconds:.1f} | {total:.1f} |", flush=True)
        protocols.embed, protocols.embed_texts = embed.__wrapped__, texts.__wrapped__
        protocols.tensorboard_extras.log_all = logs.__wrapped__


if __name__ == "__main__":
    main()
