"""What a run's embedding encodes of the built-in medical generator's attributes, against its floor.

    python benchmarks/attribute_probe.py RUN_DIR [RUN_DIR ...]

For each run of the built-in medical data (modalities/medical/synthetic.py ATTRIBUTES): ridge
regression (RidgeCV over 12 alphas) from the standardized train embeddings to each attribute,
R^2 on the val split (items without the attribute, e.g. no finding's size, left out), for the
trained encoder (checkpoints/last.pt) and the random-init encoder it started from. Nuisances
(tissue, lung_contrast, noise, gamma) rising while the finding's own attributes (size, side,
zone, intensity) fall means the objective learned the image around the finding.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import RidgeCV
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import modalities.medical  # noqa: E402,F401  (registers the built-in data)
import objectives  # noqa: E402,F401
from evaluation.protocols import embed  # noqa: E402
from training import checkpoint  # noqa: E402
from training.build import build_model_and_data, initial_encoder  # noqa: E402
from training.run_dir import load_trained_run_config  # noqa: E402

ATTRIBUTES = ("size_mm", "side", "zone", "intensity", "tissue", "lung_contrast", "noise", "gamma")


def r2_per_attribute(encoder, datasets, device) -> dict:
    encoder.eval()
    with torch.no_grad():
        train = embed(encoder, datasets["train"], 64, device)["embedding"].numpy()
        val = embed(encoder, datasets["val"], 64, device)["embedding"].numpy()
    scaler = StandardScaler().fit(train)
    train, val = scaler.transform(train), scaler.transform(val)
    out = {}
    for name in ATTRIBUTES:
        y_train, y_val = datasets["train"].attributes[name], datasets["val"].attributes[name]
        fit, score = np.isfinite(y_train), np.isfinite(y_val)
        ridge = RidgeCV(alphas=np.logspace(-2, 3, 12)).fit(train[fit], y_train[fit])
        out[name] = ridge.score(val[score], y_val[score])
    return out


def main(run_dirs) -> None:
    device = torch.device("cpu")
    print("| run | encoder | " + " | ".join(ATTRIBUTES) + " |")
    print("|" + " --- |" * (len(ATTRIBUTES) + 2))
    for run_dir in map(Path, run_dirs):
        cfg = load_trained_run_config(run_dir)
        datasets, model, _ = build_model_and_data(cfg, device)
        floor = initial_encoder(cfg, datasets["train"])
        model.load_state_dict(checkpoint.load(run_dir / "checkpoints" / "last.pt")["model"])
        for label, encoder in (("trained", model["encoders"]["x"]), ("floor", floor)):
            r2 = r2_per_attribute(encoder, datasets, device)
            print(f"| {run_dir.name} | {label} | " + " | ".join(f"{r2[a]:.2f}" for a in ATTRIBUTES) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
