"""The label-fraction results of a comparison: which keys there are, and their table in comparison.md.

Cells evaluated with ``eval.label_fractions`` report ``linear_probe_acc@<f>%`` (and, with
``eval.finetune``, ``finetune_acc@<f>%``) for the model and its floor (``evaluation.label_subsets``).
"""
from __future__ import annotations

METRICS = {"linear_probe_acc": "linear probe", "finetune_acc": "fine-tuning"}


def fraction_keys(rows: list[dict], metric: str) -> list[tuple[float, str]]:
    """[(fraction in (0, 1], results.json key)] of ``metric`` that any row has, by ascending fraction;
    e.g. [(0.01, 'linear_probe_acc@1%'), (0.1, 'linear_probe_acc@10%')]."""
    keys = dict.fromkeys(k for r in rows for k in r["metrics"] if k.startswith(f"{metric}@") and k.endswith("%"))
    return sorted((float(k[len(metric) + 1:-1]) / 100, k) for k in keys)


def fraction_lines(rows: list[dict], fmt) -> list[str]:
    """comparison.md lines: one table per metric of METRICS with label fractions (none: []), one
    row per pair that has them; each cell is ``fmt(mean stat)`` and its floor's."""
    lines = []
    for metric, label in METRICS.items():
        keys = fraction_keys(rows, metric)
        if not keys:
            continue
        head = ["modality", "objective", *(x for _, key in keys for x in (key.split("@")[1], "floor"))]
        lines += ["", f"{label.capitalize()} with a fraction of the train labels (`{metric}@<f>%`): the same "
                      "protocol fit on a stratified, seeded subset that keeps each class's share, at least one item "
                      "per class (`eval.label_fractions`); same intervals as above.", "",
                  "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        for r in rows:
            if not any(k in r["metrics"] for _, k in keys):
                continue
            cells = [r["modality"], r["objective"]]
            for _, key in keys:
                if key in r["metrics"]:
                    cells += [fmt(stat) for stat in r["metrics"][key]]
                else:
                    cells += ["-", "-"]
            lines.append("| " + " | ".join(cells) + " |")
    return lines
