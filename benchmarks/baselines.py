"""Classic baselines on the dev sets, on exactly the items the project's loaders give the encoders' probes.

    python benchmarks/baselines.py                      # every dev set, test split
    python benchmarks/baselines.py --sets ACSF1 --split val

Each baseline is fit on the loader's train split (train without the val it carves) and scored on
its test split (``--split val``: on the carved val split; ``--resample K``: on resample K of a series
set's train and test files, ``data.<loader>.resample``):

- audio: ``mfcc_logreg``: mean and standard deviation over time of 20 MFCCs (librosa defaults:
  2048-point FFT, hop 512) of the 16 kHz clips the loader yields (40 features), standardized, then a
  multinomial logistic regression (scikit-learn, L2, C = 1).
- series: ``dtw_1nn``: 1-nearest neighbour under DTW with a full window (aeon), on the unpadded
  series (unequal lengths as a list); ``minirocket``: MiniRocket (Dempster et al. 2021; aeon, 10,000
  features) + StandardScaler(with_mean=False) + RidgeClassifierCV(alphas=logspace(-3, 3, 10)), as the
  paper and aeon's MiniRocketClassifier; unequal series go in padded with zeros to the longest, as
  the loader pads them for the encoders (aeon's MiniRocket takes equal lengths only).
- glyphs (medical manifest): ``pixels_logreg``: the 64 x 64 pixels as 4096 features, standardized,
  multinomial logistic regression (C = 1).

Needs aeon (the .venv-bench of benchmarks/README.md) for the series baselines.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]


def loader_name(modality: str, path) -> str:
    """The dataset loader ``run.py --modality modality --data path`` would use (e.g. ``uea_ts``)."""
    from core import config
    import modalities  # noqa: F401  (registers the datasets)
    import objectives  # noqa: F401
    from training.build import resolve_dataset

    return resolve_dataset(config.load_config(modality, "ce", None, [f"data.path={str(path)!r}"]))


def load_splits(modality: str, path, split: str = "test", seed: int = 0, resample: int = 0) -> tuple:
    """(train, eval) datasets of ``path`` built by the project's loader for ``modality``, as ``run.py`` would.

    ``eval`` is the ``split`` ("test" or "val") dataset. Options come from the project's config
    (``data.<loader>`` of the modality's file); ``resample`` K >= 1 sets the loader's ``resample``.

    Raises:
        errors.UserError: no loader recognizes the path, the loader rejects the data, or ``resample``
            is asked of a loader without train and test files to redraw.
    """
    from core import config, errors
    import modalities  # noqa: F401  (registers the datasets)
    import objectives  # noqa: F401
    from core import registry
    from training.build import resolve_dataset

    cfg = config.load_config(modality, "ce", None, [f"data.path={str(path)!r}", f"seed={seed}"])
    name = resolve_dataset(cfg)
    options = dict(cfg["data"].get(name) or {})
    if resample:
        if "resample" not in options:
            raise errors.UserError(f"'{path}': resample {resample} needs a series loader with train and test files "
                                   f"(sequence_npz, ucr, uea_ts); its loader is {name}")
        options["resample"] = resample
    return tuple(registry.build("dataset", name, split=s, seed=seed, path=str(path), **options)
                 for s in ("train", split))


def _logreg(train_x: np.ndarray, train_y, test_x: np.ndarray, test_y, seed: int) -> float:
    """Test accuracy of standardized multinomial logistic regression fit on the train features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    return float((model.fit(train_x, train_y).predict(test_x) == test_y).mean())


def mfcc_features(dataset) -> np.ndarray:
    """(N, 40): per clip, the mean and the standard deviation over time of 20 MFCCs of ``dataset.waves``."""
    import librosa

    waves = dataset.waves[:, 0].numpy()
    mfcc = librosa.feature.mfcc(y=waves, sr=dataset.sample_rate, n_mfcc=20)  # (N, 20, frames)
    return np.concatenate([mfcc.mean(axis=2), mfcc.std(axis=2)], axis=1)


def mfcc_logreg(train, test, seed: int = 0) -> float:
    """Accuracy on ``test`` of MFCC statistics + logistic regression fit on ``train`` (audio datasets)."""
    return _logreg(mfcc_features(train), train.labels.numpy(), mfcc_features(test), test.labels.numpy(), seed)


def pixels_logreg(train, test, seed: int = 0) -> float:
    """Accuracy on ``test`` of logistic regression on raw pixels fit on ``train`` (image datasets)."""
    flat = lambda d: d.x.reshape(len(d.x), -1).numpy()  # noqa: E731
    return _logreg(flat(train), train.labels.numpy(), flat(test), test.labels.numpy(), seed)


def unpadded(dataset) -> list[np.ndarray]:
    """The series of a sequence dataset without padding: [(C, T_i) float64], T_i = real steps of ``mask``."""
    x, mask = dataset.x.numpy().astype(np.float64), dataset.mask.numpy()
    return [x[i][:, mask[i]] for i in range(len(x))]


def dtw_1nn(train, test, seed: int = 0) -> float:
    """Accuracy on ``test`` of 1-NN under full-window DTW with ``train`` as the reference set (aeon)."""
    from aeon.distances import dtw_pairwise_distance

    distances = dtw_pairwise_distance(unpadded(test), unpadded(train), n_jobs=os.cpu_count() or 1)
    predicted = train.labels.numpy()[distances.argmin(axis=1)]
    return float((predicted == test.labels.numpy()).mean())


def minirocket(train, test, seed: int = 0) -> float:
    """Accuracy on ``test`` of MiniRocket + RidgeClassifierCV fit on ``train`` (aeon, scikit-learn)."""
    from aeon.transformations.collection.convolution_based import MiniRocket
    from sklearn.linear_model import RidgeClassifierCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(MiniRocket(random_state=seed, n_jobs=os.cpu_count() or 1), StandardScaler(with_mean=False),
                          RidgeClassifierCV(alphas=np.logspace(-3, 3, 10)))
    x = lambda d: d.x.numpy().astype(np.float64)  # noqa: E731
    model.fit(x(train), train.labels.numpy())
    return float((model.predict(x(test)) == test.labels.numpy()).mean())


# benchmark set: (modality, dev set, its subfolder); the first five are the defaults of real_data.py
SETS = {
    "ItalyPowerDemand": ("sequence", "ItalyPowerDemand", "ucr"),
    "ACSF1": ("sequence", "ACSF1", "ucr"),
    "PickupGestureWiimoteZ": ("sequence", "PickupGestureWiimoteZ", "uea"),
    "gm_notes": ("audio", "gm_notes", ""),
    "noto_glyphs": ("medical", "noto_glyphs", ""),
    "ItalyPowerDemand-uea": ("sequence", "ItalyPowerDemand", "uea"),
    "ACSF1-uea": ("sequence", "ACSF1", "uea"),
    "PickupGestureWiimoteZ-ucr": ("sequence", "PickupGestureWiimoteZ", "ucr"),
}
DEFAULT_SETS = list(SETS)[:5]
SERIES_SETS = [k for k, (modality, _, _) in SETS.items() if modality == "sequence"]
BASELINES = {"audio": [mfcc_logreg], "sequence": [dtw_1nn, minirocket], "medical": [pixels_logreg]}


def run_baselines(modality: str, path, split: str = "test", seed: int = 0, resample: int = 0) -> list[dict]:
    """[{'name', 'acc', 'seconds', 'error'}] of every baseline of ``modality`` on ``path``.

    ``seconds`` is the baseline's own time (features, fit, predict), loading excluded; a baseline
    that raises gets ``acc`` None and its one-line ``error``; an empty ``split`` gives that as the error.
    """
    train, held_out = load_splits(modality, path, split, seed, resample)
    out = []
    for baseline in BASELINES[modality]:
        start, acc, error = time.perf_counter(), None, ""
        if len(held_out) == 0:
            error = f"the {split} split is empty"
        else:
            try:
                acc = baseline(train, held_out, seed)
            except Exception as err:  # a baseline's failure is reported in its cell, not raised
                error = f"{type(err).__name__}: {err}".splitlines()[0]
        out.append({"name": baseline.__name__, "acc": acc, "seconds": time.perf_counter() - start, "error": error})
    return out


def main(argv=None) -> int:
    import dev_sets

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="+", default=DEFAULT_SETS, choices=list(SETS),
                        help=f"benchmark sets (default {' '.join(DEFAULT_SETS)})")
    parser.add_argument("--split", choices=["test", "val"], default="test", help="split reported (default test)")
    parser.add_argument("--cache", type=Path, help="dev-set cache (default as benchmarks/dev_sets.py)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resample", type=int, default=0,
                        help="series sets: UCR/UEA resample K of train and test (default 0: the published split)")
    args = parser.parse_args(argv)
    cache = args.cache or dev_sets.default_cache()
    dev_sets.build(sorted({SETS[s][1] for s in args.sets}), cache)
    print(f"| set | baseline | {args.split} accuracy | seconds |\n| --- | --- | --- | --- |")
    for key in args.sets:
        modality, name, sub = SETS[key]
        for r in run_baselines(modality, cache / name / sub, args.split, args.seed, args.resample):
            acc = f"{r['acc']:.3f}" if r["acc"] is not None else r["error"]
            print(f"| {key} | {r['name']} | {acc} | {r['seconds']:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
