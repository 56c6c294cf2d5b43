"""Frozen-encoder evaluation: one embedding pass per split and encoder, then every protocol.

Every protocol is fit on the train split and reports on the split ``eval.split`` names
(``test``, or ``val`` for choosing recipes without looking at test; "reported split" below).
Protocols (all fixed in advance; nothing is chosen by looking at the reported split):

- ``linear_probe_*``: standardize with train statistics, fit a multinomial
  logistic regression on train only (full batch, AdamW, ``eval.probe_epochs``
  epochs at ``eval.probe_lr``, weight decay ``eval.probe_weight_decay``, seeded
  by ``seed``), report accuracy, balanced accuracy, macro F1, one-vs-rest AUROC and
  per-class accuracy once on the reported split (and per-group accuracy when the data has a
  speaker or group column); multi-label data: one logistic output
  per label, macro and per-label AUROC (``evaluation.probe_report``).
- ``svm_acc``, ``svm_c``: RBF-kernel SVM on standardized embeddings, C from ``eval.svm_c_grid``
  by ``eval.svm_folds``-fold stratified cross-validation on train (shuffled with ``seed``),
  refit on train, scored once (``evaluation.svm``; T-Loss and TS2Vec's protocol); ``svm_c`` is the
  chosen C. Left out when train has one class.
- ``linear_probe_acc@<f>%`` per fraction f of ``eval.label_fractions`` (null: none): the probe fit on
  a stratified, seeded subset of the train labels (``evaluation.label_subsets``), scored once.
- ``finetune_acc`` (and ``finetune_acc@<f>%``) with ``eval.finetune``: a copy of the x encoder and a
  linear head trained end to end on the train labels with a fixed schedule, scored once
  (``evaluation.finetune``); the floor's is supervised training from scratch.
- ``knn_acc``: weighted kNN (``metrics.knn_predict``), train split as the bank,
  the reported split as queries, k = ``eval.knn_k``, votes exp(cos / ``eval.knn_temperature``).
- ``alignment``, ``uniformity``, ``effective_rank`` on the reported split's embeddings
  (positives for alignment = same-class pairs, for every objective alike; multi-label:
  pairs with the same set of labels).
- paired objectives only, in the joint space the objective trained
  (``PairedObjective.embed_x`` / ``embed_text``) on the reported split:
  ``retrieval_r{1,5,10}_{x2t,t2x}``, ``retrieval_medr_{x2t,t2x}`` and
  ``zero_shot_acc`` (prompts ``eval.zero_shot_template`` filled with each class name; with
  ``eval.zero_shot_templates``, a prompt ensemble: ``metrics.ensemble_class_texts``).

Multi-label data (multi-hot labels, ``modalities/multi_label.py``) has no SVM, kNN, zero-shot,
label-fraction or fine-tuning accuracy, which score (or stratify by) one label per item; one line
on stderr says so.

The metrics above use the encoder's ``embedding`` output (what a downstream
user would take), except retrieval and zero-shot. ``floor`` repeats every
protocol with the random-init model the run started from, its BatchNorm layers given the
statistics of the train split first (``eval.floor_statistics``, ``evaluation.floor``).
"""
from __future__ import annotations

import contextlib
import copy
import math
import time

import torch
from torch import nn

from core.errors import UserError
from core.notes import say_once
from evaluation import metrics, svm, tensorboard_extras
from evaluation.finetune import check_schedule, finetune_report
from evaluation.floor import FLOOR_STATISTICS, set_batch_norm_statistics
from evaluation.label_subsets import check_fractions
from evaluation.probe_report import fraction_probes, item_groups, per_group, probe_report
from objectives.paired import PairedObjective
from objectives.parts import encode_batch
from training.build import build_model
from training.data import eval_loader, to_device


def is_paired(encoders, objective) -> bool:
    """True when retrieval and zero-shot apply: a paired objective with its text encoder."""
    return isinstance(objective, PairedObjective) and "text" in encoders


@contextlib.contextmanager
def frozen(*modules):
    """Eval mode (no dropout, BatchNorm running statistics) for ``modules``, restored on exit."""
    modules = [m for m in modules if m is not None]
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)


@torch.no_grad()
def embed(encoder, dataset, batch_size: int, device, objective=None) -> dict:
    """One in-order pass over a split with ``encoder`` (call it inside ``frozen``).

    Returns:
        {"embedding": (N, D) float32 CPU, "label": (N,) long} and, when ``objective`` is a
        ``PairedObjective``, "joint": (N, P) its ``embed_x`` of the same batches.
    """
    out: dict[str, list] = {"embedding": [], "label": [], "joint": []}
    for batch in eval_loader(dataset, batch_size):
        batch = to_device(batch, device)
        embedding = encode_batch(encoder, batch)["embedding"]
        out["embedding"].append(embedding.float().cpu())
        out["label"].append(batch["label"].cpu())
        if objective is not None:
            joint = objective.project_x(embedding)
            out["joint"].append(joint.float().cpu())
    return {k: torch.cat(v) for k, v in out.items() if v}


