"""MODEL_CARD.md (evaluation/model_card.py): every number it prints is the value it claims to be.

Two tiny finished runs: audio CLAP on the built-in clips, and audio SupCon on a manifest of real
WAV files with a ``speaker`` column. ``check_card`` walks the card with one pattern per kind of
claim, checks each number against results.json, config.yaml or a computation written here, blanks
what it checked, and then requires that no digit is left: a number nobody checked fails the test.
Per-group accuracies are recomputed from the probe's test predictions grouped by the manifest's
speaker column read here; ``run.py eval`` must rewrite the card.
"""
import csv
import hashlib
import json
import math
import re

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from conftest import ROOT, run_cli

import modalities  # noqa: F401  (registers datasets and encoders)
import objectives  # noqa: F401  (registers objectives)
from evaluation.probe_report import fit
from evaluation.protocols import embed, frozen
from training.build import build_model_and_data
from training.run_dir import load_trained_run_config

COMMON = ["train.steps=3", "train.batch_size=8", "train.progress=false", "eval.probe_epochs=5"]
SPLIT_OF = {**{f"spk{i}": "train" for i in range(4)}, "spk4": "val", **{f"spk{i}": "test" for i in (5, 6, 7)}}


@pytest.fixture(scope="module")
def speaker_run(tmp_path_factory):
    """SupCon on 32 WAV files of 8 speakers (4 each: 2 low tones, 2 high), split by speaker:
    spk0-3 train, spk4 val, spk5-7 test."""
    root = tmp_path_factory.mktemp("speakers")
    rng = np.random.default_rng(0)
    t = np.arange(4000) / 16000
    rows = []
    for speaker in SPLIT_OF:
        for j in range(4):
            label = ("low", "high")[j % 2]
            hz = (220 if label == "low" else 1760) * rng.uniform(0.8, 1.25)
            name = f"{speaker}_{j}.wav"
            sf.write(root / name, 0.3 * np.sin(2 * np.pi * hz * t) + 0.05 * rng.standard_normal(len(t)), 16000)
            rows.append([name, label, speaker, SPLIT_OF[speaker]])
    with open(root / "manifest.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path", "label", "speaker", "split"], *rows])
    run_dir = root / "run"
    done = run_cli("--modality", "audio", "--objective", "supcon", "--data", root / "manifest.csv", "--run-dir",
                   run_dir, *COMMON, "data.audio_manifest.clip_samples=3200",
                   "model.cpc_wave.width=16", "model.cpc_wave.context_dim=16")
    assert done.returncode == 0, done.stderr[-2000:]
    return run_dir, {r[0]: r[2] for r in rows}


def setting(cfg: dict, dotted: str):
    value = cfg
    for part in dotted.split("."):
        value = value[part]
    return value


def same(text: str, value, key: str = "") -> bool:
    """``text`` is ``value`` at its printed precision (``%g``, 6 significant digits, for svm_c)."""
    if text == "—":
        return value is None
    if key == "svm_c":
        return math.isclose(float(text), value, rel_tol=5e-6)
    decimals = len(text.split(".")[1]) if "." in text else 0
    return abs(float(text) - value) <= 0.5 * 10 ** -decimals + 1e-12


class Card:
    """The card's text; ``claim`` finds a pattern, hands each match to a check and blanks it."""

    def __init__(self, text: str):
        self.rest, self.checked = text, 0

    def claim(self, pattern: str, check, flags=re.M, at_least: int = 1) -> int:
        matches = list(re.finditer(pattern, self.rest, flags))
        assert len(matches) >= at_least, f"no match for {pattern!r} in\n{self.rest}"
        for m in matches:
            check(*m.groups())
        self.rest = re.sub(pattern, "<checked>", self.rest, flags=flags)
        self.checked += len(matches)
        return len(matches)


