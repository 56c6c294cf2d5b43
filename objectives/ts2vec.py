"""TS2Vec: two overlapping random crops of a series, contrasted timestamp by timestamp at every time scale."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from core.errors import UserError
from core.registry import register
from objectives.distributed import from_rank_zero, min_over_ranks
from objectives.functional import hierarchical_contrastive_loss
from objectives.parts import encode_batch, normalized_std


class Crop(NamedTuple):
    """One step's crops in input steps: view 1 is x[offset + eleft : offset + left + length], view 2 is
    x[offset + left : offset + eright]; both hold the overlap x[offset + left : offset + left + length]."""

    length: int            # crop_l, the overlap
    left: int              # crop_left
    eleft: int             # crop_eleft <= crop_left
    eright: int            # crop_eright >= crop_left + crop_l
    offset: torch.Tensor   # (B,) long, per series


CROP_SPANS = ("real", "window")


def real_spans(x: torch.Tensor, mask: torch.Tensor | None, max_train_length: int | None,
               crop_span: str = "real") -> tuple[torch.Tensor, torch.Tensor]:
    """Per series the span [start, end) of input steps the crops may use, (B,) long tensors on the CPU.

    Without a mask, or with ``crop_span="window"``, the whole (padded) window [0, T), as the
    reference code crops; with a padding mask (B, T) and ``crop_span="real"``, from the series'
    first to its last real step (steps missing inside stay, zeroed by the encoder). A span longer
    than ``max_train_length`` is cut to a random window of that length (the reference code cuts
    long series into windows of that length once, before training).

    Raises:
        UserError: a series has no real step.
    """
    b, _, t = x.shape
    real = None if mask is None else mask.bool().cpu()
    if real is not None and not real.any(dim=1).all():
        raise UserError("ts2vec: a series of the batch has no real step (its mask is all False)")
    if real is None or crop_span == "window":
        start, end = torch.zeros(b, dtype=torch.long), torch.full((b,), t, dtype=torch.long)
    else:
        steps = torch.arange(t)
        start = torch.where(real, steps, t).amin(dim=1)
        end = torch.where(real, steps, -1).amax(dim=1) + 1
    if max_train_length:
        slack = (end - start - max_train_length).clamp_min(0)
        start = start + (torch.rand(b) * (slack + 1)).long().clamp_max(slack)
        end = torch.minimum(end, start + max_train_length)
    return start, end


def _uniform(low: int, high: int) -> int:
    """An integer drawn uniformly from [low, high] (both included), from torch's global RNG."""
    return int(torch.randint(low, high + 1, ()).item())


def draw_crop(start: torch.Tensor, end: torch.Tensor, min_length: int, device) -> Crop:
    """TS2Vec's crop (the reference code's ``fit``) on spans [start, end), (B,) each.

    With L the shortest span of the batch (of every rank under torchrun): crop_l ~ U{min(min_length,
    L), L}, crop_left ~ U{0, L - crop_l}, crop_right = crop_left + crop_l, crop_eleft ~
    U{0, crop_left}, crop_eright ~ U{crop_right, L}; per series offset ~ U{start - crop_eleft,
    end - crop_eright} (the reference's U{-crop_eleft, T - crop_eright} when every span is [0, T)).
    Both views then lie inside the series' span. The shared draws are rank 0's on every rank.
    """
    span = min_over_ranks(int((end - start).min()), device)
    length = _uniform(min(min_length, span), span)
    left = _uniform(0, span - length)
    eleft, eright = _uniform(0, left), _uniform(left + length, span)
    shared = from_rank_zero(torch.tensor([length, left, eleft, eright], device=device)).tolist()
    length, left, eleft, eright = shared
    low, high = start - eleft, end - eright
    offset = low + (torch.rand(len(start)) * (high - low + 1)).long().clamp_max(high - low)
    return Crop(length, left, eleft, eright, offset)


def take(x: torch.Tensor, begin: torch.Tensor, length: int) -> torch.Tensor:
    """x[b, ..., begin[b] : begin[b] + length] for every b: (B, ..., T) -> (B, ..., length)."""
    index = begin.to(x.device)[:, None] + torch.arange(length, device=x.device)  # (B, length)
    index = index.view(index.shape[0], *([1] * (x.dim() - 2)), length).expand(*x.shape[:-1], length)
    return x.gather(-1, index)