@torch.no_grad()
def embed_texts(objective, encoders, texts: list[str], batch_size: int) -> torch.Tensor:
    """Joint-space embeddings (M, P) float32 CPU of M strings (``objective.embed_text``; inside ``frozen``)."""
    return torch.cat([objective.embed_text(encoders, texts[i:i + batch_size]).float().cpu()
                      for i in range(0, len(texts), batch_size)])


def prompts(classes, template: str, key: str = "eval.zero_shot_template") -> list[str]:
    """Zero-shot prompts: ``template`` with '{}' replaced by each readable class name ('dog_bark' -> 'dog bark').

    Raises:
        UserError: the template (from config key ``key``) is not a string with '{}'.
    """
    if not isinstance(template, str) or "{}" not in template:
        raise UserError(f"{key} '{template}' must be a string containing '{{}}' where the class name goes")
    return [template.replace("{}", str(name).replace("_", " ").strip()) for name in classes]


def zero_shot_templates(ev: dict) -> tuple[list[str], str]:
    """(templates, their config key): ``eval.zero_shot_templates`` when it is not empty, else the one
    ``eval.zero_shot_template``."""
    if ev["zero_shot_templates"]:
        return list(ev["zero_shot_templates"]), "eval.zero_shot_templates"
    return [ev["zero_shot_template"]], "eval.zero_shot_template"


def class_text_embeddings(objective, encoders, classes, ev: dict) -> torch.Tensor:
    """(C, P) zero-shot class embeddings: each template's prompts embedded, ensembled over templates."""
    templates, key = zero_shot_templates(ev)
    return metrics.ensemble_class_texts([embed_texts(objective, encoders, prompts(classes, t, key), ev["batch_size"])
                                         for t in templates])


SPLITS = ("test", "val")


def check_protocol(cfg: dict) -> None:
    """Reject an ``eval`` section the protocols cannot run with, before any work.

    Raises:
        UserError: ``eval.split`` is not test or val, ``eval.svm_c_grid`` is empty or holds a C
            that is not a positive number, ``eval.svm_folds`` is below 2, ``eval.label_fractions``
            is not null or a list of distinct fractions in (0, 1], a zero-shot template is not a
            string with '{}', a ``finetune_*`` setting is out of range (epochs >= 1, batch
            size >= 2, lr > 0, weight decay >= 0), or ``eval.floor_statistics`` is not train or init.
    """
    ev = cfg["eval"]
    if ev["split"] not in SPLITS:
        raise UserError(f"eval.split must be test or val (the split every protocol reports on), got '{ev['split']}'")
    if ev["floor_statistics"] not in FLOOR_STATISTICS:
        raise UserError(f"eval.floor_statistics must be {' or '.join(FLOOR_STATISTICS)} (the random-init floor's "
                        f"BatchNorm statistics: evaluation/floor.py), got {ev['floor_statistics']!r}")
    grid = ev["svm_c_grid"]
    if not grid or not all(isinstance(c, (int, float)) and not isinstance(c, bool) and c > 0 for c in grid):
        raise UserError(f"eval.svm_c_grid must be a non-empty list of positive numbers, got {grid!r}")
    if not isinstance(ev["svm_folds"], int) or ev["svm_folds"] < 2:
        raise UserError(f"eval.svm_folds must be an integer of at least 2, got {ev['svm_folds']!r}")
    check_fractions(ev["label_fractions"])
    templates, key = zero_shot_templates(ev)
    for template in templates:
        prompts([], template, key)
    check_schedule(ev)


def evaluate_model(encoders, objective, datasets: dict, cfg: dict, device, announce: bool = True) -> tuple[dict, dict]:
    """Every protocol for one model; returns (metrics, the reported split's embeddings for logging).
    ``announce``: print the SVM's fold note (``svm.svm_probe``)."""
    with frozen(*encoders.values(), objective):
        return _evaluate_model(encoders, objective, datasets, cfg, device, announce)


