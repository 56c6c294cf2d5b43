"""The comparison's report: ``comparison.md``, ``comparison.csv``, ``comparison.png`` and, when the
cells report label fractions (``eval.label_fractions``), ``comparison_fractions.png``.

Headline metric: ``linear_probe_acc``, the one held-out metric every objective has (the RBF SVM,
``svm_acc``, is shown beside it, the protocol T-Loss and TS2Vec report; kNN needs no training either
but is reported only where evaluation computes it; retrieval and zero-shot exist only for
objectives with text). Numbers are on the split the cells' evaluation reported on
(``eval_split`` of results.json: test, or val); a table mixing splits gets a split column.
Each pair shows the mean over its finished seeds and, with two or more, the 95% t interval of
that mean (``comparison.stats``), beside the floor (the same encoder at its random
initialization, same protocol, same seeds) and chance. A pair "beats its floor" when its mean
headline metric is above its mean floor. The best objective of each modality (highest mean
headline metric) is marked, and marked "within noise" when its interval overlaps the
runner-up's (the next highest mean of that modality).
"""
from __future__ import annotations

import csv
from pathlib import Path

from comparison.fractions import fraction_lines
from comparison.stats import Stat, overlap, summarize_values

HEADLINE = "linear_probe_acc"
# Shown in comparison.md when present; the CSV has every metric.
EXTRA = ("svm_acc", "knn_acc", "finetune_acc", "retrieval_r1_x2t")
LABELS = {"linear_probe_acc": "linear probe", "svm_acc": "SVM", "knn_acc": "kNN", "finetune_acc": "fine-tune",
          "retrieval_r1_x2t": "R@1 x->text"}


def summarize(pair) -> dict:
    """One row per pair: metric and floor mean/std over finished seeds, status, failures."""
    done = [c.results for c in pair.cells if c.results is not None]
    failed = [c for c in pair.cells if c.results is None]
    row = {"modality": pair.modality, "objective": pair.objective, "seeds_done": len(done),
           "seeds_failed": len(failed), "chance": done[0]["chance_acc"] if done else None, "metrics": {},
           "eval_split": "/".join(dict.fromkeys(r.get("eval_split", "test") for r in done))}
    keys = dict.fromkeys(k for r in done for k, v in r["metrics"].items() if isinstance(v, (int, float)))
    for key in sorted(keys, key=lambda k: (k != HEADLINE, k)):
        row["metrics"][key] = (summarize_values([r["metrics"][key] for r in done if key in r["metrics"]]),
                               summarize_values([r["floor"][key] for r in done if key in r.get("floor", {})]))
    row["wall_time_s"] = summarize_values([r["wall_time_s"] for r in done]).mean
    row["budget"] = "; ".join(dict.fromkeys(budget(r) for r in done if "steps" in r))
    row["failures"] = "; ".join(f"seed {c.seed}: {c.failure} (log: {c.run_dir / 'log.txt'})" for c in failed)
    if pair.impossible:
        row["status"] = f"impossible: {pair.impossible}"
    elif not done:
        row["status"] = "failed"
    elif HEADLINE not in row["metrics"]:
        row["status"] = f"no {HEADLINE} (multi-label data)"
    else:
        mean, floor = (stat.mean for stat in row["metrics"][HEADLINE])
        row["status"] = "beats floor" if floor is None or mean > floor else "DOES NOT BEAT FLOOR"
        if failed:
            row["status"] += f", {len(failed)} of {len(pair.cells)} seeds failed"
    row["beats_floor"] = row["status"].startswith("beats")
    return row


def budget(results: dict) -> str:
    """'300 steps, 9.4 epochs' of one cell's results.json (its steps and passes over the train split)."""
    epochs = results.get("epochs")
    return f"{results['steps']} steps" + ("" if epochs is None else f", {epochs:.3g} epochs")


def headline(row: dict) -> Stat:
    return row["metrics"][HEADLINE][0]


def mark_best(rows: list[dict]) -> None:
    """Set row["best"] for the highest mean headline metric of each modality (ties: all), and
    row["within_noise"] to the runner-up's objective when a best row's 95% interval overlaps the
    interval of the runner-up (the highest mean among the modality's other rows), else ''."""
    for row in rows:
        row["best"], row["within_noise"] = False, ""
    for modality in dict.fromkeys(r["modality"] for r in rows):
        scored = [r for r in rows if r["modality"] == modality and HEADLINE in r["metrics"]]
        top = max((headline(r).mean for r in scored), default=None)
        for r in scored:
            r["best"] = headline(r).mean == top
        for r in (r for r in scored if r["best"]):
            others = [o for o in scored if o is not r]
            if others:
                runner_up = max(others, key=lambda o: headline(o).mean)
                if overlap(headline(r), headline(runner_up)):
                    r["within_noise"] = runner_up["objective"]


def fmt(stat: Stat) -> str:
    """'0.812' for one seed, '0.812 [0.790, 0.834]' (mean [95% interval]) for two or more, '-' for none."""
    if stat.mean is None:
        return "-"
    return f"{stat.mean:.3f}" if stat.low is None else f"{stat.mean:.3f} [{stat.low:.3f}, {stat.high:.3f}]"


def splits(rows: list[dict]) -> list[str]:
    """The evaluation splits the finished cells of ``rows`` reported on, in order of appearance."""
    return list(dict.fromkeys(s for r in rows if r["eval_split"] for s in r["eval_split"].split("/")))


