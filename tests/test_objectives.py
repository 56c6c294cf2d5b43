"""Objective modules: registration, configs, gradients to every parameter, wiring
to the functional losses (also against hand-computed values), MoCo's queue and
momentum (see test_moco.py), CLAP's clamp, triplet mining and CE accuracy.

Encoders here are tiny real modules: a Linear on the flattened (masked) input,
and a text encoder hashing words into an EmbeddingBag.
"""
from __future__ import annotations

import inspect
import math
import zlib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

import objectives  # noqa: F401  (registers every objective)
from core import registry
from objectives.functional import clip_loss, convirt_loss, siglip_loss
from objectives.parts import encode_views
from objectives.triplet import mine_triplets

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "objectives"
OBJECTIVES = [n for n in registry.names("objective") if n != "cpc"]
NEEDS = {
    "supcon": {"views", "label", "embedding"}, "simclr": {"views", "embedding"}, "moco": {"views", "embedding"},
    "triplet": {"label", "embedding"}, "ce": {"label", "embedding"}, "vicreg": {"views", "embedding"},
    "clap": {"text", "embedding"}, "convirt": {"text", "embedding"}, "siglip": {"text", "embedding"},
    "byol": {"views", "embedding"}, "simsiam": {"views", "embedding"}, "barlow_twins": {"views", "embedding"},
    "dcl": {"views", "embedding"}, "ts2vec": {"series", "sequence"}, "contrastive": {"views", "embedding"},
    "simcse": {"embedding"}, "dino": {"views", "embedding"},
}

# Frozen momentum copies: (objective, attribute) pairs whose parameters take no gradient.
MOMENTUM_COPIES = {("moco", "key_encoder"), ("moco", "key_head"), ("byol", "target_encoder"),
                   ("byol", "target_projector"), ("dino", "teacher_encoder"), ("dino", "teacher_head")}
# Objectives whose head starts with batch normalization of the encoder's output (their papers' heads).
BATCH_NORM_FIRST = {"vicreg", "barlow_twins", "byol", "simsiam", "dino"}


class TinyEncoder(nn.Module):
    """Linear on the flattened (N, C, T) input; time steps where mask is False are zeroed.
    ``dropout``: on the input in training (simcse refuses an encoder without dropout)."""

    def __init__(self, in_dim: int = 10, dim: int = 8, dropout: float = 0.0):
        super().__init__()
        self.linear = nn.Linear(in_dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.dims = {"embedding": dim}

    def forward(self, x, mask=None):
        if mask is not None:
            assert mask.shape == (x.shape[0], x.shape[-1]), "mask does not match x"
            x = x * mask[:, None, :]
        return {"embedding": self.linear(self.dropout(x.flatten(1)))}


class TinySequenceEncoder(nn.Module):
    """A per-step Linear over the channels of (N, C, T): sequence (N, T, dim), masked steps zeroed;
    embedding their mean (for objectives that need ``sequence``)."""

    def __init__(self, channels: int = 2, dim: int = 8):
        super().__init__()
        self.linear = nn.Linear(channels, dim)
        self.dims = {"embedding": dim, "sequence": dim}

    def forward(self, x, mask=None):
        seq = self.linear(x.transpose(1, 2))
        if mask is not None:
            assert mask.shape == (x.shape[0], x.shape[-1]), "mask does not match x"
            seq = seq * mask[..., None]
        return {"sequence": seq, "embedding": seq.mean(dim=1)}


def bucket(word: str, buckets: int = 64) -> int:
    return zlib.crc32(word.encode()) % buckets


class TinyText(nn.Module):
    """Mean of hashed word embeddings."""

    def __init__(self, dim: int = 6, buckets: int = 64):
        super().__init__()
        self.bag = nn.EmbeddingBag(buckets, dim, mode="mean")
        self.buckets, self.dims = buckets, {"embedding": dim}

    def forward(self, texts):
        ids, offsets = [], []
        for text in texts:
            offsets.append(len(ids))
            ids.extend(bucket(w, self.buckets) for w in text.split())
        return {"embedding": self.bag(torch.tensor(ids), torch.tensor(offsets))}


def make_batch(B=8, V=2, C=2, T=5, n_classes=3, seed=0, mask=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, C, T, generator=g)
    labels = torch.arange(B) % n_classes
    batch = {"x": x, "views": x[:, None] + 0.3 * torch.randn(B, V, C, T, generator=g), "label": labels,
             "text": [f"a sound of class {int(c)} number {i} {'loud' if i % 2 else 'quiet'}"
                      for i, c in enumerate(labels)]}
    if mask:
        lengths = torch.randint(2, T + 1, (B,), generator=g)
        lengths[0] = T
        batch["mask"] = torch.arange(T)[None, :] < lengths[:, None]
    return batch


def yaml_options(name: str) -> dict:
    return yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())["objective"]


