"""``MODEL_CARD.md`` of a run directory, written from its config.yaml and results.json only.

After the model-card practice of Mitchell et al. 2019 ("Model Cards for Model Reporting"): what the
model is, what it was trained on and how, how it was evaluated, for which subgroups, and its limits.
Written at the end of training (``experiment.py``) and by ``run.py eval`` (which rewrites results.json),
never by hand. Sections: objective and paper (the header comment of
``configs/objectives/<objective>.yaml``), positive and negative construction
(``evaluation/card_pairs.py``), data (results.json's ``data``: loader, path, sha256, items per split
and class), encoder and parameters, budget, device and wall time, the evaluation protocol with every
metric beside its random-init floor, per-class (and, with a speaker or group column, per-group)
accuracy, and limits that follow from the config.

Numbers are printed at 3 decimals (``svm_c``, a choice from a grid, as ``%g``), parameter counts with
thousands separators, config values as ``key=value``.
"""
from __future__ import annotations

import math
from pathlib import Path

from core.config import CONFIG_DIR
from evaluation.card_pairs import PAIRED, negatives, options, positives

CARD = "MODEL_CARD.md"

# eval.floor_statistics in the card's words (evaluation/floor.py)
FLOOR_STATISTICS_WORDS = {"train": "BatchNorm layers, if any, given the train split's statistics",
                          "init": "BatchNorm layers, if any, with a fresh layer's placeholder statistics"}


def citation(objective: str) -> str:
    """The first comment line of ``configs/objectives/<objective>.yaml`` (the paper, in words); an
    objective registered without a config file (a user's, or a test's) gets a sentence saying so."""
    path = CONFIG_DIR / "objectives" / f"{objective}.yaml"
    if not path.is_file():
        return f"(registered without a configs/objectives/{objective}.yaml, so no paper is named)"
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
    return "(no description in its config file)"


def number(value, key: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:g}" if key == "svm_c" else f"{value:.3f}"


def data_section(results: dict) -> list[str]:
    d = results.get("data")
    if d is None:
        return ["No data summary in results.json (a run from before it was recorded): run `run.py eval` again."]
    where = (f"`{d['name']}`, the built-in synthetic data (generated from `seed={d['seed']}`)" if d["path"] is None
             else f"`{d['name']}` at `{d['path']}`")
    items = d["items"]
    per_class = ", ".join(f"{c} {'/'.join(map(str, n))}" for c, n in d["per_class"].items())
    return [f"- dataset: {where}",
            f"- sha256 of the {d['sha256_of']}: `{d['sha256']}`",
            f"- items: train {items['train']}, val {items['val']}, test {items['test']}; "
            f"{len(d['per_class'])} classes",
            f"- per class (train/val/test): {per_class}"]


def encoder_section(cfg: dict, results: dict) -> list[str]:
    lines = [f"- x encoder: `{cfg['model']['encoder']}`"
             + (f", {results['encoder_params']:,} parameters" if "encoder_params" in results else "")]
    if "text_encoder_params" in results:
        lines.append(f"- text encoder: `{cfg['model']['text']['encoder']}`, {results['text_encoder_params']:,} parameters")
    return lines


def budget_section(cfg: dict, results: dict) -> list[str]:
    world = results.get("world_size", 1)
    lines = [f"- {results['steps']} steps = {results['epochs']:.3f} epochs of {results['train_items']} train items; "
             f"batch {results['batch_size']} per process × {world} process{'es' if world > 1 else ''} "
             f"(`train.accumulate_steps={cfg['train']['accumulate_steps']}`)" if "epochs" in results
             else f"- {results['steps']} steps"]
    if "wall_time_s" in results:
        lines.append(f"- device: {results.get('device', 'not recorded')}; wall time {results['wall_time_s']:.1f} s "
                     f"(training and evaluation); final train loss {number(results.get('final_train_loss'))}")
    lines.append(f"- evaluation: {results['eval_time_s']:.1f} s")
    return lines


def protocol(cfg: dict, results: dict) -> str:
    split, objective = results["eval_split"], cfg["objective"]["name"]
    text = ("Frozen encoders in eval mode, the x encoder's `embedding`. A linear probe (standardized, "
            "multinomial logistic regression, AdamW), an RBF SVM (C by stratified cross-validation on train) and a "
            f"weighted kNN (train split as the bank) are fit on train and reported once on the {split} split "
            f"({results['eval_items']} items); alignment, uniformity and effective rank are of the {split} "
            "embeddings.")
    if objective in PAIRED:
        text += (" Retrieval (recall at k and median rank, both directions) and zero-shot accuracy are in the "
                 f"joint space, against the {split} split's own texts and one prompt per class.")
    text += (" The floor repeats every protocol with the random-init model the run started from (same seed; "
             f"{FLOOR_STATISTICS_WORDS[cfg['eval']['floor_statistics']]}). Settings: {options(cfg, 'eval')}.")
    return text


