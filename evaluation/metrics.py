"""Evaluation metrics as pure functions over embedding tensors (no modules, no data).

Every function takes float embeddings on any device and returns Python floats
or CPU tensors. Cosine similarities are taken on L2-normalized rows. Pairwise
work is done in blocks of ``BLOCK`` query rows, so memory is O(BLOCK x N).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

BLOCK = 1024  # query rows per similarity block


def knn_predict(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor, n_classes: int,
                k: int = 20, temperature: float = 0.07, exclude_self: bool = False) -> torch.Tensor:
    """Weighted k-nearest-neighbour class predictions (Wu et al. 2018, InstDisc; Caron et al. 2021, DINO).

    Each query takes the ``k`` bank rows of highest cosine similarity s; neighbour
    j votes for its class with weight exp(s_j / temperature); the class with the
    largest summed weight wins (ties: the smaller class index).

    Args:
        bank: (N, D) reference embeddings; bank_labels: (N,) long in [0, n_classes).
        queries: (M, D) embeddings to classify.
        k: neighbours per query, capped at the number of candidates.
        exclude_self: leave-one-out, for when ``queries`` *is* ``bank`` (M == N, row i
            is sample i): query i never counts bank row i among its neighbours.

    Returns:
        (M,) long predictions.

    Raises:
        ValueError: ``exclude_self`` with a bank and queries of different lengths.
    """
    if exclude_self and len(bank) != len(queries):
        raise ValueError(f"exclude_self needs queries to be the bank, got {len(queries)} queries and {len(bank)} rows")
    bank, queries = F.normalize(bank.float(), dim=1), F.normalize(queries.float(), dim=1)
    k = min(k, len(bank) - int(exclude_self))
    predictions = []
    for start in range(0, len(queries), BLOCK):
        sim = queries[start:start + BLOCK] @ bank.T
        if exclude_self:
            rows = torch.arange(len(sim), device=sim.device)
            sim[rows, rows + start] = -math.inf
        top_sim, top_idx = sim.topk(k, dim=1)
        votes = torch.zeros(len(sim), n_classes, device=sim.device)
        votes.scatter_add_(1, bank_labels.to(sim.device)[top_idx], (top_sim / temperature).exp())
        predictions.append(votes.argmax(1).cpu())
    return torch.cat(predictions)


def knn_accuracy(train_x, train_y, test_x, test_y, n_classes: int, k: int = 20, temperature: float = 0.07) -> float:
    """Accuracy on (test_x, test_y) of ``knn_predict`` with the train split as the bank."""
    predicted = knn_predict(train_x, train_y, test_x, n_classes, k, temperature)
    return (predicted == test_y.cpu()).float().mean().item()


def retrieval_ranks(items: torch.Tensor, captions: torch.Tensor, caption_item: torch.Tensor) -> tuple:
    """1-based ranks of the correct match in both directions, by cosine similarity.

    An item may own several captions (``caption_item`` maps caption -> item).
    Item -> text: the rank of the item's best-placed caption among all captions.
    Text -> item: the rank of the caption's item among all items. Ties count
    against the model: rank = 1 + number of wrong candidates scoring >= the best
    correct one, so collapsed (all-equal) embeddings get the worst rank, not the best.

    Args:
        items: (N, P); captions: (M, P) joint-space embeddings.
        caption_item: (M,) long in [0, N); every item should own at least one caption.

    Returns:
        (x2t (N,) long, t2x (M,) long).

    Raises:
        ValueError: an item owns no caption.
    """
    caption_item = caption_item.long().to(items.device)
    owned = torch.zeros(len(items), dtype=torch.bool, device=items.device)
    owned[caption_item] = True
    if not owned.all():
        raise ValueError(f"{int((~owned).sum())} items own no caption; retrieval needs one caption per item or more")
    items, captions = F.normalize(items.float(), dim=1), F.normalize(captions.float(), dim=1)
    x2t, t2x = [], []
    for start in range(0, len(items), BLOCK):
        sim = items[start:start + BLOCK] @ captions.T  # (n, M)
        mine = caption_item[None, :] == torch.arange(start, start + len(sim), device=sim.device)[:, None]
        best = sim.masked_fill(~mine, -math.inf).max(1, keepdim=True).values
        x2t.append(1 + ((sim >= best) & ~mine).sum(1).cpu())
    for start in range(0, len(captions), BLOCK):
        sim = captions[start:start + BLOCK] @ items.T  # (m, N)
        target = caption_item[start:start + BLOCK]
        correct = sim.gather(1, target[:, None])
        wrong = torch.ones_like(sim, dtype=torch.bool).scatter_(1, target[:, None], False)
        t2x.append(1 + ((sim >= correct) & wrong).sum(1).cpu())
    return torch.cat(x2t), torch.cat(t2x)


def retrieval_metrics(items, captions, caption_item, ks=(1, 5, 10)) -> dict:
    """{'retrieval_r{k}_x2t', 'retrieval_r{k}_t2x': recall at k, 'retrieval_medr_x2t', 'retrieval_medr_t2x':
    median rank (mean of the middle two for an even count)} from ``retrieval_ranks`` (recall at k = fraction of queries with rank <= k)."""
    out = {}
    for direction, ranks in zip(("x2t", "t2x"), retrieval_ranks(items, captions, caption_item)):
        for k in ks:
            out[f"retrieval_r{k}_{direction}"] = (ranks <= k).float().mean().item()
        out[f"retrieval_medr_{direction}"] = ranks.double().quantile(0.5).item()  # as numpy.median
    return out


def ensemble_class_texts(per_template: list[torch.Tensor]) -> torch.Tensor:
    """Prompt ensemble (CLIP, Radford et al. 2021, sec. 3.1.4): the class embeddings (C, P) as the mean over
    templates of each template's L2-normalized class embeddings (C, P); with one template its normalized rows.

    Raises:
        ValueError: no template, or templates of different shapes.
    """
    if not per_template:
        raise ValueError("a prompt ensemble needs at least one template's class embeddings")
    if len({tuple(t.shape) for t in per_template}) != 1:
        raise ValueError(f"every template needs (C, P) class embeddings of one shape, got "
                         f"{sorted({tuple(t.shape) for t in per_template})}")
    return torch.stack([F.normalize(t.float(), dim=1) for t in per_template]).mean(0)


def zero_shot_predict(items: torch.Tensor, class_texts: torch.Tensor) -> torch.Tensor:
    """(N,) class of highest cosine similarity between each item (N, P) and the class prompts (C, P)."""
    return (F.normalize(items.float(), dim=1) @ F.normalize(class_texts.float(), dim=1).T).argmax(1).cpu()


def alignment(x: torch.Tensor, labels: torch.Tensor) -> float:
    """Alignment (Wang & Isola 2020, alpha = 2) with positives = distinct same-class pairs:
    mean ||u_i - u_j||^2 over i < j with labels i == j, u = x L2-normalized. In [0, 4]; lower is better.

    Per class c of n_c rows, sum_{i<j} ||u_i - u_j||^2 = n_c * sum_i ||u_i||^2 - ||sum_i u_i||^2, so no
    pairwise matrix is formed. NaN when no class has two rows. ``labels`` (N,), or multi-hot (N, K):
    then positives are pairs with the same set of labels.
    """
    u = F.normalize(x.double(), dim=1)
    labels = labels.to(u.device)
    if labels.dim() == 2:
        labels = torch.unique(labels, dim=0, return_inverse=True)[1]
    total, pairs = 0.0, 0
    for c in labels.unique():
        members = u[labels == c]
        n = len(members)
        total += (n * members.pow(2).sum() - members.sum(0).pow(2).sum()).item()
        pairs += n * (n - 1) // 2
    return total / pairs if pairs else math.nan


def uniformity(x: torch.Tensor, t: float = 2.0) -> float:
    """Uniformity (Wang & Isola 2020): log mean_{i<j} exp(-t ||u_i - u_j||^2), u = x L2-normalized.
    In [-4t, 0]; lower is more uniform. NaN for fewer than two rows."""
    u = F.normalize(x.double(), dim=1)
    n = len(u)
    if n < 2:
        return math.nan
    terms = []
    for start in range(0, n, BLOCK):
        d2 = (2 - 2 * u[start:start + BLOCK] @ u.T).clamp_min(0)  # ||a-b||^2 = 2 - 2 a.b on the sphere
        upper = torch.arange(n, device=u.device)[None, :] > torch.arange(start, start + len(d2), device=u.device)[:, None]
        terms.append(torch.logsumexp(-t * d2[upper], dim=0))
    return (torch.logsumexp(torch.stack(terms), dim=0) - math.log(n * (n - 1) / 2)).item()


def effective_rank(x: torch.Tensor) -> float:
    """Effective rank (Roy & Vetterli 2007) of the centered embeddings (N, D): exp(H(p)) with
    p = sigma / sum(sigma) the normalized singular values and 0 log 0 = 0. Between 1 and
    min(N, D); near 1 means the embeddings collapsed onto a line; 0 when all rows are equal
    (complete collapse: the centered matrix is zero, as is its rank)."""
    centered = x.double() - x.double().mean(0)
    sigma = torch.linalg.svdvals(centered)
    if sigma.sum() <= 1e-12 * max(1.0, x.double().abs().max().item()):
        return 0.0
    p = sigma / sigma.sum()
    p = p[p > 0]
    return math.exp(-(p * p.log()).sum().item())