def build(name: str, encoders=None, n_classes=3, **options):
    """(encoders, objective); ``n_classes`` and ``encoder_name`` reach only objectives that take them
    (ce; simcse), as in training.build."""
    encoders = encoders or make_encoders(name)
    params = inspect.signature(registry.get("objective", name).factory).parameters
    if "n_classes" in params:
        options["n_classes"] = n_classes
    if "encoder_name" in params:
        options["encoder_name"] = "tiny"
    return encoders, registry.build("objective", name, encoders=encoders, **options)


def make_encoders(name: str) -> dict:
    needs = registry.get("objective", name).capabilities
    if "sequence" in needs:
        encoders = {"x": TinySequenceEncoder()}
    else:
        encoders = {"x": TinyEncoder(dropout=0.1 if name == "simcse" else 0.0)}
    if "text" in needs:
        encoders["text"] = TinyText()
    return encoders


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def test_every_expected_objective_is_registered_with_its_needs():
    assert set(NEEDS) <= set(OBJECTIVES)
    for name, needs in NEEDS.items():
        assert registry.get("objective", name).capabilities == needs, name


@pytest.mark.parametrize("name", registry.names("objective"))
def test_yaml_defaults_equal_constructor_defaults(name):
    params = inspect.signature(registry.get("objective", name).factory).parameters
    defaults = {k: p.default for k, p in params.items() if k not in ("encoders", "n_classes", "encoder_name")}
    options = yaml_options(name)
    assert options == defaults
    assert {k: type(v) for k, v in options.items()} == {k: type(v) for k, v in defaults.items()}


@pytest.mark.parametrize("name", OBJECTIVES)
def test_finite_loss_and_scalars_and_gradient_to_every_parameter(name):
    encoders, objective = build(name, **yaml_options(name))
    out = objective(encoders, make_batch())
    assert out["loss"].dim() == 0 and torch.isfinite(out["loss"])
    for key, value in out.items():
        assert math.isfinite(float(torch.as_tensor(value).detach())), key
    out["loss"].backward()
    modules = {**encoders, "objective": objective}
    trainable = [(f"{m}.{n}", p) for m, mod in modules.items() for n, p in mod.named_parameters() if p.requires_grad]
    assert trainable
    for pname, p in trainable:
        if name in BATCH_NORM_FIRST and pname == "x.linear.bias":
            # Batch norm right after the encoder removes any constant shift of its output: by
            # construction this bias gets no gradient (as in the papers' heads), up to rounding.
            assert p.grad.abs().max() < 1e-5 * encoders["x"].linear.weight.grad.abs().max(), name
            continue
        assert p.grad is not None and p.grad.abs().max() > 1e-7, f"{name}: no gradient reaches {pname}"
    for pname, p in objective.named_parameters():
        if not p.requires_grad:
            assert (name, pname.split(".")[0]) in MOMENTUM_COPIES and p.grad is None, pname


def test_encode_views_repeats_the_mask_per_view():
    encoder, batch = TinyEncoder(), make_batch(B=4, V=3)
    together = encode_views(encoder, batch)
    assert together.shape == (4, 3, 8)
    for v in range(3):
        alone = encoder(batch["views"][:, v], mask=batch["mask"])["embedding"]
        torch.testing.assert_close(together[:, v], alone)


# ---- paired objectives: the functional losses on the module's own projections