def metrics_table(results: dict) -> list[str]:
    m, f = results["metrics"], results["floor"]
    rows = ["| metric | trained | random-init floor |", "| --- | ---: | ---: |"]
    rows += [f"| `{k}` | {number(v, k)} | {number(f.get(k), k)} |" for k, v in m.items() if not isinstance(v, dict)]
    if results.get("chance_acc") is not None:
        rows += ["", f"Chance accuracy (1 / classes): {results['chance_acc']:.3f}."]
    return rows


def per_key_table(results: dict, key: str, what: str, counts: dict | None) -> list[str]:
    """Rows of a per-class, per-label or per-group metric: trained and floor, and the items per row."""
    m, f = results["metrics"][key], results["floor"].get(key, {})
    head = f"| {what} | {results['eval_split']} items | trained | floor |" if counts else f"| {what} | trained | floor |"
    rows = [head, "| --- | ---: | ---: | ---: |" if counts else "| --- | ---: | ---: |"]
    for name, value in m.items():
        n = f" {counts[name]} |" if counts else ""
        rows.append(f"| {name} |{n} {number(value)} | {number(f.get(name))} |")
    return rows


def group_gap(results: dict) -> list[str]:
    """The per-group table and the gap between the best and the worst group."""
    per_group = results["metrics"]["linear_probe_per_group_acc"]
    best, worst = max(per_group, key=per_group.get), min(per_group, key=per_group.get)
    return [*per_key_table(results, "linear_probe_per_group_acc", "group", None), "",
            f"Gap between the best and the worst group: {per_group[best] - per_group[worst]:.3f} "
            f"(best {best} {per_group[best]:.3f}, worst {worst} {per_group[worst]:.3f}; "
            f"{len(per_group)} groups in the {results['eval_split']} split)."]


def limits(cfg: dict, results: dict) -> list[str]:
    objective, m = cfg["objective"]["name"], results["metrics"]
    lines = [f"- One seed (`seed={cfg['seed']}`): no spread over seeds is measured, so small differences between "
             "runs may be noise."]
    if "labels_in_pretraining" in results:
        lines.append(f"- Labels {'were' if results['labels_in_pretraining'] else 'were not'} used in pre-training "
                     f"(`{objective}`); the probe, SVM and kNN use the train labels in any case.")
    if objective in PAIRED:
        lines.append("- Retrieval is scored against each item's own text only, and texts may be near-duplicates "
                     "(captions written from a few attributes, reports from templates): another item's text can be "
                     "as right as its own, so recall at k understates what the joint space knows.")
    if cfg["data"]["path"] is None:
        lines.append("- Built-in synthetic data: the numbers say how the objective does on generated signals, not "
                     "on real recordings, images or series.")
    n, p = results["eval_items"], m.get("linear_probe_acc")
    if p is not None:
        lines.append(f"- The {results['eval_split']} split has {n} items: the probe accuracy {p:.3f} has a binomial "
                     f"standard error sqrt(p(1 − p) / n) = {math.sqrt(p * (1 - p) / n):.3f}.")
    return lines


def model_card(cfg: dict, results: dict) -> str:
    """The card's Markdown from a run's config and results.json dicts."""
    objective, m = cfg["objective"]["name"], results["metrics"]
    counts = None
    if results.get("data") and "linear_probe_per_class_acc" in m:
        column = ("train", "val", "test").index(results["eval_split"])
        counts = {c: n[column] for c, n in results["data"]["per_class"].items()}
    sections = [
        [f"# Model card: {cfg['modality']} / {objective}", "",
         "Written by `run.py` from `config.yaml` and `results.json` at the end of training, and again by "
         "`run.py eval`; edits by hand are overwritten."],
        ["## Objective", "", f"`{objective}`: {citation(objective)}", "",
         f"Options: {options(cfg, 'objective') or 'none'}."],
        ["## Positive construction", "", positives(cfg)],
        ["## Negative construction", "", negatives(cfg, results)],
        ["## Data", "", *data_section(results)],
        ["## Encoder", "", *encoder_section(cfg, results)],
        ["## Budget", "", *budget_section(cfg, results)],
        ["## Evaluation", "", protocol(cfg, results), "", *metrics_table(results)],
    ]
    if "linear_probe_per_class_acc" in m:
        sections.append([f"### Per-class accuracy (linear probe, {results['eval_split']} split)", "",
                         *per_key_table(results, "linear_probe_per_class_acc", "class", counts)])
    if "linear_probe_per_label_auroc" in m:
        sections.append([f"### Per-label AUROC (linear probe, {results['eval_split']} split)", "",
                         *per_key_table(results, "linear_probe_per_label_auroc", "label", None)])
    if m.get("linear_probe_per_group_acc"):
        sections.append([f"### Per-group accuracy (linear probe, {results['eval_split']} split)", "",
                         *group_gap(results)])
    sections.append(["## Limits", "", *limits(cfg, results)])
    return "\n\n".join("\n".join(s) for s in sections) + "\n"


def write_model_card(run_dir: Path, cfg: dict, results: dict) -> Path:
    """Write ``RUN_DIR/MODEL_CARD.md``; returns its path."""
    path = Path(run_dir) / CARD
    path.write_text(model_card(cfg, results), encoding="utf-8")
    return path
