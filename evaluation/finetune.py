"""Fine-tuning: the x encoder and a linear head trained end to end on train labels, scored once.

The end-to-end protocol self-supervised papers report beside the linear probe (SimCLR, Chen et al.
2020, section 4 and appendix B.5; MAE, He et al. 2022), with one fixed schedule for every run,
nothing chosen on the reported split (no early stopping, no pick of an epoch):

- a deep copy of the x encoder (the run's encoder, its checkpoint and export are never touched)
  with ``nn.Linear(D, C)`` on its ``embedding`` output (D = ``encoder.dims["embedding"]``);
- plain inputs ``batch["x"]`` (and ``mask``), no views or augmentation; cross-entropy on the
  train split, or on the part of it a label fraction keeps (``evaluation.label_subsets``);
- ``eval.finetune_epochs`` passes, each in a random order, batches of
  ``min(eval.finetune_batch_size, N)`` items with the last partial batch dropped (a batch of one
  would break BatchNorm); the encoder in train mode (dropout, batch statistics) while training;
- AdamW at ``eval.finetune_lr`` with weight decay ``eval.finetune_weight_decay`` on weights only
  (``training.optimizers.parameter_groups``), the learning rate following a half cosine from
  ``finetune_lr`` to 0 over all steps, no warmup; float32;
- every random draw (head init, batch order, dropout, patch jitter) from ``seed`` inside
  ``torch.random.fork_rng``: the same numbers on every call, and the caller's random stream is
  left as it was;
- then, once, accuracy on the reported split with the fine-tuned copy in eval mode
  (``finetune_acc``).

From the random initialization (the floor) this is supervised training from scratch on the same
schedule. Single-label data only.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from core.errors import UserError
from evaluation.label_subsets import fraction_key, stratified_subset
from objectives.parts import encode_batch
from training.data import eval_loader, to_device
from training.optimizers import parameter_groups


def check_schedule(ev: dict) -> None:
    """Raises UserError for ``eval.finetune_*`` settings out of range: epochs and batch size must be
    integers of at least 1 and 2, the learning rate positive, the weight decay at least 0."""
    for key, least in (("finetune_epochs", 1), ("finetune_batch_size", 2)):
        if not isinstance(ev[key], int) or isinstance(ev[key], bool) or ev[key] < least:
            raise UserError(f"eval.{key} must be an integer of at least {least}, got {ev[key]!r}")
    lr, decay = ev["finetune_lr"], ev["finetune_weight_decay"]
    if not (is_number(lr) and lr > 0 and is_number(decay) and decay >= 0):
        raise UserError(f"eval.finetune_lr must be positive and eval.finetune_weight_decay at least 0, got "
                        f"{lr!r} and {decay!r}")


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def cuda_devices(device) -> list:
    """The devices ``torch.random.fork_rng`` should fork besides the CPU: ``device`` when it is CUDA."""
    return [device] if torch.device(device).type == "cuda" else []


class FineTuned(nn.Module):
    """A copy of an encoder and a linear head: ``forward(batch)`` -> logits (B, C)."""

    def __init__(self, encoder: nn.Module, n_classes: int, generator: torch.Generator):
        super().__init__()
        self.encoder = copy.deepcopy(encoder)
        dim = self.encoder.dims["embedding"]
        self.head = nn.Linear(dim, n_classes)
        bound = 1 / math.sqrt(dim)  # nn.Linear's own init, drawn from ``generator``
        with torch.no_grad():
            self.head.weight.uniform_(-bound, bound, generator=generator)
            self.head.bias.uniform_(-bound, bound, generator=generator)

    def forward(self, batch: dict) -> torch.Tensor:
        return self.head(encode_batch(self.encoder, batch)["embedding"].float())


def fit_finetuned(encoder: nn.Module, train_set, indices: torch.Tensor, n_classes: int, ev: dict, seed: int,
                  device) -> FineTuned:
    """Fine-tune a copy of ``encoder`` on the items ``indices`` ((N,) long positions) of ``train_set``
    with the ``eval.finetune_*`` schedule (module docstring); returns the copy and its head, in eval mode.

    Raises:
        UserError: fewer than 2 items to train on.
    """
    if len(indices) < 2:
        raise UserError(f"fine-tuning needs at least 2 labelled train items, got {len(indices)}")
    batch_size = min(ev["finetune_batch_size"], len(indices))
    steps = ev["finetune_epochs"] * (len(indices) // batch_size)
    with torch.random.fork_rng(devices=cuda_devices(device)), torch.enable_grad():
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        model = FineTuned(encoder, n_classes, generator).to(device).float().train()
        optimizer = torch.optim.AdamW(parameter_groups(model, ev["finetune_weight_decay"]), lr=ev["finetune_lr"])
        cosine = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
        for _ in range(ev["finetune_epochs"]):
            order = indices[torch.randperm(len(indices), generator=generator)].tolist()
            for batch in DataLoader(train_set, batch_size=batch_size, sampler=order, drop_last=True):
                batch = to_device(batch, device)
                loss = F.cross_entropy(model(batch), batch["label"])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                cosine.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: FineTuned, dataset, batch_size: int, device) -> float:
    """Accuracy in [0, 1] of ``model`` (in eval mode) on every item of ``dataset``, in one in-order pass."""
    correct = total = 0
    for batch in eval_loader(dataset, batch_size):
        batch = to_device(batch, device)
        correct += int((model(batch).argmax(1) == batch["label"]).sum())
        total += len(batch["label"])
    return correct / total


def finetune_report(encoder: nn.Module, train_set, report_set, train_labels: torch.Tensor, n_classes: int,
                    ev: dict, seed: int, device) -> dict:
    """``finetune_acc`` and, for each fraction f of ``eval.label_fractions``, ``finetune_acc@<f>%``:
    fine-tuning on the stratified subset of the train labels (``train_labels`` (N,) long, in the
    order of ``train_set``), scored on ``report_set``. Every fine-tuning finishes before the first
    item of ``report_set`` is read, which is then read once per fine-tuned model. A subset that is
    the whole train split (f = 1) takes the number of the full run instead of training it again."""
    everything = torch.arange(len(train_set))
    subsets = {"finetune_acc": everything}
    for fraction in ev["label_fractions"] or ():
        subsets[fraction_key("finetune_acc", fraction)] = stratified_subset(train_labels, fraction, seed)
    fitted, same = {}, {}
    with torch.random.fork_rng(devices=cuda_devices(device)):  # a DataLoader draws its base seed from it
        for key, rows in subsets.items():
            if key != "finetune_acc" and torch.equal(rows, everything):
                same[key] = "finetune_acc"
            else:
                fitted[key] = fit_finetuned(encoder, train_set, rows, n_classes, ev, seed, device)
        out = {key: accuracy(model, report_set, ev["batch_size"], device) for key, model in fitted.items()}
    return {key: out[same.get(key, key)] for key in subsets}