def _evaluate_model(encoders, objective, datasets: dict, cfg: dict, device, announce: bool) -> tuple[dict, dict]:
    ev = cfg["eval"]
    train_set, report_set = datasets["train"], datasets[ev["split"]]
    paired = objective if is_paired(encoders, objective) else None
    train = embed(encoders["x"], train_set, ev["batch_size"], device)
    reported = embed(encoders["x"], report_set, ev["batch_size"], device, paired)
    single = reported["label"].dim() == 1
    out, reported["probe_predicted"] = probe_report(train, reported, train_set.classes, ev, cfg["seed"])
    if single:
        out.update(per_group(reported, reported["probe_predicted"], item_groups(report_set)))
        out.update(fraction_probes(train, reported, train_set.classes, ev, cfg["seed"]))
        out.update(single_label_protocols(train, reported, len(train_set.classes), cfg, announce))
    else:
        extra = [*(["zero_shot_acc"] if paired else []), *(["finetune_acc"] if ev["finetune"] else []),
                 *(["linear_probe_acc@<f>%"] if ev["label_fractions"] else [])]
        names = ", ".join(["svm_acc", "knn_acc", *extra[:-1]]) + (f" and {extra[-1]}" if extra else "")
        say_once(f"multi-label data: {names} are left out "
                 "(they score one label per item); the linear probe reports per-label AUROC")
    out.update({"alignment": metrics.alignment(reported["embedding"], reported["label"]),
                "uniformity": metrics.uniformity(reported["embedding"]),
                "effective_rank": metrics.effective_rank(reported["embedding"])})
    if paired is not None:
        reported["text"] = embed_texts(paired, encoders, list(report_set.captions), ev["batch_size"])
        out.update(metrics.retrieval_metrics(reported["joint"], reported["text"], torch.arange(len(report_set))))
        if single:
            class_texts = class_text_embeddings(paired, encoders, report_set.classes, ev)
            predicted = metrics.zero_shot_predict(reported["joint"], class_texts)
            out["zero_shot_acc"] = (predicted == reported["label"]).float().mean().item()
    if single and ev["finetune"]:
        n_classes = max(len(train_set.classes), int(train["label"].max()) + 1)
        out.update(finetune_report(encoders["x"], train_set, report_set, train["label"], n_classes, ev, cfg["seed"],
                                   device))
    return out, reported


def single_label_protocols(train: dict, reported: dict, n_classes: int, cfg: dict, announce: bool) -> dict:
    """``svm_acc``, ``svm_c`` and ``knn_acc`` of single-label embeddings (NaN where undefined)."""
    ev = cfg["eval"]
    n_classes = max(n_classes, int(train["label"].max()) + 1)
    fitted = svm.svm_probe(train["embedding"], train["label"], reported["embedding"], reported["label"],
                           ev["svm_c_grid"], ev["svm_folds"], cfg["seed"], announce)
    return {"svm_acc": math.nan if fitted is None else fitted.accuracy,
            "svm_c": math.nan if fitted is None else fitted.c,
            "knn_acc": metrics.knn_accuracy(train["embedding"], train["label"], reported["embedding"],
                                            reported["label"], n_classes, ev["knn_k"], ev["knn_temperature"])}


def floor_model(cfg: dict, datasets: dict, floor_encoder, device) -> nn.ModuleDict:
    """The random-init model the run started from: ``floor_encoder`` as x and, for paired
    objectives, the text encoder and heads ``build_model`` makes from the same seed."""
    model = build_model(cfg, datasets["train"]).to(device)
    model["encoders"]["x"] = floor_encoder
    return model


def evaluate_run(cfg: dict, model, floor_encoder, datasets: dict, device, writer, step: int) -> dict:
    """Every protocol on the trained model and on its random init (the floor), whose BatchNorm
    layers first take the train split's statistics unless ``eval.floor_statistics`` is init
    (``evaluation.floor``).

    Logs ``eval/<metric>`` and ``eval/floor_<metric>`` at ``step``, the hparams entry and the
    TensorBoard extras (``eval_logging``); returns {"metrics": {...}, "floor": {...} (same keys;
    metrics undefined on the data are left out), "eval_split": ``eval.split``, "eval_time_s":
    seconds}, merged into results.json.

    Raises:
        UserError: an ``eval`` section ``check_protocol`` rejects, or an empty reported split.
    """
    check_protocol(cfg)
    split = cfg["eval"]["split"]
    if len(datasets[split]) == 0:
        raise UserError(f"eval.split={split}: the {split} split has no items to report on; pick the other split")
    began = time.time()
    trained, trained_test = evaluate_model(model["encoders"], model["objective"], datasets, cfg, device)
    if cfg["eval"]["floor_statistics"] == "train":  # on a copy: the caller's encoder stays as it was built
        floor_encoder = copy.deepcopy(floor_encoder)
        set_batch_norm_statistics(floor_encoder, datasets["train"], cfg["eval"]["batch_size"], cfg["seed"], device)
    if is_paired(model["encoders"], model["objective"]):
        floor_parts = floor_model(cfg, datasets, floor_encoder, device)
        floor, floor_test = evaluate_model(floor_parts["encoders"], floor_parts["objective"], datasets, cfg, device,
                                           announce=False)
    else:
        floor, floor_test = evaluate_model({"x": floor_encoder}, None, datasets, cfg, device, announce=False)
    trained, floor = without_undefined(trained), without_undefined(floor)
    tensorboard_extras.log_all(writer, cfg, step, datasets[split], trained, floor, trained_test, floor_test)
    return {"metrics": trained, "floor": floor, "eval_split": split, "eval_time_s": round(time.time() - began, 2)}


def without_undefined(values: dict) -> dict:
    """``values`` without NaN entries, also inside dict values (per-class metrics): a metric undefined
    on this data (alignment when no class has two reported samples, the SVM when train has one
    class, an AUROC with one reported class) is left out of results.json, never written as NaN
    (which is not JSON)."""
    def defined(v):
        return not (isinstance(v, float) and math.isnan(v))
    return {k: without_undefined(v) if isinstance(v, dict) else v for k, v in values.items() if defined(v)}
