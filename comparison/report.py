"""The comparison's report: ``comparison.md``, ``comparison.csv`` and ``comparison.png``.

Headline metric: ``linear_probe_acc``, the one held-out metric every objective has (the RBF SVM,
``svm_acc``, is shown beside it, the protocol T-Loss and TS2Vec report; kNN needs no training either
but is reported only where evaluation computes it; retrieval and zero-shot exist only for
objectives with text). Numbers are on the split the cells' evaluation reported on
(``eval_split`` of results.json: test, or val); a table mixing splits gets a split column.
Each pair shows the mean +- sample standard deviation (n - 1) over its finished seeds, beside
the floor (the same encoder at its random initialization, same protocol, same seeds) and chance.
A pair "beats its floor" when its mean headline metric is above its mean floor. The best
objective of each modality (highest mean headline metric) is marked.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

HEADLINE = "linear_probe_acc"
EXTRA = ("svm_acc", "knn_acc", "retrieval_r1_x2t")  # shown in comparison.md when present; the CSV has every metric
LABELS = {"linear_probe_acc": "linear probe", "svm_acc": "SVM", "knn_acc": "kNN", "retrieval_r1_x2t": "R@1 x->text"}


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """(mean, sample std) of ``values``, None and NaN left out; std is None for fewer than two,
    both None for none."""
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return None, None
    mean = math.fsum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def summarize(pair) -> dict:
    """One row per pair: metric and floor mean/std over finished seeds, status, failures."""
    done = [c.results for c in pair.cells if c.results is not None]
    failed = [c for c in pair.cells if c.results is None]
    row = {"modality": pair.modality, "objective": pair.objective, "seeds_done": len(done),
           "seeds_failed": len(failed), "chance": done[0]["chance_acc"] if done else None, "metrics": {},
           "eval_split": "/".join(dict.fromkeys(r.get("eval_split", "test") for r in done))}
    keys = dict.fromkeys(k for r in done for k, v in r["metrics"].items() if isinstance(v, (int, float)))
    for key in sorted(keys, key=lambda k: (k != HEADLINE, k)):
        row["metrics"][key] = (mean_std([r["metrics"][key] for r in done if key in r["metrics"]]),
                               mean_std([r["floor"][key] for r in done if key in r.get("floor", {})]))
    row["wall_time_s"] = mean_std([r["wall_time_s"] for r in done])[0]
    row["failures"] = "; ".join(f"seed {c.seed}: {c.failure} (log: {c.run_dir / 'log.txt'})" for c in failed)
    if pair.impossible:
        row["status"] = f"impossible: {pair.impossible}"
    elif not done:
        row["status"] = "failed"
    elif HEADLINE not in row["metrics"]:
        row["status"] = f"no {HEADLINE} (multi-label data)"
    else:
        (mean, _), (floor, _) = row["metrics"][HEADLINE]
        row["status"] = "beats floor" if floor is None or mean > floor else "DOES NOT BEAT FLOOR"
        if failed:
            row["status"] += f", {len(failed)} of {len(pair.cells)} seeds failed"
    row["beats_floor"] = row["status"].startswith("beats")
    return row


def mark_best(rows: list[dict]) -> None:
    """Set row["best"] for the highest mean headline metric of each modality (ties: all)."""
    for row in rows:
        row["best"] = False
    for modality in dict.fromkeys(r["modality"] for r in rows):
        scored = [r for r in rows if r["modality"] == modality and HEADLINE in r["metrics"]]
        top = max((r["metrics"][HEADLINE][0][0] for r in scored), default=None)
        for r in scored:
            r["best"] = r["metrics"][HEADLINE][0][0] == top


def fmt(stat: tuple[float | None, float | None]) -> str:
    mean, std = stat
    if mean is None:
        return "-"
    return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"


def splits(rows: list[dict]) -> list[str]:
    """The evaluation splits the finished cells of ``rows`` reported on, in order of appearance."""
    return list(dict.fromkeys(s for r in rows if r["eval_split"] for s in r["eval_split"].split("/")))


def markdown(rows: list[dict], command: str) -> str:
    shown = [HEADLINE, *(k for k in EXTRA if any(k in r["metrics"] for r in rows))]
    reported = splits(rows) or ["test"]
    mixed = len(reported) > 1
    head = ["modality", "objective", *(["split"] if mixed else [])]
    for key in shown:
        head += [LABELS[key], "floor"]
    head += ["chance", "seeds", "time (s)", "status"]
    split = "accuracy on the split in the split column" if mixed else f"{reported[0]} accuracy"
    lines = ["# Objectives compared across modalities", "",
             f"Made by `{command}`.", "",
             (f"Headline metric: {LABELS[HEADLINE]} {split} (`{HEADLINE}`), the held-out metric every "
             "objective has; SVM is an RBF-kernel SVM with C chosen by cross-validation on train "
             "(`svm_acc`, the protocol of T-Loss and TS2Vec). Values are mean ± sample std over seeds; "
             "floor is the same encoder at its random initialization under the same protocol; **bold** "
             "marks the best objective of each modality; time is the mean wall time of a cell (training "
             "and evaluation)."), "",
             "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        cells = [r["modality"], r["objective"], *([r["eval_split"] or "-"] if mixed else [])]
        for key in shown:
            metric, floor = r["metrics"].get(key, ((None, None), (None, None)))
            value = fmt(metric)
            cells += [f"**{value}**" if key == HEADLINE and r["best"] else value, fmt(floor)]
        chance = "-" if r["chance"] is None else f"{r['chance']:.3f}"
        wall = "-" if r["wall_time_s"] is None else f"{r['wall_time_s']:.0f}"
        seeds = "-" if r["status"].startswith("impossible") else f"{r['seeds_done']}/{r['seeds_done'] + r['seeds_failed']}"
        status = r["status"] + (" (see below)" if r["failures"] else "")
        cells += [chance, seeds, wall, status]
        lines.append("| " + " | ".join(cells) + " |")
    below = [f"{r['modality']}/{r['objective']}" for r in rows if r["status"].startswith("DOES NOT")]
    lines += ["", "Below the floor: " + (", ".join(below) if below else "none; every finished pair beats its floor.")]
    failures = [f"- {r['modality']}/{r['objective']}: {r['failures']}" for r in rows if r["failures"]]
    if failures:
        lines += ["", "Failed cells:", "", *failures]
    return "\n".join(lines) + "\n"


def write_csv(path: Path, rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r["metrics"]))
    fields = ["modality", "objective", "status", "best", "beats_floor", "seeds_done", "seeds_failed", "chance",
              "eval_split"]
    for key in keys:
        fields += [f"{key}_mean", f"{key}_std", f"floor_{key}_mean", f"floor_{key}_std"]
    fields += ["wall_time_s", "failures"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for r in rows:
            out = {k: r[k] for k in fields if k in r}
            for key, ((mean, std), (fmean, fstd)) in r["metrics"].items():
                out.update({f"{key}_mean": mean, f"{key}_std": std, f"floor_{key}_mean": fmean,
                            f"floor_{key}_std": fstd})
            writer.writerow({k: "" if v is None else v for k, v in out.items()})


def write_report(out: Path, pairs, command: str) -> list[Path]:
    """Write comparison.md, comparison.csv and comparison.png into ``out``; returns their paths."""
    from comparison.figure import draw_heatmap

    rows = [summarize(pair) for pair in pairs]
    mark_best(rows)
    paths = [out / "comparison.md", out / "comparison.csv", out / "comparison.png"]
    paths[0].write_text(markdown(rows, command))
    write_csv(paths[1], rows)
    draw_heatmap(paths[2], rows, HEADLINE, f"{LABELS[HEADLINE]} ({', '.join(splits(rows)) or 'test'})")
    return paths