def check_card(card_text: str, cfg: dict, results: dict, expected_ids_sha256: str | None = None,
               manifest=None) -> Card:
    card = Card(card_text)
    m, f, d = results["metrics"], results["floor"], results["data"]
    split = results["eval_split"]

    header = next(line for line in (ROOT / "configs" / "objectives" / f"{cfg['objective']['name']}.yaml")
                  .read_text().splitlines() if line.startswith("#")).lstrip("# ").strip()
    card.claim(r"^`(\w+)`: (.+)$", lambda o, text: (o == cfg["objective"]["name"] and text == header) or
               pytest.fail(f"citation {text!r} is not the header {header!r} of {o}.yaml"))

    b = cfg["train"]["batch_size"] * results["world_size"]
    card.claim(r"B = `train\.batch_size=(\d+)` × (\d+) process(?:es)? = (\d+) items",
               lambda size, world, items: [int(size), int(world), int(items)] == [cfg["train"]["batch_size"], 1, b]
               or pytest.fail("batch line"))
    if cfg["objective"]["name"] == "clap":
        card.claim(r"the other B − 1 = (\d+) texts of its batch, and for each text the other (\d+) items",
                   lambda a, c: int(a) == int(c) == b - 1 or pytest.fail("clap negatives"))
    else:
        v = setting(cfg, f"views.{cfg['views']['name']}.n_views")
        card.claim(r"V = (\d+) views", lambda n: int(n) == v or pytest.fail("V"))
        card.claim(r"V·B = (\d+) rows of the batch \(at most V·B − V = (\d+) per anchor\)",
                   lambda rows, per: [int(rows), int(per)] == [v * b, v * b - v] or pytest.fail("supcon negatives"))

    def sha(text):
        assert text == d["sha256"]
        if expected_ids_sha256 is not None:
            assert d["sha256_of"] == "sorted item ids" and text == expected_ids_sha256
        else:
            assert d["sha256_of"] == "manifest file" and text == hashlib.sha256(manifest.read_bytes()).hexdigest()
    card.claim(r"^- sha256 of the (?:sorted item ids|manifest file): `([0-9a-f]{64})`$", sha)
    card.claim(r"^- items: train (\d+), val (\d+), test (\d+); (\d+) classes$",
               lambda tr, va, te, k: [int(tr), int(va), int(te), int(k)] ==
               [*d["items"].values(), len(d["per_class"])] or pytest.fail("items"))

    def per_class_counts(text):
        found = dict(re.findall(r"([a-z ]+?) (\d+/\d+/\d+)(?:, |$)", text))
        assert {c: list(map(int, n.split("/"))) for c, n in found.items()} == d["per_class"]
        assert sum(n[0] for n in d["per_class"].values()) == results["train_items"]
    card.claim(r"^- per class \(train/val/test\): (.+)$", per_class_counts)
    if cfg["data"]["path"] is not None:
        card.claim(r"^- dataset: `\w+` at `([^`]+)`$", lambda p: p == cfg["data"]["path"] or pytest.fail("path"))

    card.claim(r"^- x encoder: `(\w+)`, ([\d,]+) parameters$",
               lambda name, n: (name, int(n.replace(",", ""))) == (cfg["model"]["encoder"], results["encoder_params"])
               or pytest.fail("encoder params"))
    if "text_encoder_params" in results:
        card.claim(r"^- text encoder: `\w+`, ([\d,]+) parameters$",
                   lambda n: int(n.replace(",", "")) == results["text_encoder_params"] or pytest.fail("text params"))

    def budget(steps, epochs, items, batch, world):
        assert [int(steps), int(items), int(batch), int(world)] == [results["steps"], results["train_items"],
                                                                    results["batch_size"], results["world_size"]]
        assert same(epochs, results["epochs"]) and same(epochs, results["steps"] * b / results["train_items"])
    card.claim(r"^- (\d+) steps = (\S+) epochs of (\d+) train items; batch (\d+) per process × (\d+) process", budget)
    card.claim(r"wall time (\S+) s \(training and evaluation\); final train loss (\S+)$",
               lambda w, loss: (same(w, results["wall_time_s"]) and same(loss, results["final_train_loss"]))
               or pytest.fail("wall time"))
    card.claim(r"^- evaluation: (\S+) s$", lambda s: same(s, results["eval_time_s"]) or pytest.fail("eval time"))
    card.claim(rf"reported once on the {split} split \((\d+) items\)",
               lambda n: int(n) == results["eval_items"] == sum(c[2] for c in d["per_class"].values())
               or pytest.fail("eval items"))

    scalars = [k for k, v in m.items() if not isinstance(v, dict)]
    rows = []
    card.claim(r"^\| `(\w+)` \| (\S+) \| (\S+) \|$", lambda k, a, c: rows.append(k) or
               (same(a, m[k], k) and same(c, f.get(k), k)) or pytest.fail(f"metric {k}: {a} {c}"))
    assert rows == scalars
    card.claim(r"Chance accuracy \(1 / classes\): (\S+)\.$",
               lambda c: same(c, 1 / len(d["per_class"])) or pytest.fail("chance"))

    classes = []
    card.claim(rf"^\| ([a-z][a-z ]*) \| (\d+) \| (\S+) \| (\S+) \|$", lambda c, n, a, fl: classes.append(c) or
               (int(n) == d["per_class"][c][2] and same(a, m["linear_probe_per_class_acc"][c])
                and same(fl, f["linear_probe_per_class_acc"][c])) or pytest.fail(f"class {c}"))
    assert classes == list(m["linear_probe_per_class_acc"])

    p, n = m["linear_probe_acc"], results["eval_items"]
    card.claim(rf"The {split} split has (\d+) items: the probe accuracy (\S+) has a binomial standard error "
               r"sqrt\(p\(1 − p\) / n\) = (\S+)\.$",
               lambda items, acc, se: (int(items) == n and same(acc, p) and same(se, math.sqrt(p * (1 - p) / n)))
               or pytest.fail("standard error"))

    def config_value(key, text):
        assert yaml.safe_load(text) == setting(cfg, key), key
    card.claim(r"`([a-z][a-z_0-9]*(?:\.[a-z][a-z_0-9]*)*)=([^`]*)`", config_value)
    return card