def overlap(seq1: torch.Tensor, seq2: torch.Tensor, crop: Crop, len1: int,
            len2: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The overlap's steps of both views' sequences (B, T_k, D): the last ones of view 1, the first of view 2.

    An encoder that keeps the time resolution gives exactly the crop_l overlap steps of each; one
    that downsamples gives round(crop_l * T_k / len_k) steps of view k, and the fewer of the two
    counts is taken from both (aligned up to the encoder's rounding of its edges).

    Raises:
        UserError: the overlap maps to no encoder step.
    """
    n = min(round(crop.length * seq1.shape[1] / len1), round(crop.length * seq2.shape[1] / len2),
            seq1.shape[1], seq2.shape[1])
    if n < 1:
        raise UserError(f"ts2vec: an overlap of {crop.length} input steps is less than one step of the encoder's "
                        f"sequence ({seq1.shape[1]} steps for {len1} input steps); raise objective.min_crop")
    return seq1[:, seq1.shape[1] - n:], seq2[:, :n]


@torch.no_grad()
def instance_accuracy(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Share of (row, timestamp) of this rank whose other view outscores every other row (the instance
    term's task at full resolution). z1, z2 (B, T, D); 1 when B is 1."""
    z = torch.cat([z1, z2]).transpose(0, 1).float()  # (T, 2B, D)
    sim = z @ z.transpose(1, 2)
    sim.diagonal(dim1=1, dim2=2).fill_(float("-inf"))
    b = z1.shape[0]
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z.device)
    return (sim.argmax(dim=-1) == target).float().mean()


@register("objective", "ts2vec", needs=("series", "sequence"))
class TS2Vec(nn.Module):
    """TS2Vec (Yue et al. 2022, AAAI, arXiv 2106.10466): hierarchical contrast of overlapping crops.

    Each step draws two overlapping crops of ``batch["x"]`` (B, C, T) (``draw_crop``, as the
    reference code: one crop geometry for the batch, a random offset per series), encodes both
    views, takes the encoder's per-step output over their overlap and applies
    ``functional.hierarchical_contrastive_loss`` (weight ``alpha`` on the instance term, temporal
    terms from level ``temporal_unit`` on). The overlap's steps pair the same input timestamps
    exactly when the encoder keeps the time resolution (the sequence encoders); an encoder that
    downsamples (audio's) is mapped proportionally (``overlap``). With a padding mask the crops
    stay between each series' first and last real step (``crop_span="real"``; the batch's shortest
    series then bounds every crop) or range over the whole padded window as the reference code's
    do (``"window"``: long series are cropped long, and padded steps enter the views and the loss
    as the encoder outputs them); either way the views carry their mask to the encoder. The per-step output is the encoder's ``context`` when it has one (tcn, cpc_wave:
    the steps their embedding pools, so that what is evaluated is what is trained), else its
    ``sequence``. The paper's two views of a timestamp differ by the steps around it (each crop
    ends elsewhere) and by the ts2vec encoder's timestamp masking; an encoder without masking
    gives views that differ by the surrounding steps alone.

    Randomness comes from torch's global RNG, which every run seeds and every checkpoint saves
    (so runs repeat and resume exactly); under torchrun rank 0's crop geometry is used on every
    rank, within the shortest span of any rank, so that every rank's overlap has one length.

    Args:
        alpha: weight of the instance term; 1 - alpha weighs the temporal term.
        temporal_unit: the first pooling level with a temporal term.
        max_train_length: spans longer than this are cut to a random window of it (reference default 3000).
        min_crop: the shortest overlap crop_l in input steps; None is the reference code's
            2^(temporal_unit + 1). Raise it for encoders that downsample (audio: 160 samples a
            step). Series shorter than it are cropped whole.
        crop_span: "real" or "window", where crops may lie when the series carry a padding mask (above).

    Logs ``crop_len`` (crop_l, input steps), ``overlap_steps`` (the overlap in encoder steps),
    ``output_std`` (``parts.normalized_std`` of the max-pooled overlap of view 1; 0 at collapse)
    and ``instance_acc`` (``instance_accuracy``).

    Raises:
        ValueError: alpha outside [0, 1], temporal_unit < 0, min_crop < 1, max_train_length < 2 or
            crop_span not in ``CROP_SPANS``.
        UserError (in forward): x is not (B, C, T), a series has no real step, or the overlap maps
            to no encoder step.
    """

    def __init__(self, encoders: dict, alpha: float = 0.5, temporal_unit: int = 0,
                 max_train_length: int | None = 3000, min_crop: int | None = None, crop_span: str = "real"):
        super().__init__()
        if crop_span not in CROP_SPANS:
            raise ValueError(f"crop_span must be one of {', '.join(CROP_SPANS)}, got '{crop_span}'")
        self.crop_span = crop_span
        if not 0.0 <= alpha <= 1.0 or temporal_unit < 0:
            raise ValueError(f"need 0 <= alpha <= 1 and temporal_unit >= 0, got {alpha} and {temporal_unit}")
        if (min_crop is not None and min_crop < 1) or (max_train_length is not None and max_train_length < 2):
            raise ValueError(f"need min_crop >= 1 and max_train_length >= 2, got {min_crop} and {max_train_length}")
        self.alpha, self.temporal_unit = alpha, temporal_unit
        self.output = "context" if encoders["x"].dims.get("context") else "sequence"
        self.max_train_length = max_train_length
        self.min_crop = 2 ** (temporal_unit + 1) if min_crop is None else min_crop

    def forward(self, encoders: dict, batch: dict) -> dict:
        x, mask = batch["x"], batch.get("mask")
        if x.dim() != 3:
            raise UserError(f"ts2vec crops series x of shape (B, C, T); got x of shape {tuple(x.shape)}")
        crop = draw_crop(*real_spans(x, mask, self.max_train_length, self.crop_span), self.min_crop, x.device)
        begins = (crop.offset + crop.eleft, crop.offset + crop.left)
        lengths = (crop.left + crop.length - crop.eleft, crop.eright - crop.left)
        seqs = []
        for begin, length in zip(begins, lengths):
            fields = {} if mask is None else {"mask": take(mask, begin, length)}
            seqs.append(encode_batch(encoders["x"], fields, x=take(x, begin, length))[self.output])
        z1, z2 = overlap(*seqs, crop, *lengths)
        loss = hierarchical_contrastive_loss(z1, z2, self.alpha, self.temporal_unit)
        return {"loss": loss, "crop_len": torch.tensor(float(crop.length)),
                "overlap_steps": torch.tensor(float(z1.shape[1])),
                "output_std": normalized_std(z1.amax(dim=1)), "instance_acc": instance_accuracy(z1, z2)}
