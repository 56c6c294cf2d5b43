"""The gradient of one batch: plain backward, or the gradient cache for batches too big to hold.

Gradient cache (Gao, Zhang, Han and Callan 2021, "Scaling Deep Contrastive
Learning Batch Size under Memory Limited Setup", arXiv 2101.06983). An in-batch
objective is split into ``represent(encoders, batch) -> {name: (B, ...)}``
(per sample: encoder and projection head, no interaction between rows) and
``loss_from(reps, batch) -> {"loss", ...}`` (the loss over every row). Then:

1. ``represent`` runs on chunks of ``chunk`` samples without a graph; the RNG
   state before each chunk is recorded (dropout draws from it);
2. the chunks' representations are concatenated into leaves that require
   grad, ``loss_from`` runs on the whole batch and ``backward`` gives
   d loss / d reps (and the gradient of the loss's own parameters, e.g. a
   learnt logit scale);
3. for each chunk, the RNG state of step 1 is restored, ``represent`` runs
   again with a graph and ``backward(reps_chunk, cached gradient)`` adds that
   chunk's share to the parameter gradients.

Every row still sees the whole batch's negatives; memory holds one chunk's
activations plus the (B, P) representations. The parameter gradient equals
the one of computing the loss of the whole batch at once, with the dropout
masks drawn chunk by chunk (the chain rule, step 2 then 3). Views are made
before the objective (training/loop.py ``add_views``), so they are shared by
both passes. BatchNorm in ``represent`` is the exception: its batch statistics
become per chunk, so its gradient differs from the whole batch's (the paper
notes the same); the encoders with LayerNorm-style norms (audio cpc_wave,
sequence tcn/gru/transformer, text) are exact, medical ResNets with
``norm: batch`` are not (use ``norm: instance`` there).

Supported objectives: those with ``represent`` and ``loss_from`` (supcon,
simclr, dcl, contrastive, simcse, clap, convirt, siglip); ``check`` names them for any other.
Under torchrun, every backward pass of a step happens inside ``backward``:
average the gradients across ranks after it returns.
"""
from __future__ import annotations

import contextlib

import torch

from core import registry
from core.errors import UserError


def supported() -> list[str]:
    """Registered objectives split into ``represent`` and ``loss_from``."""
    return [name for name in registry.names("objective")
            if all(hasattr(registry.get("objective", name).factory, m) for m in ("represent", "loss_from"))]


def check(train_cfg: dict, name: str) -> None:
    """Validate ``train.grad_cache_chunk`` and ``train.accumulate_steps`` for the objective registered as ``name``
    (before anything is built: ``experiment.build_training`` calls it first).

    Raises:
        UserError: a negative chunk, fewer than 1 accumulation step, or a gradient cache asked
            for an objective without ``represent`` and ``loss_from``.
    """
    if train_cfg["grad_cache_chunk"] < 0 or train_cfg["accumulate_steps"] < 1:
        raise UserError(f"train.grad_cache_chunk must be >= 0 and train.accumulate_steps >= 1; got "
                        f"{train_cfg['grad_cache_chunk']} and {train_cfg['accumulate_steps']}")
    if train_cfg["grad_cache_chunk"] and name not in supported():
        raise UserError(f"train.grad_cache_chunk needs an in-batch objective split into represent and loss_from "
                        f"({', '.join(supported())}); '{name}' is not one, so set train.grad_cache_chunk=0 "
                        f"(train.accumulate_steps still works, with fewer negatives per step)")


def split(batch: dict, chunk: int) -> list[dict]:
    """Consecutive sub-batches of ``chunk`` rows (the last may be smaller); fields whose
    first dimension is the batch (tensors, caption lists) are sliced, others shared."""
    n = len(batch["x"])
    return [{k: v[i:i + chunk] if (torch.is_tensor(v) or isinstance(v, list)) and len(v) == n else v
             for k, v in batch.items()} for i in range(0, n, chunk)]


def _rng_state(device: torch.device) -> tuple:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple, device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def unscaled(loss):
    """The default ``scale_loss``: the loss as it is."""
    return loss


def cached_backward(objective, encoders: dict, batch: dict, chunk: int, scale_loss=unscaled,
                    context=contextlib.nullcontext) -> dict:
    """Accumulate d(scale * loss)/d params into ``.grad`` with the gradient cache (steps 1-3 above).

    Args:
        objective: a module with ``represent`` and ``loss_from``.
        batch: the whole batch (``x`` (B, ...), ``views`` (B, V, ...), ``text`` B strings, ...).
        chunk: rows per ``represent`` call (>= 1).
        scale_loss: applied to the loss before backward (division by the accumulation steps, a
            loss scaler's ``scale``); the cached gradients carry it to the encoders.
        context: a factory of the context the forward passes run in (autocast); backward runs outside.
    Returns:
        ``loss_from``'s dict with ``loss`` detached. The global RNG ends where step 1 left it.
    """
    device = batch["x"].device
    chunks, states, parts = split(batch, chunk), [], []
    with torch.no_grad(), context():
        for sub in chunks:
            states.append(_rng_state(device))
            parts.append(objective.represent(encoders, sub))
    after = _rng_state(device)
    reps = {k: torch.cat([p[k] for p in parts]).requires_grad_() for k in parts[0]}
    with context():
        out = objective.loss_from(reps, batch)
    scale_loss(out["loss"]).backward()
    start = 0
    for sub, state in zip(chunks, states):
        _set_rng_state(state, device)
        with context():
            part = objective.represent(encoders, sub)
        rows = slice(start, start + len(sub["x"]))
        keys = [k for k in part if part[k].requires_grad and reps[k].grad is not None]
        torch.autograd.backward([part[k] for k in keys], [reps[k].grad[rows] for k in keys])
        start = rows.stop
    _set_rng_state(after, device)
    return {**out, "loss": out["loss"].detach()}


def backward(objective, encoders: dict, batch: dict, chunk: int = 0, scale_loss=unscaled,
             context=contextlib.nullcontext) -> dict:
    """One batch's forward and backward: ``objective(encoders, batch)`` then ``backward``
    when ``chunk`` is 0 (or covers the batch), else ``cached_backward``. Gradients
    accumulate into ``.grad``; returns the objective's dict with ``loss`` detached."""
    if chunk and chunk < len(batch["x"]):
        return cached_backward(objective, encoders, batch, chunk, scale_loss, context)
    with context():
        out = objective(encoders, batch)
    scale_loss(out["loss"]).backward()
    return {**out, "loss": out["loss"].detach()}


def mean_outputs(outs: list[dict]) -> dict:
    """The mean of each logged value over the micro-batches of one step (gradient accumulation)."""
    if len(outs) == 1:
        return outs[0]
    return {k: sum(torch.as_tensor(o[k], dtype=torch.float32).detach() for o in outs) / len(outs) for k in outs[0]}