def projections(objective, encoders, batch):
    a = objective.x_head(encoders["x"](batch["x"], mask=batch.get("mask"))["embedding"])
    return a, objective.text_head(encoders["text"](batch["text"])["embedding"])


def paired_functional_loss(name, objective, a, b):
    """The paired objective's loss at its default settings, from functional.py."""
    if name == "clap":
        return clip_loss(a, b, math.exp(objective.log_logit_scale.item()))
    if name == "convirt":
        return convirt_loss(a, b, temperature=0.1, lam=0.75)
    return siglip_loss(a, b, 10.0, -10.0)


@pytest.mark.parametrize("name", ["clap", "convirt", "siglip"])
def test_paired_loss_equals_functional_loss_on_projections(name):
    encoders, objective = build(name, proj_dim=16)
    batch = make_batch()  # it has views: without augment_x they are ignored
    out = objective(encoders, batch)
    a, b = projections(objective, encoders, batch)
    torch.testing.assert_close(out["loss"], paired_functional_loss(name, objective, a, b))


@pytest.mark.parametrize("name", ["clap", "convirt", "siglip"])
def test_augment_x_trains_on_the_first_view_while_embed_x_reads_x(name):
    encoders, objective = build(name, proj_dim=16, augment_x=True)
    batch = make_batch(V=1)
    view = dict(batch, x=batch["views"][:, 0])
    a, b = projections(objective, encoders, view)
    torch.testing.assert_close(objective(encoders, batch)["loss"], paired_functional_loss(name, objective, a, b))
    on_x, _ = projections(objective, encoders, batch)
    torch.testing.assert_close(objective.embed_x(encoders, batch), on_x)  # evaluation's path: x itself
    assert not torch.allclose(on_x, a)
    without_views = {k: v for k, v in batch.items() if k != "views"}  # a batch without views: x
    a_x, b_x = projections(objective, encoders, without_views)
    torch.testing.assert_close(objective(encoders, without_views)["loss"],
                               paired_functional_loss(name, objective, a_x, b_x))


def hand_case(name, **options):
    """Identity encoder and heads: signal rows e1, e2; both texts embed to e1."""
    x_encoder, text_encoder = TinyEncoder(in_dim=2, dim=2), TinyText(dim=2)
    with torch.no_grad():
        x_encoder.linear.weight.copy_(torch.eye(2))
        x_encoder.linear.bias.zero_()
        text_encoder.bag.weight.zero_()
        for word in ("alpha", "beta"):
            text_encoder.bag.weight[bucket(word)] = torch.tensor([1.0, 0.0])
    encoders = {"x": x_encoder, "text": text_encoder}
    _, objective = build(name, encoders, **options)
    objective.x_head, objective.text_head = nn.Identity(), nn.Identity()
    batch = {"x": torch.eye(2).reshape(2, 1, 2), "text": ["alpha", "beta"], "label": torch.tensor([0, 1])}
    return objective(encoders, batch)


def softplus(v: float) -> float:
    return math.log1p(math.exp(v))


def test_hand_computed_paired_losses():
    # Similarities a.b: [[1, 1], [0, 0]]. CE of a row with logits (l0, l1), target t: log(e^l0 + e^l1) - l_t.
    s = 1 / 0.07
    a_to_b = math.log(2)  # both rows have equal logits
    b_to_a = (softplus(-s) + softplus(s)) / 2  # both columns are (s, 0); targets 0 then 1
    clap = hand_case("clap")
    assert clap["loss"].item() == pytest.approx((a_to_b + b_to_a) / 2, rel=1e-5)
    assert (clap["pos_sim"], clap["neg_sim"], clap["retrieval_acc"]) == (0.5, 0.5, 0.5)

    convirt = hand_case("convirt")
    expected = 0.75 * math.log(2) + 0.25 * (softplus(-10) + softplus(10)) / 2
    assert convirt["loss"].item() == pytest.approx(expected, rel=1e-5)

    # SigLIP logits 10 * sim - 10: [[0, 0], [-10, -10]]; z = +1 on the diagonal.
    siglip = hand_case("siglip")
    expected = (softplus(-0.0) + softplus(0.0) + softplus(-10) + softplus(10)) / 2
    assert siglip["loss"].item() == pytest.approx(expected, rel=1e-5)


