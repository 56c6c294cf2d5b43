"""A run's trained modules without its data or optimizer: the encoders and, for paired objectives,
the heads of the joint space.

``build_modules`` makes them from the config, the input shape and the tokenizer (no dataset is
read); ``weights`` is what an export stores of them (tensors only: no tokenizer, no code) and
``load_weights`` puts those tensors back, checking that every key fits.
"""
from __future__ import annotations

import torch
from torch import nn

from core import registry
from core.errors import UserError
from modalities.text.tokenizer import Tokenizer
from objectives.paired import PairedObjective
from training.build import build_encoder, build_objective, build_text_encoder, section, takes

EXTRA_STATE = "_extra_state"


def is_paired(cfg: dict) -> bool:
    """Whether the run's objective is a paired one (CLAP, ConVIRT, SigLIP): it has a joint space."""
    factory = registry.get("objective", cfg["objective"]["name"]).factory
    return isinstance(factory, type) and issubclass(factory, PairedObjective)


def text_encoder(cfg: dict, tokenizer: Tokenizer | None) -> nn.Module:
    """The run's text encoder around the tokenizer it was trained with (``model.text.pretrained``:
    the local HuggingFace model, which brings its own).

    Raises:
        UserError: the encoder needs a tokenizer and none was saved with the run.
    """
    text = cfg["model"]["text"]
    if text["pretrained"]:
        return build_text_encoder(cfg, [])
    name = text["encoder"]
    options = {k: v for k, v in section(text, name).items() if k not in ("vocab_size", "max_length")}
    if not takes("encoder", name, "tokenizer"):
        return registry.build("encoder", name, **options)
    if tokenizer is None:
        raise UserError(f"text encoder '{name}' needs the run's tokenizer (tokenizer.json), which is missing")
    return registry.build("encoder", name, tokenizer=tokenizer, **options)


def build_modules(cfg: dict, input_shape, tokenizer: Tokenizer | None = None,
                  n_classes: int = 1) -> nn.ModuleDict:
    """{"encoders": {"x"[, "text"]}[, "objective"]} with fresh weights: the text encoder and the
    objective (its heads) only for paired objectives. The caller's RNG state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        encoders = nn.ModuleDict({"x": build_encoder(cfg, tuple(input_shape))})
        if not is_paired(cfg):
            return nn.ModuleDict({"encoders": encoders})
        encoders["text"] = text_encoder(cfg, tokenizer)
        return nn.ModuleDict({"encoders": encoders, "objective": build_objective(cfg, encoders, n_classes)})


def select(model_state: dict, paired: bool) -> dict:
    """The tensors of a checkpoint's ``model`` state that ``build_modules`` has: ``encoders.*`` and,
    when ``paired``, ``objective.*``; extra state (a tokenizer) left out."""
    keep = ("encoders.", "objective.") if paired else ("encoders.",)
    return {k: v for k, v in model_state.items() if k.startswith(keep) and not k.endswith(EXTRA_STATE)}


def weights(modules: nn.ModuleDict) -> dict[str, torch.Tensor]:
    """Every tensor of ``modules`` as contiguous CPU tensors (what ``weights.safetensors`` holds)."""
    return {k: v.detach().cpu().contiguous() for k, v in modules.state_dict().items()
            if torch.is_tensor(v) and not k.endswith(EXTRA_STATE)}


def load_weights(modules: nn.ModuleDict, tensors: dict, where: str) -> None:
    """Load ``tensors`` into ``modules``; every tensor of the modules must be given and fit.

    Raises:
        UserError: a missing, unexpected or mis-shaped tensor, naming ``where`` (the file).
    """
    try:
        result = modules.load_state_dict(tensors, strict=False)
    except RuntimeError as err:
        raise UserError(f"'{where}' does not fit the model of its config.yaml "
                        f"({' '.join(str(err).split())[:300]})") from None
    missing = [k for k in result.missing_keys if not k.endswith(EXTRA_STATE)]
    if missing or result.unexpected_keys:
        what = f"missing {', '.join(missing[:3])}" if missing else f"unexpected {', '.join(result.unexpected_keys[:3])}"
        raise UserError(f"'{where}' does not fit the model of its config.yaml ({what})")
