"""MoCo v2: a momentum key encoder and a queue of past keys as negatives."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from objectives.distributed import gather_no_grad
from objectives.momentum import ema_update, frozen_copy, momentum_at
from objectives.parts import encode_batch, mlp, pair_stats
from core.registry import register

NO_LABEL = -1  # label of queue slots not filled yet, and of keys from unlabelled batches


def queue_infonce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, positive: torch.Tensor,
                  temperature: float) -> torch.Tensor:
    """InfoNCE of queries against [own key, queue], positives averaged inside the log-softmax.

    For query i the candidates are its own key k_i (column 0) and the K queue
    entries; loss_i = -1/|P(i)| sum_{p in P(i)} log softmax(q_i . c / t)_p
    with P(i) = column 0 plus the queue columns where ``positive`` is True
    (SupCon's L_out; with no queue positives it is MoCo's cross-entropy with
    target 0). Shapes: q, k (B, D) and queue (K, D), all L2-normalized;
    positive (B, K) bool. Computed in float32. Returns the mean over queries.
    """
    q, k, queue = q.float(), k.float(), queue.float()
    logits = torch.cat([(q * k).sum(dim=1, keepdim=True), q @ queue.T], dim=1) / temperature
    log_prob = logits.log_softmax(dim=1)
    mask = torch.cat([torch.ones_like(positive[:, :1]), positive], dim=1).float()
    return -((log_prob * mask).sum(dim=1) / mask.sum(dim=1)).mean()


@register("objective", "moco", needs=("views", "embedding"))
class MoCo(nn.Module):
    """MoCo v2 (He et al. 2019, arXiv 1911.05722; Chen et al. 2020, arXiv 2003.04297).

    Query q = normalize(head(encoder(view 0))); key k = normalize(key_head(
    key_encoder(view 1))) without gradient, where key_encoder and key_head are
    frozen copies (requires_grad False) updated in ``on_step_end`` as
    key <- m * key + (1 - m) * online (``objectives.momentum``), m = ``momentum``, or rising
    from it to 1 with ``momentum_schedule: cosine`` (BYOL's schedule). The loss is InfoNCE of q
    against its own key and a queue of ``queue_size`` past keys
    (``queue_infonce``), temperature ``temperature``. After the loss, under
    no_grad and only in training mode, the keys of all ranks (gathered with
    ``gather_no_grad``) and their labels are written into the queue ring
    buffer, so every rank keeps the same queue; a non-finite key leaves its
    slot as it was (the pointer still advances). The queue starts with random
    unit vectors labelled NO_LABEL (negatives, never positives), as in MoCo.

    ``supervised=True``: queue entries with the query's ``batch["label"]``
    are positives too (SupCon-style). BatchNorm in the encoder is not
    shuffled across ranks (MoCo's shuffle-BN is not reproduced).

    Logs ``temperature``, ``pos_sim`` (q . own key), ``neg_sim`` (q . queue,
    mean), ``retrieval_acc`` (in-batch query -> key top-1).

    Raises:
        ValueError (forward): ``supervised`` and the batch has no "label";
            or the batch has fewer than 2 views.
    """

    def __init__(self, encoders: dict, proj_dim: int = 128, queue_size: int = 4096,
                 momentum: float = 0.999, momentum_schedule: str = "constant", temperature: float = 0.2,
                 supervised: bool = False):
        super().__init__()
        momentum_at(momentum, 0, 1, momentum_schedule)  # a bad momentum or schedule fails here
        dim = encoders["x"].dims["embedding"]
        self.head = mlp(dim, dim, proj_dim)
        self.key_encoder = frozen_copy(encoders["x"])
        self.key_head = frozen_copy(self.head)
        self.momentum, self.momentum_schedule = momentum, momentum_schedule
        self.temperature, self.supervised = temperature, supervised
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, proj_dim), dim=1))
        self.register_buffer("queue_labels", torch.full((queue_size,), NO_LABEL, dtype=torch.long))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @property
    def label_mode(self) -> str | None:
        """"single" with ``supervised`` (one class per item), else None (``objectives.labels``)."""
        return "single" if self.supervised else None

    def forward(self, encoders: dict, batch: dict) -> dict:
        views = batch["views"]
        if views.shape[1] < 2:
            raise ValueError(f"moco needs at least 2 views per sample, got {views.shape[1]}")
        if self.supervised and "label" not in batch:
            raise ValueError("moco with supervised=true needs labels, but the batch has no 'label' field; "
                             "use a labelled dataset or set objective.supervised=false")
        q = F.normalize(self.head(encode_batch(encoders["x"], batch, x=views[:, 0])["embedding"]), dim=1)
        with torch.no_grad():
            k = F.normalize(self.key_head(encode_batch(self.key_encoder, batch, x=views[:, 1])["embedding"]), dim=1)
        labels = batch.get("label")
        if self.supervised:
            positive = labels[:, None] == self.queue_labels[None, :]
        else:
            positive = torch.zeros(len(q), len(self.queue), dtype=torch.bool, device=q.device)
        loss = queue_infonce(q, k, self.queue.clone(), positive, self.temperature)
        logs = {"temperature": self.temperature, **pair_stats(q, k)}
        logs["neg_sim"] = (q.detach().float() @ self.queue.T.float()).mean()
        if self.training:
            self._enqueue(k, labels)
        return {"loss": loss, **logs}

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor, labels: torch.Tensor | None) -> None:
        if labels is None:
            labels = torch.full((len(keys),), NO_LABEL, dtype=torch.long, device=keys.device)
        keys, labels = gather_no_grad(keys), gather_no_grad(labels.long())
        size = len(self.queue)
        keys, labels = keys[-size:], labels[-size:]  # more keys than slots: keep the newest
        slots = (self.queue_ptr + torch.arange(len(keys), device=keys.device)) % size
        # A non-finite key (a NaN input; an fp16 overflow) would make every later loss NaN: its
        # slot keeps the key and label it had. Elementwise, so no host sync.
        finite = keys.isfinite().all(dim=1)
        self.queue[slots] = torch.where(finite[:, None], keys.to(self.queue.dtype), self.queue[slots])
        self.queue_labels[slots] = torch.where(finite, labels, self.queue_labels[slots])
        self.queue_ptr.copy_((self.queue_ptr + len(keys)) % size)

    def on_step_end(self, encoders: dict, step: int, total_steps: int) -> None:
        """Momentum update of the key encoder and key head from the online ones, after optimizer
        step ``step`` of ``total_steps``."""
        momentum = momentum_at(self.momentum, step, total_steps, self.momentum_schedule)
        ema_update(self.key_encoder, encoders["x"], momentum)
        ema_update(self.key_head, self.head, momentum)