def test_clap_logit_scale_is_clamped_at_100():
    encoders, objective = build("clap", proj_dim=16)
    with torch.no_grad():
        objective.log_logit_scale.fill_(10.0)  # exp(10) ~ 22026
    batch = make_batch()
    out = objective(encoders, batch)
    assert float(out["logit_scale"]) == pytest.approx(100.0)
    a, b = projections(objective, encoders, batch)
    torch.testing.assert_close(out["loss"], clip_loss(a, b, 100.0))


# ---- triplet and CE


def identity_encoder(dim):
    encoder = TinyEncoder(in_dim=dim, dim=dim)
    with torch.no_grad():
        encoder.linear.weight.copy_(torch.eye(dim))
        encoder.linear.bias.zero_()
    return encoder


def test_batch_hard_triplet_matches_a_loop_and_skips_anchors_without_pairs():
    z = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.3], [-1.0, 0.2], [0.6, 0.8]]), dim=1)
    labels = torch.tensor([0, 0, 1, 2, 0])
    encoders = {"x": identity_encoder(2)}
    _, triplet = build("triplet", encoders, margin=0.5)
    triplet.head = nn.Identity()
    out = triplet(encoders, {"x": z[:, None, :], "label": labels})
    terms = []
    for i in range(len(z)):
        d = [float((z[i] - z[j]).norm()) for j in range(len(z))]
        pos = [d[j] for j in range(len(z)) if j != i and labels[j] == labels[i]]
        neg = [d[j] for j in range(len(z)) if labels[j] != labels[i]]
        if pos and neg:
            terms.append(max(0.0, max(pos) - min(neg) + 0.5))
    assert len(terms) == 3  # anchors 2 and 3 have no positive
    assert out["loss"].item() == pytest.approx(sum(terms) / len(terms), rel=1e-5)
    assert out["valid_frac"] == pytest.approx(3 / 5)


def test_triplet_without_usable_anchor_is_zero_not_nan():
    encoders, triplet = build("triplet")
    batch = make_batch(B=3, n_classes=3)  # every label unique
    out = triplet(encoders, batch)
    assert out["loss"].item() == 0.0
    out["loss"].backward()
    assert torch.isfinite(encoders["x"].linear.weight.grad).all()


def test_random_mining_picks_valid_triplets():
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 3, 0])
    z = torch.randn(8, 4)
    for _ in range(20):
        a, p, n = mine_triplets(z, labels, "random")
        assert a.tolist() == [0, 1, 2, 3, 4, 7]
        assert (labels[p] == labels[a]).all() and (p != a).all() and (labels[n] != labels[a]).all()


def test_ce_accuracy_matches_a_hand_count():
    encoders = {"x": identity_encoder(3)}
    _, ce = build("ce", encoders, n_classes=3)
    with torch.no_grad():
        ce.head.weight.copy_(torch.eye(3))
        ce.head.bias.zero_()
    x = torch.tensor([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
    labels = torch.tensor([0, 0, 0, 2])  # predictions 0, 1, 0, 2: three right
    out = ce(encoders, {"x": x[:, None, :], "label": labels})
    assert float(out["acc"]) == 0.75
    expected = sum(math.log(sum(math.exp(v) for v in row)) - row[c] for row, c in zip(x.tolist(), labels)) / 4
    assert out["loss"].item() == pytest.approx(expected, rel=1e-5)


def test_dcl_without_prior_or_hardness_is_simclr_exactly():
    batch = make_batch(B=6, seed=7)
    losses = {}
    for name, options in (("simclr", {"temperature": 0.5}), ("dcl", {"temperature": 0.5, "tau_plus": 0.0, "beta": 0.0})):
        torch.manual_seed(3)
        encoders, objective = build(name, **options)
        losses[name] = objective(encoders, batch)["loss"]
    torch.testing.assert_close(losses["dcl"], losses["simclr"], rtol=1e-6, atol=1e-7)

