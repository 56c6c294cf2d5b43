"""The online linear classifier: a probe trained beside the objective on the labels of the train batches.

``train.online_eval`` (on by default) adds an ``nn.Linear`` from the x encoder's ``embedding``
(D) to the train split's classes, with its own AdamW (``train.online_eval_lr``, no weight
decay), zero-initialized (no draw from the global RNG, so a run with it trains the encoder
exactly as a run without it). It sees ``embedding.detach()`` only: labels never reach the
encoder, its gradient never enters the model's clipping or optimizer.

What it learns from, so that it ends near the final linear probe (which standardizes frozen
train embeddings and fits to convergence; benchmarks/RESULTS.md, "Online evaluation"): the
embeddings standardized per dimension by a running mean and variance (``Standardizer``,
training/online_standardizer.py; ``train.online_eval_momentum``), the same at validation;
``train.online_eval_updates`` AdamW steps a train step, each over the rows of the last
``train.online_eval_replay`` steps (this one's and those kept, re-standardized by the current
statistics: older rows come from a slightly younger encoder). ``train/online_probe_loss`` and
``_acc`` score this step's rows before any update.

Which embedding: the one the objective's own forward already computed, caught by a forward
hook on the x encoder, when that call's input is the batch's ``x`` itself (cpc, ce, triplet,
the paired objectives), one view (moco's first), every view flattened in (B, V) order as
``objectives.parts.encode_views`` passes them (supcon, simclr, dcl, contrastive, byol, simsiam,
vicreg, barlow_twins, dino) or copies of ``x`` stacked (simcse's two dropout passes); an output
made on demand counts when it costs no new pass of the network (``LazyOutputs.ready``: the
medical patch embedding, the mean of the patch grid CPC computed). Then the probe costs a few
(N, D) x (D, K) matmuls and AdamW steps. Otherwise (ts2vec's crops, the gradient cache's chunks)
one extra forward of ``x`` without gradient in eval mode (no dropout, BatchNorm statistics
untouched, the global RNG restored), only every ``train.online_eval_extra_every`` steps, the
classifier training on those steps alone; one line says so.

Under torchrun every rank trains the probe on its own block and the probe's gradients are
averaged over ranks in their own ``all_reduce`` (the model's reduction is untouched), and the
standardization's sums are all-reduced, so every rank holds the same probe, the one one process
with the global batch would train. Its state (weights, AdamW moments, running statistics, the
rows kept for replay) is saved in ``checkpoints/last.pt`` under ``online_probe``.
"""
from __future__ import annotations

import contextlib
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from core.notes import say_once
from objectives.parts import encode_batch
from training.distributed import average_step
from training.online_standardizer import Standardizer

# AdamW's eps of the online classifier. Its inputs are standardized, so the gradient of a class absent
# from a batch (and of a bias whose class has its 1/K share of the rows) is zero up to rounding; with
# torch's 1e-8 the first step, lr * g / (|g| + eps), would move such a weight by nearly lr in the sign of
# the rounding (so 2 processes and 1 would train different classifiers). At 1e-3 it moves by about
# lr * |g| / 1e-3: nothing for rounding, while gradients well above 1e-3 keep Adam's scaling.
ADAM_EPS = 1e-3


def has_labels(train_set) -> bool:
    """Whether a split's labels can train the online (softmax) classifier: one class per item and two
    classes or more (an unlabelled user set is one class, 'unlabelled'; multi-label data has multi-hot labels)."""
    return not getattr(train_set, "multi_label", False) and len(getattr(train_set, "classes", ())) >= 2