def read(run_dir):
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    return cfg, json.loads((run_dir / "results.json").read_text()), (run_dir / "MODEL_CARD.md").read_text()


def builtin_ids_sha256(results) -> str:
    ids = sorted(f"audio_builtin/{s}/{i}" for s, n in results["data"]["items"].items() for i in range(n))
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def test_every_number_of_a_builtin_clap_card_is_the_value_it_claims(clap_run):
    cfg, results, text = read(clap_run)
    assert results["data"]["items"] == {"train": 32, "val": 16, "test": 16}  # TINY: 4/2/2 clips of 8 classes
    card = check_card(text, cfg, results, builtin_ids_sha256(results))
    assert not re.findall(r"\d", card.rest), card.rest
    for section in ("## Objective", "## Positive construction", "## Negative construction", "## Data", "## Encoder",
                    "## Budget", "## Evaluation", "### Per-class accuracy", "## Limits"):
        assert section in text
    assert "Labels were not used in pre-training" in text and "near-duplicates" in text and "synthetic" in text
    assert "Per-group" not in text


def probe_predictions(run_dir) -> tuple[list, np.ndarray, np.ndarray]:
    """(test files, labels, the probe's predictions), computed from the checkpoint as the evaluation does."""
    cfg = load_trained_run_config(run_dir)
    datasets, model, _ = build_model_and_data(cfg, torch.device("cpu"))
    model.load_state_dict(torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"])
    with frozen(model["encoders"]["x"]):
        train = embed(model["encoders"]["x"], datasets["train"], 64, "cpu")
        test = embed(model["encoders"]["x"], datasets["test"], 64, "cpu")
    probe = fit(train, datasets["train"].classes, cfg["eval"], cfg["seed"])
    return datasets["test"].files, test["label"].numpy(), probe.predict(test["embedding"]).numpy()


def test_a_manifest_with_speakers_gives_per_group_accuracy_from_the_probes_predictions(speaker_run):
    run_dir, speaker_of = speaker_run
    cfg, results, text = read(run_dir)
    files, labels, predicted = probe_predictions(run_dir)
    speakers = np.array([speaker_of[f.name] for f in files])
    expected = {s: float((predicted == labels)[speakers == s].mean()) for s in ("spk5", "spk6", "spk7")}
    per_group = results["metrics"]["linear_probe_per_group_acc"]
    assert per_group == pytest.approx(expected, abs=1e-12) and list(per_group) == ["spk5", "spk6", "spk7"]
    # every test item has a speaker: the groups' accuracies weighted by their items are the accuracy
    sizes = {s: int((speakers == s).sum()) for s in expected}
    assert sum(per_group[s] * sizes[s] for s in sizes) / len(files) == pytest.approx(results["metrics"]["linear_probe_acc"])
    assert set(results["floor"]["linear_probe_per_group_acc"]) == set(expected)

    card = check_card(text, cfg, results, manifest=run_dir.parent / "manifest.csv")
    groups = []
    card.claim(r"^\| (spk\d) \| (\S+) \| (\S+) \|$", lambda g, a, fl: groups.append(g) or
               (same(a, per_group[g]) and same(fl, results["floor"]["linear_probe_per_group_acc"][g]))
               or pytest.fail(f"group {g}"))
    assert groups == ["spk5", "spk6", "spk7"]
    best, worst = max(expected, key=expected.get), min(expected, key=expected.get)

    def gap(value, b, b_acc, w, w_acc, n):
        assert same(value, expected[best] - expected[worst]) and int(n) == 3
        assert expected[b] == expected[best] and same(b_acc, expected[best])
        assert expected[w] == expected[worst] and same(w_acc, expected[worst])
    card.claim(r"^Gap between the best and the worst group: (\S+) \(best (spk\d) (\S+), worst (spk\d) (\S+); "
               r"(\d+) groups in the test split\)\.$", gap)
    assert not re.findall(r"\d", card.rest), card.rest
    assert "Labels were used in pre-training (`supcon`)" in text and "synthetic" not in text


def test_run_py_eval_rewrites_the_card(clap_run, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(clap_run, run_dir)
    (run_dir / "MODEL_CARD.md").write_text("edited by hand\n")
    done = run_cli("eval", run_dir, "eval.probe_epochs=7", "eval.knn_k=3")
    assert done.returncode == 0, done.stderr[-2000:]
    cfg, results, text = read(run_dir)
    cfg = load_trained_run_config(run_dir, ["eval.probe_epochs=7", "eval.knn_k=3"])
    assert "edited by hand" not in text and "`eval.probe_epochs=7`" in text and "`eval.knn_k=3`" in text
    card = check_card(text, cfg, results, builtin_ids_sha256(results))
    assert not re.findall(r"\d", card.rest), card.rest


def every_pair():
    from training.compatibility import capability_matrix

    return sorted((m, o) for (m, o), lacks in capability_matrix().items() if not lacks)


@pytest.mark.parametrize("modality,objective", every_pair())
def test_every_registered_pair_has_a_card_with_its_positives_and_negatives(modality, objective):
    from core.config import load_config
    from evaluation.card_pairs import NON_CONTRASTIVE
    from evaluation.model_card import model_card

    cfg = load_config(modality, objective, None, [])
    results = {"steps": 3, "eval_split": "test", "eval_items": 4, "eval_time_s": 0.5, "world_size": 2,
               "metrics": {"linear_probe_acc": 0.5}, "floor": {"linear_probe_acc": 0.25}}
    text = model_card(cfg, results)
    positives = text.split("## Positive construction\n\n")[1].split("\n")[0]
    negatives = text.split("## Negative construction\n\n")[1].split("\n")[0]
    b = cfg["train"]["batch_size"] * 2
    if objective in NON_CONTRASTIVE:
        assert negatives.startswith("None")
    elif objective not in ("ce", "moco"):
        assert f"B = `train.batch_size={cfg['train']['batch_size']}` × 2 processes = {b} items" in negatives
    if "views" in registry_needs(objective):
        assert f"V = {cfg['views'][cfg['views']['name']]['n_views']} views" in positives
    assert "| `linear_probe_acc` | 0.500 | 0.250 |" in text


def registry_needs(objective):
    from core import registry

    return registry.get("objective", objective).capabilities
