"""TS2Vec: its three losses against float64 loop references and analytic values, the crops,
the encoder's timestamp masking and pooling, the capability matrix, and two gloo ranks
against one process."""
import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import modalities  # noqa: F401  (registers)
import objectives  # noqa: F401
from core import config as config_lib
from core import registry
from core.errors import UserError
from objectives import functional as L
from objectives import ts2vec as T2V
from training.compatibility import capability_matrix


# ---- loop references: plain Python floats, one score at a time

def dot(u, v):
    return sum(a * b for a, b in zip(u, v))


def nll(scores, positive):
    """-log softmax(scores)[positive] with the max subtracted."""
    top = max(scores)
    return top + math.log(sum(math.exp(s - top) for s in scores)) - scores[positive]


def ref_instance(z1, z2):
    B, T = len(z1), len(z1[0])
    if B == 1:
        return 0.0
    terms = []
    for t in range(T):
        rows = [z1[i][t] for i in range(B)] + [z2[i][t] for i in range(B)]
        for a in range(2 * B):
            others = [c for c in range(2 * B) if c != a]
            positive = others.index(a + B if a < B else a - B)
            terms.append(nll([dot(rows[a], rows[c]) for c in others], positive))
    return sum(terms) / len(terms)


def ref_temporal(z1, z2):
    B, T = len(z1), len(z1[0])
    if T == 1:
        return 0.0
    terms = []
    for i in range(B):
        steps = z1[i] + z2[i]
        for a in range(2 * T):
            others = [c for c in range(2 * T) if c != a]
            positive = others.index(a + T if a < T else a - T)
            terms.append(nll([dot(steps[a], steps[c]) for c in others], positive))
    return sum(terms) / len(terms)


