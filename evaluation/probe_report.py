"""Everything the linear probe reports: accuracy and the metrics beyond it, or per-label AUROC.

Single-label data (labels (N,) long), keys of results.json's ``metrics`` and ``floor``:

- ``linear_probe_acc``: accuracy;
- ``linear_probe_balanced_acc``: mean per-class recall;
- ``linear_probe_macro_f1``: unweighted mean F1;
- ``linear_probe_auroc``: one-vs-rest macro AUROC of the probe's softmax probabilities;
- ``linear_probe_per_class_acc``: {class name: accuracy on its items};
- ``linear_probe_per_group_acc``: {group: accuracy on its items}, when the data has a group
  column (``speaker`` or ``group`` of a manifest; ``item_groups``).
- ``linear_probe_acc@<f>%`` for each fraction f of ``eval.label_fractions`` (``fraction_probes``):
  accuracy of the same probe fit on the stratified subset of the train labels that f keeps
  (``evaluation.label_subsets``), with that subset's own standardization.

Multi-label data (multi-hot labels (N, K)), one logistic output per label:

- ``linear_probe_macro_auroc``: mean over labels of each label's AUROC;
- ``linear_probe_per_label_auroc``: {label name: AUROC of its sigmoid output}.

Averages run over the classes (labels) the reported split holds (``evaluation.classification``).
A class or label the AUROC cannot score there (no item has it, or every item does) is left out
of the average, and one line on stderr names it; with none scorable the AUROC key is left out.
"""
from __future__ import annotations

import torch

from core.notes import say_once
from evaluation import classification
from evaluation.label_subsets import fraction_key, stratified_subset
from evaluation.linear_probe import LinearProbe, fit_linear_probe


def fit(train: dict, classes, ev: dict, seed: int) -> LinearProbe:
    """The probe fit on ``train`` ({"embedding": (N, D), "label": (N,) or (N, K)}) with ``eval.probe_*``."""
    labels = train["label"]
    n_outputs = labels.shape[1] if labels.dim() == 2 else max(len(classes), int(labels.max()) + 1)
    return fit_linear_probe(train["embedding"], labels, n_outputs, ev["probe_epochs"], ev["probe_lr"],
                            ev["probe_weight_decay"], seed)


def note_skipped(key: str, skipped: list, scored: int, split: str, kind: str) -> None:
    if skipped:
        say_once(f"{key}: {kind} {', '.join(skipped)} cannot be scored on the {split} split (no item has "
                 f"{'it' if len(skipped) == 1 else 'them'}, or every item does); "
                 + (f"the macro AUROC is over the other {scored}" if scored else f"{key} is left out"))


def single_label(probe: LinearProbe, reported: dict, classes, split: str) -> tuple[dict, torch.Tensor]:
    """(the single-label keys above, predictions (N,) long) on ``reported``."""
    y = reported["label"]
    predicted = probe.predict(reported["embedding"])
    auroc, _, skipped = classification.one_vs_rest_auroc(y, probe.probabilities(reported["embedding"]), classes)
    note_skipped("linear_probe_auroc", skipped, len(y.unique()) - len(skipped), split, "class(es)")
    return {"linear_probe_acc": (predicted == y).float().mean().item(),
            "linear_probe_balanced_acc": classification.balanced_accuracy(y, predicted),
            "linear_probe_macro_f1": classification.macro_f1(y, predicted),
            "linear_probe_auroc": auroc,
            "linear_probe_per_class_acc": classification.per_class_accuracy(y, predicted, classes)}, predicted


def multi_label(probe: LinearProbe, reported: dict, classes, split: str) -> dict:
    """The multi-label keys above on ``reported`` (labels (N, K))."""
    scores = probe.label_probabilities(reported["embedding"])
    macro, per_label, skipped = classification.per_label_auroc(reported["label"], scores, classes)
    note_skipped("linear_probe_macro_auroc", skipped, len(per_label), split, "label(s)")
    return {"linear_probe_macro_auroc": macro, "linear_probe_per_label_auroc": per_label}


def item_groups(dataset) -> list | None:
    """Each item's group (``groups``, or an audio manifest's ``speakers``; None entries: no group),
    or None when the dataset has no group column."""
    groups = getattr(dataset, "groups", None)
    return groups if groups is not None else getattr(dataset, "speakers", None)


def per_group(reported: dict, predicted: torch.Tensor, groups) -> dict:
    """``linear_probe_per_group_acc`` of the single-label predictions (N,), or {} without groups."""
    if groups is None or not any(g is not None for g in groups):
        return {}
    return {"linear_probe_per_group_acc": classification.per_group_accuracy(reported["label"], predicted, groups)}
def fraction_probes(train: dict, reported: dict, classes, ev: dict, seed: int) -> dict:
    """{``linear_probe_acc@<f>%``: accuracy on ``reported``} for each fraction f of
    ``eval.label_fractions`` ({} when null), each probe fit on ``stratified_subset(train labels, f,
    seed)`` only (single-label ``train`` and ``reported`` as in ``probe_report``)."""
    out = {}
    for fraction in ev["label_fractions"] or ():
        rows = stratified_subset(train["label"], fraction, seed)
        probe = fit({"embedding": train["embedding"][rows], "label": train["label"][rows]}, classes, ev, seed)
        predicted = probe.predict(reported["embedding"])
        out[fraction_key("linear_probe_acc", fraction)] = (predicted == reported["label"]).float().mean().item()
    return out


def probe_report(train: dict, reported: dict, classes, ev: dict, seed: int) -> tuple[dict, torch.Tensor | None]:
    """Fit the probe on ``train`` and report on ``reported`` (the split ``eval.split`` names).

    Args:
        train, reported: {"embedding": (N, D) float, "label": (N,) long or multi-hot (N, K)}.
        classes: class (label) names, indexed by label.
        ev: the config's ``eval`` section; seed: seeds the probe's initialization.

    Returns:
        (metrics as in the module docstring (an undefined AUROC as NaN), the probe's predictions
        (N,) long on ``reported``, or None for multi-label data).
    """
    probe = fit(train, classes, ev, seed)
    if reported["label"].dim() == 2:
        return multi_label(probe, reported, classes, ev["split"]), None
    return single_label(probe, reported, classes, ev["split"])
