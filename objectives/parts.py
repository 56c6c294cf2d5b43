"""Pieces the objective modules share: feeding a batch to an encoder (``encode_batch``,
``encode_views``: padding masks are never forgotten), projection MLPs (``mlp``) and the
similarity statistics they log (``pair_stats``, ``normalized_std``); ``project_views`` encodes every
view and applies a head."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn



def encode_batch(encoder, batch: dict, x: torch.Tensor | None = None) -> dict:
    """``encoder(x)`` where x defaults to ``batch["x"]``, with ``mask=batch["mask"]``
    (B, T) when the batch has one (series of unequal length)."""
    x = batch["x"] if x is None else x
    if "mask" in batch:
        return encoder(x, mask=batch["mask"])
    return encoder(x)


def mlp(in_dim: int, hidden_dim: int, out_dim: int, n_layers: int = 2, batch_norm: bool = False,
        last_bias: bool = True, activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """A projection head: ``n_layers - 1`` blocks Linear(-BatchNorm1d)-ReLU, then a Linear.

    n_layers = 1 is a single Linear(in_dim, out_dim); n_layers = 2 is SimCLR's
    and SupCon's Linear-ReLU-Linear. With ``batch_norm`` the Linear layers that
    feed a BatchNorm have no bias (BatchNorm subtracts it: its gradient would be
    zero). ``last_bias=False`` drops the final bias (VICReg's expander: its
    loss is invariant to a shift of both branches). ``activation`` replaces ReLU (DINO's head: GELU).
    Shapes: (N, in_dim) -> (N, out_dim).

    Raises:
        ValueError: n_layers < 1.
    """
    if n_layers < 1:
        raise ValueError(f"a projection head needs at least one layer, got n_layers={n_layers}")
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(n_layers - 1):
        layers.append(nn.Linear(dim, hidden_dim, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers.append(activation())
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim, bias=last_bias))
    return nn.Sequential(*layers)


def encode_views(encoder: nn.Module, batch: dict) -> torch.Tensor:
    """The ``embedding`` of every view, encoded in one call.

    ``batch["views"]`` (B, V, ...) is flattened to (B*V, ...); a padding mask
    ``batch["mask"]`` (B, T) is repeated per view to (B*V, T).
    Returns (B, V, D).
    """
    views = batch["views"]
    n_views = views.shape[1]
    flat = rearrange(views, "b v ... -> (b v) ...")
    masks = {"mask": batch["mask"].repeat_interleave(n_views, dim=0)} if "mask" in batch else {}
    embedding = encode_batch(encoder, masks, x=flat)["embedding"]
    return rearrange(embedding, "(b v) d -> b v d", v=n_views)


def project_views(encoder: nn.Module, head: nn.Module, batch: dict) -> torch.Tensor:
    """Every view encoded (``encode_views``) and projected by ``head`` in one call: (B, V, P)."""
    embeddings = encode_views(encoder, batch)  # (B, V, D)
    return rearrange(head(rearrange(embeddings, "b v d -> (b v) d")), "(b v) p -> b v p", b=len(embeddings))


@torch.no_grad()
def pair_stats(a: torch.Tensor, b: torch.Tensor) -> dict:
    """Logging statistics of paired rows a_i <-> b_i (this rank's rows only).

    ``pos_sim``: mean cosine similarity of pairs; ``neg_sim``: mean over i != j
    (0 when N = 1); ``retrieval_acc``: fraction of rows of a whose most
    similar row of b is their pair. Shapes: a, b (N, D). Returns 0-dim tensors.
    """
    sim = F.normalize(a.detach().float(), dim=-1) @ F.normalize(b.detach().float(), dim=-1).T
    n = sim.shape[0]
    diagonal = sim.diagonal()
    off_sum = sim.sum() - diagonal.sum()
    target = torch.arange(n, device=sim.device)
    return {"pos_sim": diagonal.mean(), "neg_sim": off_sum / max(n * n - n, 1),
            "retrieval_acc": (sim.argmax(dim=1) == target).float().mean()}


@torch.no_grad()
def normalized_std(z: torch.Tensor) -> torch.Tensor:
    """The collapse monitor of SimSiam's paper (Chen & He 2021, Fig. 2): the standard deviation over
    the batch of the L2-normalized outputs z (N, D), averaged over dimensions. About 1/sqrt(D) for
    outputs spread over the sphere, 0 when they collapse to one point. A 0-dim tensor."""
    return F.normalize(z.detach().float(), dim=-1).std(dim=0).mean()
