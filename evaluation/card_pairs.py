"""The model card's positive and negative construction: what an objective treated as the same item
and what it pushed apart, in words and numbers read from the run's config and results.json.

B is the batch one loss sees: ``train.batch_size`` x processes (``world_size``; a gradient
accumulation micro-batch sees only its own negatives, the gradient cache keeps them all); V is
``views.<name>.n_views``. Options are printed as ``key=value`` so that every number can be traced
back to config.yaml.
"""
from __future__ import annotations

import json

from core import registry

PAIRED = ("clap", "convirt", "siglip")
NON_CONTRASTIVE = ("byol", "simsiam", "barlow_twins", "dino", "vicreg")


def setting(cfg: dict, dotted: str) -> str:
    """```key=value``` of the config entry ``dotted`` (e.g. ``objective.temperature``), the value as
    JSON (null, true, quoted strings), which a YAML override reads back as the same value."""
    value = cfg
    for part in dotted.split("."):
        value = value[part]
    return f"`{dotted}={json.dumps(value)}`"


def options(cfg: dict, section: str) -> str:
    """Every ``section.*`` scalar or list as ```key=value```, comma-separated (dicts left out)."""
    value = cfg
    for part in section.split("."):
        value = value[part]
    return ", ".join(setting(cfg, f"{section}.{k}") for k, v in value.items()
                     if k != "name" and not isinstance(v, dict))


def batch_items(cfg: dict, results: dict) -> int:
    """B: the items of one loss's batch (``train.batch_size`` x ``world_size``)."""
    return cfg["train"]["batch_size"] * results.get("world_size", 1)


def batch_line(cfg: dict, results: dict) -> str:
    world = results.get("world_size", 1)
    return (f"B = `train.batch_size={cfg['train']['batch_size']}` × {world} process{'es' if world > 1 else ''} "
            f"= {batch_items(cfg, results)} items")


def uses_views(objective: str) -> bool:
    return "views" in registry.get("objective", objective).capabilities


def n_views(cfg: dict) -> int:
    return cfg["views"][cfg["views"]["name"]]["n_views"]


def views_text(cfg: dict) -> str:
    name = cfg["views"]["name"]
    return f"`{name}` ({options(cfg, f'views.{name}')})"


def caption_source(cfg: dict) -> str:
    if cfg["data"]["path"] is None:
        return "the built-in captions, written from each item's generated attributes"
    return "the caption or report column of the data (a default sentence naming the class where it is empty)"


def positives(cfg: dict) -> str:
    """One paragraph: what the objective treats as a positive pair."""
    o = cfg["objective"]["name"]
    opt = cfg["objective"]
    if o in PAIRED:
        augmented = (f"x seen in training as one augmented view by {views_text(cfg)}" if opt.get("augment_x")
                     else "no augmentation of x")
        return f"Each item with its own paired text, {caption_source(cfg)}; {augmented}."
    if o == "ce":
        return "None: cross-entropy of a linear head against each item's class label (labels used)."
    if o == "triplet":
        return (f"Another item of the same label in the batch ({setting(cfg, 'objective.mining')}: "
                "the farthest one for batch_hard); labels used.")
    if o == "simcse":
        encoder = cfg["model"]["encoder"]
        return (f"The same item encoded twice with independent dropout masks "
                f"({setting(cfg, f'model.{encoder}.dropout')}); no augmentation.")
    if o == "cpc":
        return (f"The latents of the same sequence 1 to K steps ahead of each context step "
                f"(K: {setting(cfg, 'objective.prediction_steps')}), predicted by one linear map per step.")
    if o == "ts2vec":
        return ("The same timestamp in two overlapping random crops of a series (instance and temporal terms, "
                f"{setting(cfg, 'objective.alpha')}).")
    text = f"The other augmented views of the same item: V = {n_views(cfg)} views by {views_text(cfg)}."
    if o == "supcon":
        text += " Also every view of another item with the same label (labels used)."
    elif o in ("dcl", "contrastive") and opt.get("use_labels"):
        text += " Also every view of another item with the same label (`use_labels`: labels used)."
    elif o == "moco" and opt.get("supervised"):
        text += " Also queue keys with the query's label (`supervised`: labels used)."
    elif o == "dino":
        text += " The student also sees the local views, matched to the teacher's global ones."
    return text


def negatives(cfg: dict, results: dict) -> str:
    """One paragraph: what the objective pushes apart from an anchor, and how many."""
    o = cfg["objective"]["name"]
    b = batch_items(cfg, results)
    if o in NON_CONTRASTIVE:
        return f"None: `{o}` is non-contrastive (no item is pushed away from another)."
    if o == "ce":
        return "None in the contrastive sense: the other classes' logits of the cross-entropy (labels)."
    if o == "moco":
        return (f"The keys of past batches in the queue ({setting(cfg, 'objective.queue_size')}), from the momentum "
                "encoder; the batch's other items are not used.")
    if o == "cpc":
        return (f"{setting(cfg, 'objective.n_negatives')} latents drawn uniformly from every (sequence, time step) "
                f"of the batch, shared across the K steps; {batch_line(cfg, results)}.")
    if o in ("clap", "convirt"):
        return (f"In-batch and cross-modal: for each item the other B − 1 = {b - 1} texts of its batch, and for "
                f"each text the other {b - 1} items; {batch_line(cfg, results)}.")
    if o == "siglip":
        return (f"Every non-matching (item, text) pair of the batch, B·(B − 1) = {b * (b - 1)} pairs, each scored "
                f"alone by the sigmoid loss; {batch_line(cfg, results)}.")
    if o == "triplet":
        return f"One item of another label from the batch per anchor (the nearest for batch_hard); {batch_line(cfg, results)}."
    if o == "simcse":
        return f"The second encodings of the other B − 1 = {b - 1} items of the batch; {batch_line(cfg, results)}."
    if o == "ts2vec":
        return (f"Instance term: the other 2B − 2 = {2 * b - 2} crops at the same timestamp; temporal term: other "
                f"timestamps of the same series; {batch_line(cfg, results)}.")
    v = 2 if o == "dcl" else n_views(cfg)
    if o == "supcon":
        return (f"The views of items with another label among the V·B = {v * b} rows of the batch (at most "
                f"V·B − V = {v * b - v} per anchor); {batch_line(cfg, results)}.")
    if o == "contrastive":
        return (f"Every pair of rows of different items among the V·B = {v * b} rows, pushed apart until their "
                f"distance reaches {setting(cfg, 'objective.margin')}; {batch_line(cfg, results)}.")
    return (f"In-batch: every other item's views among the V·B = {v * b} rows, V·B − V = {v * b - v} per anchor "
            f"(NT-Xent{', debiased' if o == 'dcl' else ''}); {batch_line(cfg, results)}.")