def best_line(rows: list[dict]) -> str:
    """One sentence per modality: its best objective and whether the runner-up is within noise."""
    parts = []
    for modality in dict.fromkeys(r["modality"] for r in rows):
        scored = [r for r in rows if r["modality"] == modality and HEADLINE in r["metrics"]]
        best = [r for r in scored if r["best"]]
        if len(scored) < 2 or not best:
            continue
        for r in best:
            others = [o for o in scored if o is not r]
            runner_up = max(others, key=lambda o: headline(o).mean)
            if r["within_noise"]:
                verdict = f"within noise of {runner_up['objective']} (the 95% intervals overlap)"
            elif headline(r).low is None or headline(runner_up).low is None:
                verdict = f"ahead of {runner_up['objective']}; noise unknown (an interval needs 2 or more seeds)"
            else:
                verdict = f"ahead of {runner_up['objective']} beyond noise (the 95% intervals do not overlap)"
            parts.append(f"{modality}: {r['objective']}, {verdict}")
    return "Best objective per modality: " + ("; ".join(parts) if parts else "no modality has two finished pairs") + "."


def markdown(rows: list[dict], command: str) -> str:
    shown = [HEADLINE, *(k for k in EXTRA if any(k in r["metrics"] for r in rows))]
    reported = splits(rows) or ["test"]
    mixed = len(reported) > 1
    head = ["modality", "objective", *(["split"] if mixed else [])]
    for key in shown:
        head += [LABELS[key], "floor"]
    head += ["chance", "seeds", "budget", "time (s)", "status"]
    split = "accuracy on the split in the split column" if mixed else f"{reported[0]} accuracy"
    lines = ["# Objectives compared across modalities", "",
             f"Made by `{command}`.", "",
             (f"Headline metric: {LABELS[HEADLINE]} {split} (`{HEADLINE}`), the held-out metric every "
             "objective has; SVM is an RBF-kernel SVM with C chosen by cross-validation on train "
             "(`svm_acc`, the protocol of T-Loss and TS2Vec). Values are the mean over seeds and, with two "
             "or more seeds, its 95% confidence interval [low, high] (Student's t over seeds: mean ± "
             "t(0.975, n-1) s / sqrt(n)); floor is the same encoder at its random initialization under the "
             "same protocol; **bold** marks the best objective of each modality, ≈ when it is within noise "
             "(its interval overlaps the runner-up's); budget is each cell's training steps and passes over "
             "the train split; time is the mean wall time of a cell (training and evaluation)."), "",
             "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    empty = (Stat(None, None, None, None, 0),) * 2
    for r in rows:
        cells = [r["modality"], r["objective"], *([r["eval_split"] or "-"] if mixed else [])]
        for key in shown:
            metric, floor = r["metrics"].get(key, empty)
            value = fmt(metric)
            if key == HEADLINE and r["best"]:
                value = f"**{value}**" + (" ≈" if r["within_noise"] else "")
            cells += [value, fmt(floor)]
        chance = "-" if r["chance"] is None else f"{r['chance']:.3f}"
        wall = "-" if r["wall_time_s"] is None else f"{r['wall_time_s']:.0f}"
        seeds = "-" if r["status"].startswith("impossible") else f"{r['seeds_done']}/{r['seeds_done'] + r['seeds_failed']}"
        status = r["status"] + (" (see below)" if r["failures"] else "")
        cells += [chance, seeds, r["budget"] or "-", wall, status]
        lines.append("| " + " | ".join(cells) + " |")
    below = [f"{r['modality']}/{r['objective']}" for r in rows if r["status"].startswith("DOES NOT")]
    lines += ["", "Below the floor: " + (", ".join(below) if below else "none; every finished pair beats its floor."),
              "", best_line(rows)]
    lines += fraction_lines(rows, fmt)
    failures = [f"- {r['modality']}/{r['objective']}: {r['failures']}" for r in rows if r["failures"]]
    if failures:
        lines += ["", "Failed cells:", "", *failures]
    return "\n".join(lines) + "\n"


def write_csv(path: Path, rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r["metrics"]))
    fields = ["modality", "objective", "status", "best", "within_noise", "beats_floor", "seeds_done", "seeds_failed",
              "chance", "eval_split", "budget"]
    for key in keys:
        fields += [f"{prefix}{key}_{part}" for prefix in ("", "floor_") for part in ("mean", "std", "ci_low", "ci_high")]
    fields += ["wall_time_s", "failures"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for r in rows:
            out = {k: r[k] for k in fields if k in r}
            for key, stats in r["metrics"].items():
                for prefix, stat in zip(("", "floor_"), stats):
                    out.update({f"{prefix}{key}_mean": stat.mean, f"{prefix}{key}_std": stat.std,
                                f"{prefix}{key}_ci_low": stat.low, f"{prefix}{key}_ci_high": stat.high})
            writer.writerow({k: "" if v is None else v for k, v in out.items()})


def write_report(out: Path, pairs, command: str) -> list[Path]:
    """Write comparison.md, comparison.csv, comparison.png and, when the cells report label
    fractions, comparison_fractions.png into ``out``; returns their paths."""
    from comparison.figure import draw_heatmap
    from comparison.fraction_figure import draw_fractions

    rows = [summarize(pair) for pair in pairs]
    mark_best(rows)
    paths = [out / "comparison.md", out / "comparison.csv", out / "comparison.png"]
    paths[0].write_text(markdown(rows, command))
    write_csv(paths[1], rows)
    label = ", ".join(splits(rows)) or "test"
    draw_heatmap(paths[2], rows, HEADLINE, f"{LABELS[HEADLINE]} ({label})")
    figure = out / "comparison_fractions.png"
    if draw_fractions(figure, rows, label):
        paths.append(figure)
    else:
        figure.unlink(missing_ok=True)  # left by an earlier call with label fractions
    return paths