def ref_pool(z):
    return [[[max(s[2 * k][d], s[2 * k + 1][d]) for d in range(len(s[0]))] for k in range(len(s) // 2)] for s in z]


def ref_hierarchical(z1, z2, alpha=0.5, temporal_unit=0):
    """Returns (loss, number of levels)."""
    total, level = 0.0, 0
    while True:
        total += alpha * ref_instance(z1, z2)
        if len(z1[0]) > 1 and level >= temporal_unit:
            total += (1 - alpha) * ref_temporal(z1, z2)
        level += 1
        if len(z1[0]) == 1:
            return total / level, level
        z1, z2 = ref_pool(z1), ref_pool(z2)


def pair(B, T, D, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, D, generator=g, dtype=torch.float64), torch.randn(B, T, D, generator=g,
                                                                              dtype=torch.float64)


SHAPES = [(3, 8, 4), (2, 5, 3), (1, 6, 2), (4, 1, 3), (2, 7, 2)]


@pytest.mark.parametrize("B, T, D", SHAPES)
def test_instance_and_temporal_terms_equal_loop_references(B, T, D):
    z1, z2 = pair(B, T, D, seed=B * 100 + T)
    assert L.instance_contrastive_loss(z1, z2).item() == pytest.approx(ref_instance(z1.tolist(), z2.tolist()), rel=1e-9)
    assert L.temporal_contrastive_loss(z1, z2).item() == pytest.approx(ref_temporal(z1.tolist(), z2.tolist()), rel=1e-9)


@pytest.mark.parametrize("B, T, D", SHAPES)
@pytest.mark.parametrize("alpha, temporal_unit", [(0.5, 0), (0.3, 1), (0.0, 0), (1.0, 0)])
def test_hierarchical_loss_equals_loop_reference(B, T, D, alpha, temporal_unit):
    z1, z2 = pair(B, T, D, seed=T * 10 + D)
    expected, _ = ref_hierarchical(z1.tolist(), z2.tolist(), alpha, temporal_unit)
    got = L.hierarchical_contrastive_loss(z1, z2, alpha, temporal_unit).item()
    assert got == pytest.approx(expected, rel=1e-9)


def test_float32_inputs_match_the_float64_reference():
    z1, z2 = pair(3, 8, 4, seed=5)
    expected, _ = ref_hierarchical(z1.tolist(), z2.tolist())
    got = L.hierarchical_contrastive_loss(z1.float(), z2.float())
    assert got.dtype == torch.float32 and got.item() == pytest.approx(expected, rel=1e-5)


def test_eight_steps_give_four_levels_of_known_terms():
    # All scores 0: each instance term is log(2B - 1), each temporal term log(2T_level - 1).
    B = 2
    z = torch.zeros(B, 8, 3, dtype=torch.float64)
    _, levels = ref_hierarchical(z.tolist(), z.tolist())
    assert levels == 4  # lengths 8, 4, 2, 1
    instance = 0.5 * math.log(3)
    expected = (4 * instance + 0.5 * (math.log(15) + math.log(7) + math.log(3))) / 4
    assert L.hierarchical_contrastive_loss(z, z.clone()).item() == pytest.approx(expected, rel=1e-12)
    expected_unit2 = (4 * instance + 0.5 * math.log(3)) / 4  # temporal only at level 2 (length 2)
    assert L.hierarchical_contrastive_loss(z, z.clone(), temporal_unit=2).item() == pytest.approx(expected_unit2)


def test_hand_computed_two_series_one_step():
    # Rows at the one timestamp: a=1, b=0 (view 1), c=1, d=0 (view 2); positives a<->c, b<->d.
    z1 = torch.tensor([[[1.0]], [[0.0]]], dtype=torch.float64)
    z2 = z1.clone()
    row_one = math.log(math.e + 2) - 1  # a: scores ab=0, ac=1, ad=0, positive c (the same for c)
    row_zero = math.log(3)               # b: every score 0 (the same for d)
    instance = (2 * row_one + 2 * row_zero) / 4
    assert L.instance_contrastive_loss(z1, z2).item() == pytest.approx(instance, rel=1e-12)
    assert L.temporal_contrastive_loss(z1, z2).item() == 0.0
    assert L.hierarchical_contrastive_loss(z1, z2, alpha=0.5).item() == pytest.approx(0.5 * instance, rel=1e-12)


def test_one_series_has_no_instance_term_and_one_step_no_temporal_term():
    z1, z2 = pair(1, 6, 3, seed=0)
    assert L.instance_contrastive_loss(z1, z2).item() == 0.0
    assert L.temporal_contrastive_loss(z1, z2).item() > 0
    z1, z2 = pair(4, 1, 3, seed=1)
    assert L.temporal_contrastive_loss(z1, z2).item() == 0.0
    assert L.instance_contrastive_loss(z1, z2).item() > 0


@pytest.mark.parametrize("loss", [L.instance_contrastive_loss, L.temporal_contrastive_loss,
                                  L.hierarchical_contrastive_loss])
def test_shape_mismatch_is_a_value_error(loss):
    with pytest.raises(ValueError, match="equal shape"):
        loss(torch.randn(2, 5, 3), torch.randn(2, 4, 3))
    with pytest.raises(ValueError, match="equal shape"):
        loss(torch.randn(2, 5), torch.randn(2, 5))


def test_hierarchical_loss_gradcheck():
    z1, z2 = pair(2, 5, 3, seed=9)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: L.hierarchical_contrastive_loss(a, b), (z1, z2))


# ---- crops


class TimeIndex(nn.Module):
    """An encoder whose sequence is its input (B, C, T) -> (B, T, C), optionally average-pooled by ``factor``."""

    def __init__(self, channels=2, factor=1):
        super().__init__()
        self.factor, self.dims = factor, {"embedding": channels, "sequence": channels}

    def forward(self, x, mask=None):
        self.seen_mask = mask
        seq = nn.functional.avg_pool1d(x, self.factor) if self.factor > 1 else x
        return {"sequence": seq.transpose(1, 2), "embedding": seq.mean(-1)}


def stamped(B, T):
    """x[b, 0, t] = t, x[b, 1, t] = 1000 b: each value names its series and input timestamp."""
    t = torch.arange(T, dtype=torch.float64)
    return torch.stack([t.expand(B, T), 1000.0 * torch.arange(B, dtype=torch.float64)[:, None].expand(B, T)], dim=1)


def captured_overlaps(monkeypatch, encoder, batch, draws, **options):
    seen = []
    monkeypatch.setattr(T2V, "hierarchical_contrastive_loss", lambda z1, z2, *a: seen.append((z1, z2)) or z1.sum())
    objective = registry.build("objective", "ts2vec", encoders={"x": encoder}, **options)
    for _ in range(draws):
        objective({"x": encoder}, batch)
    return seen


def test_the_overlap_pairs_the_same_input_timestamps(monkeypatch):
    torch.manual_seed(0)
    B, T = 5, 40
    seen = captured_overlaps(monkeypatch, TimeIndex(), {"x": stamped(B, T)}, draws=60)
    lengths = set()
    for z1, z2 in seen:
        assert torch.equal(z1, z2)
        assert torch.equal(z1[..., 1], 1000.0 * torch.arange(B, dtype=torch.float64)[:, None].expand_as(z1[..., 1]))
        steps = z1[..., 0]
        assert torch.equal(steps - steps[:, :1], torch.arange(steps.shape[1], dtype=torch.float64).expand_as(steps))
        assert steps.min() >= 0 and steps.max() <= T - 1
        lengths.add(steps.shape[1])
    assert min(lengths) >= 2 and len(lengths) > 10  # crop_l ~ U{2, T}: many lengths
    offsets = {tuple(z1[:, 0, 0].tolist()) for z1, _ in seen}
    assert len(offsets) > 40  # per-series offsets vary


def test_crops_stay_within_each_series_real_span_and_carry_the_mask(monkeypatch):
    torch.manual_seed(1)
    T = 30
    mask = torch.zeros(3, T, dtype=torch.bool)
    mask[0, :] = True
    mask[1, 4:20] = True
    mask[1, 10] = False  # a missing step inside: kept, masked
    mask[2, :12] = True
    encoder = TimeIndex()
    seen = captured_overlaps(monkeypatch, encoder, {"x": stamped(3, T), "mask": mask}, draws=40)
    for z1, z2 in seen:
        assert torch.equal(z1, z2) and z1.shape[1] <= 12  # the shortest span (series 2: 12 steps)
        steps = z1[..., 0]
        assert steps[1].min() >= 4 and steps[1].max() <= 19 and steps[2].max() <= 11
    assert encoder.seen_mask is not None and encoder.seen_mask.dtype == torch.bool


def test_downsampling_encoder_overlap_is_proportional_and_nearly_aligned(monkeypatch):
    torch.manual_seed(2)
    seen = captured_overlaps(monkeypatch, TimeIndex(factor=4), {"x": stamped(4, 64)}, draws=60, min_crop=8)
    for z1, z2 in seen:
        assert z1.shape == z2.shape and z1.shape[1] >= 1
        assert (z1[..., 0] - z2[..., 0]).abs().max() <= 5  # within about one encoder step (4 inputs)


def test_max_train_length_cuts_spans_to_random_windows():
    torch.manual_seed(3)
    mask = torch.ones(4, 50, dtype=torch.bool)
    mask[1, 30:] = False
    start, end = T2V.real_spans(torch.zeros(4, 1, 50), mask, max_train_length=20)
    assert ((end - start) == 20).all() and (start >= 0).all() and end[1] <= 30 and (end <= 50).all()
    starts = {tuple(T2V.real_spans(torch.zeros(4, 1, 50), None, 20)[0].tolist()) for _ in range(10)}
    assert len(starts) > 1


def test_objective_refuses_images_and_series_without_a_real_step():
    objective = registry.build("objective", "ts2vec", encoders={"x": TimeIndex()})
    with pytest.raises(UserError, match=r"\(B, C, T\)"):
        objective({"x": TimeIndex()}, {"x": torch.randn(2, 1, 8, 8)})
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[1] = False
    with pytest.raises(UserError, match="no real step"):
        objective({"x": TimeIndex()}, {"x": torch.randn(2, 2, 8), "mask": mask})


def test_objective_uses_the_encoder_context_when_it_has_one():
    tcn = registry.build("encoder", "tcn", in_channels=1, width=8, depth=2)
    assert registry.build("objective", "ts2vec", encoders={"x": tcn}).output == "context"
    gru = registry.build("encoder", "gru", in_channels=1, hidden=8)
    assert registry.build("objective", "ts2vec", encoders={"x": gru}).output == "sequence"


def test_same_seed_same_loss_and_every_parameter_learns():
    encoder = registry.build("encoder", "ts2vec", in_channels=2, hidden=8, out_dim=8, depth=2)
    objective = registry.build("objective", "ts2vec", encoders={"x": encoder})
    x = torch.randn(6, 2, 32)
    losses = []
    for _ in range(2):
        torch.manual_seed(4)
        out = objective({"x": encoder}, {"x": x})
        losses.append(out["loss"])
    assert torch.equal(losses[0], losses[1]) and torch.isfinite(losses[0])
    assert 2 <= out["crop_len"] <= 32 and out["overlap_steps"] == out["crop_len"] and 0 <= out["instance_acc"] <= 1
    losses[0].backward()
    for name, p in encoder.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# ---- the encoder


def first_block_input(encoder, x, mask=None):
    seen = []
    handle = encoder.blocks[0].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    encoder(x, mask)
    handle.remove()
    return seen[0]  # (B, hidden, T)


@pytest.mark.parametrize("mask_p", [0.5, 0.2])
def test_timestamp_masking_rate_in_training_and_none_in_eval(mask_p):
    torch.manual_seed(5)
    encoder = registry.build("encoder", "ts2vec", in_channels=2, hidden=8, out_dim=8, depth=1, mask_p=mask_p)
    x = torch.randn(64, 2, 200)
    zeroed = (first_block_input(encoder, x) == 0).all(dim=1)  # (B, T): whole latent vector zero
    assert abs(zeroed.float().mean().item() - mask_p) < 0.02  # 12800 draws: 3 sigma < 0.013
    encoder.eval()
    assert not (first_block_input(encoder, x) == 0).all(dim=1).any()


def test_padding_is_zeroed_also_in_eval():
    encoder = registry.build("encoder", "ts2vec", in_channels=2, hidden=8, out_dim=8, depth=1).eval()
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[0, 6:] = False
    h = first_block_input(encoder, torch.randn(2, 2, 10), mask)
    assert (h[0, :, 6:] == 0).all() and not (h[0, :, :6] == 0).all(dim=0).any()


def test_encoder_shapes_and_embedding_is_the_max_over_real_steps():
    torch.manual_seed(6)
    encoder = registry.build("encoder", "ts2vec", in_channels=3).eval()
    assert encoder.dims == {"embedding": 128, "sequence": 128}
    x = torch.randn(3, 3, 50)
    x[0, :, 30:] = 1e3  # garbage in the padding
    mask = torch.ones(3, 50, dtype=torch.bool)
    mask[0, 30:] = False
    mask[2] = False
    with torch.no_grad():
        out = encoder(x, mask)
        alone = encoder(x[:1, :, :30])
    assert out["sequence"].shape == (3, 50, 128) and out["embedding"].shape == (3, 128)
    torch.testing.assert_close(out["embedding"][0], out["sequence"][0, :30].amax(dim=0))
    torch.testing.assert_close(out["embedding"][1], out["sequence"][1].amax(dim=0))
    torch.testing.assert_close(out["embedding"][0], alone["embedding"][0], atol=1e-5, rtol=1e-5)
    assert (out["embedding"][2] == 0).all() and (out["sequence"][0, 30:] == 0).all()


def test_encoder_is_not_causal_and_keeps_the_time_resolution():
    torch.manual_seed(7)
    encoder = registry.build("encoder", "ts2vec", in_channels=1, depth=2).eval()
    x = torch.randn(1, 1, 33)
    later = x.clone()
    later[..., 20:] += 1.0
    with torch.no_grad():
        a, b = encoder(x)["sequence"], encoder(later)["sequence"]
    assert a.shape[1] == 33 and not torch.allclose(a[:, 19], b[:, 19])  # step 19 sees step 20


# ---- registry, configs, matrix


def test_capability_matrix_says_why_ts2vec_cannot_crop_images():
    cells = capability_matrix()
    assert cells["audio", "ts2vec"] == [] and cells["sequence", "ts2vec"] == []
    assert cells["medical", "ts2vec"] == ["series"]
    assert registry.get("objective", "ts2vec").capabilities == {"series", "sequence"}


def test_sequence_defaults_to_the_ts2vec_encoder_and_audio_raises_the_shortest_crop():
    assert config_lib.load_config("sequence", "ts2vec")["model"]["encoder"] == "ts2vec"
    assert config_lib.load_config("sequence", "simclr")["model"]["encoder"] == "tcn"
    audio = config_lib.load_config("audio", "ts2vec")
    assert audio["model"]["encoder"] == "cpc_wave" and audio["objective"]["min_crop"] == 1600
    assert config_lib.load_config("sequence", "ts2vec", overrides=["model.encoder=gru"])["model"]["encoder"] == "gru"


# ---- two gloo ranks, each with half the batch, against one process with all of it

WORLD, BATCH = 2, 6


def make_projection():
    torch.manual_seed(0)
    return nn.ModuleDict({"a": nn.Linear(4, 3), "b": nn.Linear(4, 3)})


def make_series():
    g = torch.Generator().manual_seed(1)
    return torch.randn(BATCH, 8, 4, generator=g), torch.randn(BATCH, 8, 4, generator=g)


LOSSES = {"hierarchical": lambda a, b: L.hierarchical_contrastive_loss(a, b, 0.4, 1),
          "instance": L.instance_contrastive_loss, "temporal": L.temporal_contrastive_loss}


def loss_and_grads(name, x1, x2):
    model = make_projection()
    loss = LOSSES[name](model["a"](x1), model["b"](x2))
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def worker(rank, out_dir):
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{os.path.join(out_dir, 'rendezvous')}",
                            rank=rank, world_size=WORLD)
    try:
        x1, x2 = make_series()
        rows = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        results = {name: loss_and_grads(name, x1[rows], x2[rows]) for name in LOSSES}
        torch.manual_seed(rank)  # different RNG states and spans on the two ranks
        end = torch.full((3,), 20 + 10 * rank)
        crop = T2V.draw_crop(torch.zeros(3, dtype=torch.long), end, 2, torch.device("cpu"))
        results["crop"] = (crop.length, crop.left, crop.eleft, crop.eright)
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def per_rank(tmp_path_factory):
    out_dir = str(tmp_path_factory.mktemp("ts2vec_ddp"))
    mp.spawn(worker, args=(out_dir,), nprocs=WORLD, join=True)
    return [torch.load(os.path.join(out_dir, f"rank{r}.pt")) for r in range(WORLD)]


@pytest.mark.parametrize("name", list(LOSSES))
def test_two_ranks_equal_one_process(per_rank, name):
    loss, grads = loss_and_grads(name, *make_series())
    torch.testing.assert_close(sum(r[name][0] for r in per_rank) / WORLD, loss, atol=1e-5, rtol=1e-5)
    for i, grad in enumerate(grads):
        torch.testing.assert_close(sum(r[name][1][i] for r in per_rank) / WORLD, grad, atol=1e-5, rtol=1e-5)


def test_ranks_share_one_crop_geometry_within_the_shortest_span(per_rank):
    geometries = [r["crop"] for r in per_rank]
    assert geometries[0] == geometries[1]
    length, left, eleft, eright = geometries[0]
    assert 2 <= length and eleft <= left and left + length <= eright <= 20  # rank 0's span is the shortest
