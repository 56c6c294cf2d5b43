"""The optimizer of a run (``optim.name``): AdamW, SGD with momentum, or LARS; and its parameter groups.

Every optimizer gets two parameter groups: weights (parameters with two or more dimensions:
linear and convolution kernels, embeddings) take ``optim.weight_decay``; biases and the scales
and shifts of normalization layers (one-dimensional parameters) take none, as in the SimCLR,
BYOL and solo-learn recipes. Frozen parameters (a momentum teacher's) are left out.

LARS (You et al. 2017, arXiv 1708.03888; as used by SimCLR and BYOL): SGD with momentum where
the step of each weight tensor w with gradient g is scaled by the trust ratio
``eta ||w|| / ||g + wd w||`` (1 when either norm is 0); biases and normalization parameters are
excluded from the adaptation and from weight decay::

    g' = g + wd w            (weights only)
    r  = eta ||w|| / ||g'||  (weights only; 1 otherwise)
    v  = momentum v + lr r g'
    w  = w - v
"""
from __future__ import annotations

import torch
from torch import nn

from core.errors import UserError

OPTIMIZERS = ("adamw", "sgd", "lars")


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """[{"params": weights, "weight_decay": wd, "adapt": True}, {"params": biases and norms,
    "weight_decay": 0, "adapt": False}] of the trainable parameters (empty groups left out)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in trainable if p.ndim > 1], "weight_decay": weight_decay, "adapt": True},
              {"params": [p for p in trainable if p.ndim <= 1], "weight_decay": 0.0, "adapt": False}]
    return [g for g in groups if g["params"]]


class LARS(torch.optim.Optimizer):
    """LARS (see the module docstring). Groups with ``adapt=False`` take plain SGD with momentum."""

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 0.001):
        if lr <= 0 or not 0 <= momentum < 1 or eta <= 0:
            raise ValueError(f"LARS needs lr > 0, 0 <= momentum < 1 and eta > 0; got {lr}, {momentum}, {eta}")
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "eta": eta,
                                  "adapt": True})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if group["adapt"]:
                    if group["weight_decay"]:
                        grad = grad.add(p, alpha=group["weight_decay"])
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(grad)
                    ratio = torch.where((w_norm > 0) & (g_norm > 0), group["eta"] * w_norm / g_norm,
                                        torch.ones_like(w_norm))
                    grad = grad * ratio
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buffer = state["momentum_buffer"]
                buffer.mul_(group["momentum"]).add_(grad, alpha=group["lr"])
                p.sub_(buffer)
        return loss


def build_optimizer(optim_cfg: dict, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer ``optim.name`` over ``parameter_groups(model, optim.weight_decay)``.

    Raises:
        UserError: an unknown ``optim.name``.
    """
    name = optim_cfg["name"]
    if name not in OPTIMIZERS:
        raise UserError(f"optim.name must be one of {', '.join(OPTIMIZERS)}; got '{name}'")
    groups = parameter_groups(model, optim_cfg["weight_decay"])
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=optim_cfg["lr"], betas=tuple(optim_cfg["betas"]))
    if name == "sgd":
        return torch.optim.SGD(groups, lr=optim_cfg["lr"], momentum=optim_cfg["momentum"])
    return LARS(groups, lr=optim_cfg["lr"], momentum=optim_cfg["momentum"], eta=optim_cfg["lars_eta"])
