"""Issue 14's test of a dev set: does the best label-free objective reach the classic baselines?

Series and audio sets: the best label-free objective (no labels in pre-training), scored by the
better of its linear probe and SVM, must reach the classic baseline (1-NN DTW for series, MFCC
statistics + logistic regression for audio) and, on series, come within ``MINIROCKET_GAP`` of
MiniRocket. The image-text set: every paired objective's retrieval R@1 in both directions must
be at least ``RETRIEVAL_TIMES`` chance (1 / items of the reported split) and its zero-shot
accuracy ``ZERO_SHOT_TIMES`` chance (1 / classes).
"""
from __future__ import annotations

LABEL_FREE = ("simclr", "moco", "byol", "simsiam", "barlow_twins", "dino", "vicreg", "dcl", "cpc", "ts2vec",
              "simcse")
PAIRED = ("clap", "convirt", "siglip")
CLASSIC = {"sequence": "dtw_1nn", "audio": "mfcc_logreg"}
MINIROCKET_GAP = 0.05
RETRIEVAL_TIMES, ZERO_SHOT_TIMES = 10.0, 2.0


def score(results: dict) -> float:
    """The better of a run's linear probe and SVM accuracy (a missing one counts as 0)."""
    m = results["metrics"]
    return max(m.get("linear_probe_acc") or 0.0, m.get("svm_acc") or 0.0)


def baseline_acc(baselines: list[dict], name: str) -> float | None:
    return next((b["acc"] for b in baselines if b["name"] == name), None)


def label_free_verdict(set_key: str, modality: str, runs: dict, baselines: list[dict]) -> tuple[str, bool]:
    """(summary line, passed) of a series or audio set; ``runs`` maps objective -> results.json dict."""
    finished = {o: r for o, r in runs.items() if o in LABEL_FREE and r is not None}
    classic_name = CLASSIC[modality]
    classic = baseline_acc(baselines, classic_name)
    if not finished or classic is None:
        missing = "no label-free run finished" if not finished else f"baseline {classic_name} missing"
        return f"{set_key}: FAIL ({missing})", False
    best = max(finished, key=lambda o: score(finished[o]))
    m, top = finished[best]["metrics"], score(finished[best])
    line = (f"{set_key}: best label-free {best} probe {m.get('linear_probe_acc', 0):.3f} SVM "
            f"{m.get('svm_acc') or 0:.3f} vs {classic_name} {classic:.3f} ({top - classic:+.3f})")
    passed = top >= classic
    if modality == "sequence":
        rocket = baseline_acc(baselines, "minirocket")
        if rocket is None:
            return line + ", minirocket missing: FAIL", False
        line += f", minirocket {rocket:.3f} ({top - rocket:+.3f}, needs >= -{MINIROCKET_GAP})"
        passed = passed and top >= rocket - MINIROCKET_GAP
    return f"{line}: {'PASS' if passed else 'FAIL'}", passed


def paired_verdict(set_key: str, runs: dict) -> tuple[str, bool]:
    """(summary line, passed) of the image-text set: every finished paired run must clear both bars."""
    finished = {o: r for o, r in runs.items() if o in PAIRED and r is not None}
    if not finished:
        return f"{set_key}: FAIL (no paired run finished)", False
    parts, passed = [], True
    for objective, r in sorted(finished.items()):
        m = r["metrics"]
        if "eval_items" not in r:  # results.json written before the key existed
            parts.append(f"{objective} has no eval_items in its results.json (run it again)")
            passed = False
            continue
        r1_bar, zs_bar = RETRIEVAL_TIMES / r["eval_items"], ZERO_SHOT_TIMES * r["chance_acc"]
        ok = min(m["retrieval_r1_x2t"], m["retrieval_r1_t2x"]) >= r1_bar and m["zero_shot_acc"] >= zs_bar
        passed = passed and ok
        parts.append(f"{objective} R@1 {m['retrieval_r1_x2t']:.3f}/{m['retrieval_r1_t2x']:.3f} "
                     f"(needs {r1_bar:.3f}), zero-shot {m['zero_shot_acc']:.3f} (needs {zs_bar:.3f})")
    return f"{set_key}: {'; '.join(parts)}: {'PASS' if passed else 'FAIL'}", passed


def set_verdict(set_key: str, modality: str, runs: dict, baselines: list[dict]) -> tuple[str, bool]:
    """The summary line and pass/fail of one dev set (medical sets are the image-text ones)."""
    if modality == "medical":
        return paired_verdict(set_key, runs)
    return label_free_verdict(set_key, modality, runs, baselines)
