"""The datasets ``run.py embed`` embeds: the run's own splits, or the files of ``--data PATH``.

``--data`` goes through the modality's loaders exactly as ``run.py --data`` does (the loader that
recognizes the path, its split and label rules, its errors naming the file and row, ``skip_bad``),
with the run's seed, and with the loader options that make the model's input (sample rate and clip
length, image size and channels, series length) set to the run's, so that new files become the
inputs the encoder was trained on.
"""
from __future__ import annotations

import copy
from pathlib import Path

from core import config as config_lib
from core.errors import UserError
from inference.load import LoadedRun
from inference.spec import loader_options
from training.build import build_datasets, resolve_dataset, takes

SPLITS = ("train", "val", "test")


def splits_of(choice: str) -> tuple[str, ...]:
    """('train', 'val', 'test') for 'all', else (choice,)."""
    return SPLITS if choice == "all" else (choice,)


def run_datasets(run: LoadedRun, splits) -> dict:
    """{split: dataset} of the run's own data (its config's ``data``), as training and evaluation built them."""
    return build_datasets(run.config, splits)


def data_config(run: LoadedRun, path, overrides=(), skip_bad: bool = False) -> dict:
    """The run's config pointed at ``path``: ``data.format`` auto (or as overridden), ``data.*``
    ``overrides`` applied, then the input options of the chosen loader set to the run's.

    Raises:
        UserError: an override outside ``data.*``, one that changes an input option, ``skip_bad``
            for a loader without it, or what ``resolve_dataset`` raises (no loader recognizes the path).
    """
    cfg = copy.deepcopy(run.config)
    cfg["data"]["path"], cfg["data"]["format"] = str(path), "auto"
    for text in overrides:
        if not text.split("=", 1)[0].strip().startswith("data."):
            raise UserError(f"override '{text}': run.py embed only takes data.* overrides (the model is the run's)")
    config_lib.apply_overrides(cfg, overrides)
    name = cfg["data"]["name"] = resolve_dataset(cfg)
    options = cfg["data"].setdefault(name, {})
    given = {o.split("=", 1)[0].strip() for o in overrides}
    for key, value in loader_options(run.spec, name).items():
        if f"data.{name}.{key}" in given and options.get(key) != value:
            raise UserError(f"data.{name}.{key}={options.get(key)!r}: the run's encoder takes inputs made with "
                            f"{key}={value!r} (its preprocess.json); leave this option out")
        options[key] = value
    if skip_bad:
        if not takes("dataset", name, "skip_bad"):
            raise UserError(f"--skip-bad: loader '{name}' has no skip_bad option (its files are read as a whole)")
        options["skip_bad"] = True
    return cfg


def data_datasets(run: LoadedRun, path, splits, overrides=(), skip_bad: bool = False) -> tuple[str, dict]:
    """(the loader's name, {split: dataset}) of the files at ``path`` (see ``data_config``).

    Raises:
        UserError: what ``data_config`` or the loader raises (naming the bad file and row), or data
            whose items have another shape than the run's inputs (another channel count).
    """
    cfg = data_config(run, Path(path), overrides, skip_bad)
    datasets = build_datasets(cfg, splits)
    shape = tuple(run.spec["input_shape"])
    for dataset in datasets.values():
        if tuple(dataset.input_shape) != shape:
            raise UserError(f"'{path}' gives items of shape {tuple(dataset.input_shape)} through loader "
                            f"'{cfg['data']['name']}', but the run's encoder takes {shape}")
    return cfg["data"]["name"], datasets