def same_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``a`` and ``b`` read the same elements in the same order (one storage, start, shape, strides)."""
    return a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride() and a.dtype == b.dtype


def rows_and_labels(inp, output, batch: dict):
    """The (N, D) embedding and (N,) labels of one encoder call, or None when its ``embedding`` was never
    computed and cannot be had without a new pass of the network (outputs made on demand: ``LazyOutputs``,
    whose ``ready`` says so: the medical patch embedding is a mean over the patch grid CPC computed), or
    its input is none of: the batch's ``x`` (B, ...), one view ``views[:, v]`` (B, ...), or every view
    flattened in place to (B*V, ...) (row b*V + v is view v of sample b), each recognized by reading the
    very same memory; or copies of ``x`` stacked (k*B, ...), recognized by equal values (row j*B + b is
    sample b)."""
    if not isinstance(output, dict) or not torch.is_tensor(inp):
        return None
    if not dict.__contains__(output, "embedding") and not (hasattr(output, "ready") and output.ready("embedding")):
        return None
    labels, views = batch["label"], batch.get("views")
    whole = [batch["x"]] + ([views[:, v] for v in range(views.shape[1])] if views is not None else [])
    if any(same_memory(inp, c) for c in whole):
        return embedding_of(output), labels
    if views is not None and views.is_contiguous() and same_memory(inp, views.view(-1, *views.shape[2:])):
        return embedding_of(output), labels.repeat_interleave(views.shape[1])
    x = batch["x"]
    if (len(inp) % len(x) == 0 and inp.shape[1:] == x.shape[1:] and inp.dtype == x.dtype
            and all(torch.equal(block, x) for block in inp.split(len(x)))):
        return embedding_of(output), labels.repeat(len(inp) // len(x))
    return None


@torch.no_grad()
def embedding_of(output: dict) -> torch.Tensor:
    """``output["embedding"]``, detached; an output made on demand is made here without a graph."""
    return output["embedding"].detach()


class OnlineProbe:
    """The online classifier, its optimizer, its standardization and the embeddings of the current step.

    Args:
        dim: D, the encoder's ``embedding`` width; n_classes: K, the train split's classes.
        lr: AdamW learning rate (``train.online_eval_lr``).
        updates: AdamW steps on each step's rows (``train.online_eval_updates``).
        momentum: of the running mean and variance (``train.online_eval_momentum``; ``Standardizer``).
        extra_every: where the objective's forward gives no embedding of the batch (``watch``), x is
            embedded once more only on steps that are multiples of this (``train.online_eval_extra_every``);
            the classifier skips the others.

    ``seconds``: wall-clock seconds spent in the online classifier's own work since it was made (matching
    and reading the embedding, the extra forward, its steps), for benchmarks/online_eval_cost.py.
    """

    def __init__(self, dim: int, n_classes: int, lr: float, device, updates: int = 1, momentum: float = 0.1,
                 extra_every: int = 1, replay: int = 1):
        if min(updates, extra_every, replay) < 1:
            raise ValueError(f"the online classifier needs updates, extra_every and replay >= 1, got {updates}, "
                             f"{extra_every} and {replay}")
        self.linear = nn.utils.skip_init(nn.Linear, dim, n_classes, device=device)  # no RNG draw
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.bias.zero_()
        self.optimizer = torch.optim.AdamW(self.linear.parameters(), lr=lr, weight_decay=0.0, eps=ADAM_EPS, fused=True)
        self.standardize = Standardizer(dim, momentum, device)
        self.updates, self.extra_every, self.replay, self.seconds = updates, extra_every, replay, 0.0
        self.recent: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._calls: list | None = None
        self._handle = None

    def attach(self, encoder: nn.Module) -> None:
        """Hook ``encoder``'s forward; calls are recorded only inside ``watch``. Once per training session."""
        self.detach()
        self._handle = encoder.register_forward_hook(self._record, with_kwargs=True)

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _record(self, module, args, kwargs, output) -> None:
        if self._calls is not None:
            self._calls.append((args[0] if args else kwargs.get("x"), output))

    @contextlib.contextmanager
    def watch(self, encoder: nn.Module, batch: dict, context=contextlib.nullcontext, step: int = 0):
        """Around one micro-batch's forward and backward of training step ``step``: keep the embedding of
        the first hooked call that matches the batch (``rows_and_labels``), else, when ``step`` is a
        multiple of ``extra_every``, embed ``batch["x"]`` once more (eval mode, no gradient, under
        ``context()``, global RNG restored), and on other steps keep nothing."""
        self._calls = []
        try:
            yield
            began = time.perf_counter()
            found = next((r for r in (rows_and_labels(i, o, batch) for i, o in self._calls) if r is not None), None)
        finally:
            self._calls = None
        if found is None:
            say_once("online evaluation: the objective's encoder never sees the batch's x or its views whole, so "
                     "the online classifier embeds x once more (eval mode, no gradient) and trains every "
                     f"{self.extra_every} steps (train.online_eval_extra_every)")
            if step % self.extra_every == 0:
                found = self.embed_again(encoder, batch, context)
        if found is not None:
            self.seen.append((found[0].detach().float(), found[1]))
        self.seconds += time.perf_counter() - began

    @staticmethod
    @torch.no_grad()
    def embed_again(encoder: nn.Module, batch: dict, context=contextlib.nullcontext):
        """(embedding (B, D), labels (B,)) of ``batch["x"]`` in eval mode, leaving the encoder, its
        BatchNorm statistics and the global RNG as they were."""
        devices = [batch["x"].device] if batch["x"].device.type == "cuda" else []
        mode = encoder.training
        with torch.random.fork_rng(devices=devices), context():
            encoder.eval()
            try:
                embedding = encode_batch(encoder, batch)["embedding"]
            finally:
                encoder.train(mode)
        return embedding, batch["label"]

    def step(self, update: bool = True) -> dict:
        """The step's rows (the embeddings ``watch`` kept) update the running standardization, then
        ``updates`` AdamW steps of cross-entropy on them standardized, gradients averaged over ranks, when
        ``update`` (the model's step was finite) and the loss is finite; nothing changes otherwise.

        Returns:
            {"online_probe_loss", "online_probe_acc"}: 0-dim tensors, means over ranks, of the classifier
            before this step's updates (the rows are new to it: a held-out score of each train batch);
            {} on a step ``watch`` kept nothing for (``extra_every``).
        """
        began = time.perf_counter()
        try:
            return self._step(update)
        finally:
            self.seconds += time.perf_counter() - began

    def _step(self, update: bool) -> dict:
        if not self.seen:
            return {}
        embedding = torch.cat([e for e, _ in self.seen])
        labels = torch.cat([y for _, y in self.seen]).to(embedding.device)
        self.seen.clear()
        update = update and self.standardize.update(embedding)  # False on every rank alike
        kept = self.recent[-(self.replay - 1):] if self.replay > 1 else []
        rows = self.standardize(torch.cat([e for e, _ in kept] + [embedding]))
        targets = torch.cat([y for _, y in kept] + [labels])
        first = None
        for _ in range(self.updates):
            logits = self.linear(rows)
            loss = F.cross_entropy(logits, targets)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            new = logits[-len(labels):].detach()  # this step's rows: the first update's scores them before any
            scores = {"loss": F.cross_entropy(new, labels), "acc": (new.argmax(1) == labels).float().mean()}
            scalars = average_step(list(self.linear.parameters()), scores)
            first = scalars if first is None else first
            if not (update and math.isfinite(float(scalars["loss"]))):
                break
            self.optimizer.step()
        if update and self.replay > 1:
            self.recent = [*kept, (embedding, labels)]
        return {"online_probe_loss": first["loss"], "online_probe_acc": first["acc"]}

    @torch.no_grad()
    def accuracy(self, embedding: torch.Tensor, labels: torch.Tensor) -> float:
        """Fraction of rows of ``embedding`` (N, D), standardized by the running statistics, whose argmax
        class is ``labels`` (N,)."""
        logits = self.linear(self.standardize(embedding.to(self.linear.weight.device).float()))
        return (logits.argmax(1).cpu() == labels.cpu()).float().mean().item()

    def state_dict(self) -> dict:
        """Weights, AdamW state, running statistics and the rows of the steps kept for replay."""
        recent = {"rows": torch.cat([e for e, _ in self.recent]) if self.recent else torch.zeros(0),
                  "labels": torch.cat([y for _, y in self.recent]) if self.recent else torch.zeros(0, dtype=torch.long),
                  "sizes": torch.tensor([len(y) for _, y in self.recent], dtype=torch.long)}
        return {"linear": self.linear.state_dict(), "optimizer": self.optimizer.state_dict(),
                "standardize": self.standardize.state_dict(), "recent": recent}

    def load_state_dict(self, state: dict) -> bool:
        """Load ``state``; False, leaving this classifier fresh, when it was saved before the classifier
        read standardized rows (no ``standardize``: its weights fit other inputs)."""
        if "standardize" not in state:
            return False
        self.linear.load_state_dict(state["linear"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.standardize.load_state_dict(state["standardize"])
        recent, device = state["recent"], self.linear.weight.device
        sizes = recent["sizes"].tolist()
        self.recent = list(zip(recent["rows"].to(device).split(sizes), recent["labels"].to(device).split(sizes)))
        return True


def build_online_probe(cfg: dict, encoder: nn.Module, train_set, device) -> OnlineProbe | None:
    """The online classifier of ``train.online_eval``, or None when it is off or the train split has
    no labels (one line says which metrics are skipped)."""
    if not cfg["train"]["online_eval"]:
        return None
    if not has_labels(train_set):
        kind = "multi-label" if getattr(train_set, "multi_label", False) else "one class (no labels)"
        say_once(f"online evaluation: the train split is {kind}, so train/online_probe_acc, "
                 "val/online_probe_acc and val/knn_acc are skipped; val/effective_rank and val/output_std are logged")
        return None
    tc = cfg["train"]
    return OnlineProbe(encoder.dims["embedding"], len(train_set.classes), tc["online_eval_lr"], device,
                       tc["online_eval_updates"], tc["online_eval_momentum"], tc["online_eval_extra_every"],
                       tc["online_eval_replay"])
