"""Evaluation metrics against float64 NumPy loops and analytic values; the probe never sees test data;
eval.split=val puts every protocol on val."""
import math

import numpy as np
import pytest
import torch

from evaluation import metrics
from evaluation.linear_probe import fit_linear_probe, linear_probe
from evaluation.protocols import prompts


def unit(a):
    a = np.asarray(a, dtype=np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def knn_reference(bank, bank_y, queries, n_classes, k, temperature, exclude_self=False):
    bank, queries = unit(bank), unit(queries)
    predictions = []
    for i, q in enumerate(queries):
        candidates = [j for j in range(len(bank)) if not (exclude_self and j == i)]
        sims = sorted(((float(q @ bank[j]), j) for j in candidates), reverse=True)[:k]
        votes = np.zeros(n_classes)
        for s, j in sims:
            votes[int(bank_y[j])] += math.exp(s / temperature)
        predictions.append(int(np.argmax(votes)))
    return np.array(predictions)


@pytest.mark.parametrize("k", [1, 5, 20, 100])
def test_knn_matches_a_float64_loop(k):
    g = torch.Generator().manual_seed(0)
    bank, queries = torch.randn(60, 8, generator=g), torch.randn(25, 8, generator=g)
    bank_y = torch.randint(0, 4, (60,), generator=g)
    got = metrics.knn_predict(bank, bank_y, queries, 4, k=k, temperature=0.07)
    np.testing.assert_array_equal(got.numpy(), knn_reference(bank, bank_y, queries, 4, k, 0.07))


def test_knn_votes_are_weighted_by_exp_similarity():
    # Query along e0: one class-1 neighbour at cos 1.0, two class-0 neighbours at cos 0.6.
    bank = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.6, -0.8], [-1.0, 0.0]])
    bank_y = torch.tensor([1, 0, 0, 0])
    query = torch.tensor([[1.0, 0.0]])
    # exp(1/0.07) > 2 exp(0.6/0.07): class 1 wins at t = 0.07; a near-majority vote (t = 10) picks class 0.
    assert metrics.knn_predict(bank, bank_y, query, 2, k=3, temperature=0.07).item() == 1
    assert metrics.knn_predict(bank, bank_y, query, 2, k=3, temperature=10.0).item() == 0


def test_knn_accuracy_counts_correct_test_predictions():
    bank = torch.eye(3)
    bank_y = torch.tensor([0, 1, 2])
    test_x = torch.tensor([[1.0, 0.1, 0.0], [0.0, 0.0, 1.0], [0.1, 1.0, 0.0]])
    assert metrics.knn_accuracy(bank, bank_y, test_x, torch.tensor([0, 2, 0]), 3, k=1) == pytest.approx(2 / 3)


def test_leave_one_out_knn_never_matches_a_sample_with_itself():
    # Each point's nearest *other* point carries the other label: with self excluded every
    # prediction is wrong; if a sample could match itself, every prediction would be right.
    x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    y = torch.tensor([0, 1, 0, 1])
    loo = metrics.knn_predict(x, y, x, 2, k=1, exclude_self=True)
    assert (loo != y).all()
    assert (metrics.knn_predict(x, y, x, 2, k=1) == y).all()  # the same call without exclusion
    g = torch.Generator().manual_seed(1)
    bank, bank_y = torch.randn(40, 6, generator=g), torch.randint(0, 3, (40,), generator=g)
    for k in (1, 7, 39):
        got = metrics.knn_predict(bank, bank_y, bank, 3, k=k, exclude_self=True)
        np.testing.assert_array_equal(got.numpy(), knn_reference(bank, bank_y, bank, 3, k, 0.07, exclude_self=True))


def test_leave_one_out_still_matches_an_identical_other_sample():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 1, 1])
    assert metrics.knn_predict(x, y, x, 2, k=1, exclude_self=True).tolist()[:2] == [1, 0]
    with pytest.raises(ValueError, match="exclude_self"):
        metrics.knn_predict(x, y, x[:2], 2, exclude_self=True)


def ranks_reference(items, captions, caption_item):
    sim = unit(items) @ unit(captions).T
    x2t = []
    for i in range(len(items)):
        mine = [j for j in range(len(captions)) if caption_item[j] == i]
        best = max(sim[i, j] for j in mine)
        x2t.append(1 + sum(1 for j in range(len(captions)) if caption_item[j] != i and sim[i, j] >= best))
    t2x = []
    for j in range(len(captions)):
        correct = sim[caption_item[j], j]
        t2x.append(1 + sum(1 for i in range(len(items)) if i != caption_item[j] and sim[i, j] >= correct))
    return np.array(x2t), np.array(t2x)


def test_retrieval_ranks_with_several_captions_per_item_match_a_loop():
    g = torch.Generator().manual_seed(2)
    items = torch.randn(30, 5, generator=g)
    caption_item = torch.cat([torch.arange(30), torch.randint(0, 30, (45,), generator=g)])  # 1 to several each
    captions = items[caption_item] + 1.5 * torch.randn(75, 5, generator=g)
    x2t, t2x = metrics.retrieval_ranks(items, captions, caption_item)
    want_x2t, want_t2x = ranks_reference(items, captions, caption_item.numpy())
    np.testing.assert_array_equal(x2t.numpy(), want_x2t)
    np.testing.assert_array_equal(t2x.numpy(), want_t2x)

    got = metrics.retrieval_metrics(items, captions, caption_item)
    for direction, ranks in (("x2t", want_x2t), ("t2x", want_t2x)):
        for k in (1, 5, 10):
            assert got[f"retrieval_r{k}_{direction}"] == pytest.approx(np.mean(ranks <= k))
        assert got[f"retrieval_medr_{direction}"] == pytest.approx(np.median(ranks))


def test_retrieval_ranks_by_hand():
    items = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    # captions 0, 1 belong to item 0 (caption 1 points at item 1); caption 2 to item 1; 3, 4 to item 2.
    captions = torch.tensor([[1.0, 0.05], [0.05, 1.0], [0.7, 0.7], [-1.0, 0.1], [1.0, 0.1]])
    caption_item = torch.tensor([0, 0, 1, 2, 2])
    x2t, t2x = metrics.retrieval_ranks(items, captions, caption_item)
    # item 0: best own caption (0, cos ~1) is first; item 1: caption 1 (item 0's) beats its caption 2;
    # item 2: its caption 3 is first.
    assert x2t.tolist() == [1, 2, 1]
    # caption 1 is closest to item 1, not its item 0; caption 2 (0.7, 0.7) ties items 0 and 1: counted against;
    # caption 4 is closest to item 0, then item 1, then its item 2.
    assert t2x.tolist() == [1, 2, 2, 1, 3]


def test_collapsed_embeddings_get_the_worst_rank_not_the_best():
    x2t, t2x = metrics.retrieval_ranks(torch.ones(4, 3), torch.ones(4, 3), torch.arange(4))
    assert x2t.tolist() == [4, 4, 4, 4] and t2x.tolist() == [4, 4, 4, 4]
    with pytest.raises(ValueError, match="own no caption"):
        metrics.retrieval_ranks(torch.ones(3, 2), torch.ones(2, 2), torch.tensor([0, 1]))


def test_zero_shot_picks_the_class_prompt_of_highest_cosine():
    g = torch.Generator().manual_seed(3)
    items, class_texts = torch.randn(20, 4, generator=g), torch.randn(5, 4, generator=g)
    want = np.argmax(unit(items) @ unit(class_texts).T, axis=1)
    np.testing.assert_array_equal(metrics.zero_shot_predict(items, class_texts).numpy(), want)
    assert prompts(["dog_bark", "no finding"], "a recording of {}") == ["a recording of dog bark",
                                                                          "a recording of no finding"]
    from core.errors import UserError
    with pytest.raises(UserError, match="zero_shot_template"):
        prompts(["a"], "no placeholder")


def test_prompt_ensemble_is_the_mean_of_each_templates_normalized_class_embeddings():
    g = torch.Generator().manual_seed(5)
    per_template = [torch.randn(4, 6, generator=g) * scale for scale in (0.1, 1.0, 50.0)]
    want = np.mean([unit(t.double().numpy()) for t in per_template], axis=0)
    np.testing.assert_allclose(metrics.ensemble_class_texts(per_template).numpy(), want, rtol=1e-5, atol=1e-6)
    # Analytic: norms do not weigh templates (the plain mean would be [[1.5, 0.5], [0.5, 1.5]]).
    two = [torch.tensor([[3.0, 0.0], [0.0, 3.0]]), torch.tensor([[0.0, 1.0], [1.0, 0.0]])]
    np.testing.assert_allclose(metrics.ensemble_class_texts(two).numpy(), [[0.5, 0.5], [0.5, 0.5]])
    with pytest.raises(ValueError, match="at least one"):
        metrics.ensemble_class_texts([])
    with pytest.raises(ValueError, match="one shape"):
        metrics.ensemble_class_texts([torch.ones(2, 3), torch.ones(3, 3)])


def test_alignment_and_uniformity_match_pairwise_loops():
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(23, 6, generator=g), torch.randint(0, 4, (23,), generator=g)
    u = unit(x)
    same = [np.sum((u[i] - u[j]) ** 2) for i in range(23) for j in range(i + 1, 23) if y[i] == y[j]]
    every = [math.exp(-2 * np.sum((u[i] - u[j]) ** 2)) for i in range(23) for j in range(i + 1, 23)]
    assert metrics.alignment(x, y) == pytest.approx(np.mean(same), rel=1e-9)
    assert metrics.uniformity(x) == pytest.approx(math.log(np.mean(every)), rel=1e-9)
    assert metrics.uniformity(x, t=0.5) == pytest.approx(
        math.log(np.mean([math.exp(-0.5 * np.sum((u[i] - u[j]) ** 2)) for i in range(23) for j in range(i + 1, 23)])))


def test_alignment_and_uniformity_analytic_values():
    # Two antipodal points: ||u - v||^2 = 4, uniformity = log exp(-2 * 4) = -8; same class: alignment 4.
    x, y = torch.tensor([[2.0, 0.0], [-3.0, 0.0]]), torch.tensor([0, 0])
    assert metrics.alignment(x, y) == pytest.approx(4.0) and metrics.uniformity(x) == pytest.approx(-8.0)
    # Every class a single direction (scaled copies): perfect alignment; no same-class pair: undefined.
    assert metrics.alignment(torch.tensor([[1.0, 1.0], [3.0, 3.0], [0.0, 1.0]]), torch.tensor([0, 0, 1])) == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(metrics.alignment(torch.eye(3), torch.arange(3)))


def test_effective_rank_matches_numpy_and_analytic_values():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(40, 7, generator=g) * torch.tensor([5.0, 3, 1, 1, 0.5, 0.1, 0.01])
    centered = x.double().numpy() - x.double().numpy().mean(0)
    s = np.linalg.svd(centered, compute_uv=False)
    p = s / s.sum()
    assert metrics.effective_rank(x) == pytest.approx(math.exp(-np.sum(p * np.log(p))), rel=1e-9)
    # +-e_i for i < 3 in 10 dimensions: three equal singular values, effective rank 3.
    basis = torch.eye(10)[:3]
    assert metrics.effective_rank(torch.cat([basis, -basis])) == pytest.approx(3.0)
    # A line (collapse to one direction, any spread along it): 1. All rows equal: 0.
    assert metrics.effective_rank(torch.randn(30, 1, generator=g) * torch.ones(1, 8)) == pytest.approx(1.0)
    assert metrics.effective_rank(torch.ones(5, 4)) == 0.0


def test_the_probe_never_sees_test_data():
    g = torch.Generator().manual_seed(6)
    train_x, train_y = torch.randn(64, 5, generator=g), torch.randint(0, 3, (64,), generator=g)
    train_x[:, 0] += 8 * train_y  # separable along feature 0
    test_x, test_y = torch.randn(32, 5, generator=g), torch.randint(0, 3, (32,), generator=g)
    acc, probe = linear_probe(train_x, train_y, test_x, test_y, 3, epochs=30, seed=0)

    # Poisoned test data: shuffled labels, a class the train split never had, shifted and
    # rescaled features. Nothing fitted may change: not the weights, not the train-only statistics.
    poisoned_y = test_y[torch.randperm(32, generator=g)]
    poisoned_y[0] = 7
    _, poisoned_probe = linear_probe(train_x, train_y, 100 * test_x + 50, poisoned_y, 3, epochs=30, seed=0)
    for name, a, b in zip(probe._fields, probe, poisoned_probe):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    np.testing.assert_allclose(probe.mean.numpy(), train_x.double().numpy().mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probe.std.numpy(), train_x.double().numpy().std(0, ddof=1), rtol=1e-5)
    assert probe.weight.shape == (5, 3)

    # The reported number is the fitted probe scored once on the untouched test split.
    logits = ((test_x.double().numpy() - probe.mean.double().numpy()) / probe.std.double().numpy()) \
        @ probe.weight.double().numpy() + probe.bias.double().numpy()
    assert acc == pytest.approx(np.mean(np.argmax(logits, 1) == test_y.numpy()))
    # And fitting learns from train: the probe separates the learnable train split.
    fitted = fit_linear_probe(train_x, train_y, 3, epochs=200, lr=0.05)
    assert (fitted.predict(train_x) == train_y).float().mean() > 0.9


def test_eval_split_val_reports_every_protocol_on_val_and_never_reads_test():
    from core import config as config_lib
    import modalities  # noqa: F401  (registers datasets, encoders)
    import objectives  # noqa: F401
    from conftest import TINY

    from core.errors import UserError
    from evaluation import svm
    from training.build import build_datasets, build_encoder
    from evaluation.protocols import check_protocol, embed, evaluate_model, evaluate_run, frozen

    cfg = config_lib.load_config("sequence", "supcon", overrides=[*TINY["sequence"], "eval.probe_epochs=5",
                                                                  "eval.split=val"])
    datasets = build_datasets(cfg)
    torch.manual_seed(0)
    encoder = build_encoder(cfg, datasets["train"].input_shape)
    cpu = torch.device("cpu")
    on_val, reported = evaluate_model({"x": encoder}, None, datasets, cfg, cpu)
    assert torch.equal(reported["label"], datasets["val"].labels)
    # Any test split (here the train split under its name) leaves a val evaluation unchanged ...
    assert evaluate_model({"x": encoder}, None, {**datasets, "test": datasets["train"]}, cfg, cpu)[0] == on_val
    # ... which is a test evaluation of the val split, and not the test evaluation.
    as_test = {**cfg, "eval": {**cfg["eval"], "split": "test"}}
    assert evaluate_model({"x": encoder}, None, {**datasets, "test": datasets["val"]}, as_test, cpu)[0] == on_val
    assert evaluate_model({"x": encoder}, None, datasets, as_test, cpu)[0] != on_val

    ev = cfg["eval"]
    with frozen(encoder):
        train, val = embed(encoder, datasets["train"], 64, cpu), embed(encoder, datasets["val"], 64, cpu)
    acc, _ = linear_probe(train["embedding"], train["label"], val["embedding"], val["label"], 8,
                          ev["probe_epochs"], ev["probe_lr"], ev["probe_weight_decay"], cfg["seed"])
    fitted = svm.svm_probe(train["embedding"], train["label"], val["embedding"], val["label"], ev["svm_c_grid"],
                           ev["svm_folds"], cfg["seed"])
    assert on_val["linear_probe_acc"] == acc and on_val["svm_acc"] == fitted.accuracy and on_val["svm_c"] == fitted.c
    assert on_val["effective_rank"] == metrics.effective_rank(val["embedding"])

    for key, value, fragment in [("split", "train", "eval.split must be test or val"),
                                 ("svm_c_grid", [], "eval.svm_c_grid"), ("svm_folds", 1, "eval.svm_folds"),
                                 ("zero_shot_templates", ["a {}", "no placeholder"], "eval.zero_shot_templates"),
                                 ("zero_shot_template", "none", "eval.zero_shot_template")]:
        with pytest.raises(UserError, match=fragment):
            check_protocol({**cfg, "eval": {**ev, key: value}})
    with pytest.raises(UserError, match="the val split has no items"):
        evaluate_run(cfg, None, None, {**datasets, "val": []}, cpu, None, step=1)


def test_zero_shot_with_templates_scores_the_ensemble_of_their_prompts():
    from core import config as config_lib
    import modalities  # noqa: F401  (registers datasets, encoders)
    import objectives  # noqa: F401
    from conftest import TINY

    from evaluation.protocols import class_text_embeddings, evaluate_model, frozen
    from training.build import build_datasets, build_model

    templates = ["a series of {}", "{}", "shape {} over time"]
    cfg = config_lib.load_config("sequence", "clap", overrides=[*TINY["sequence"], "eval.probe_epochs=5",
                                                                f"eval.zero_shot_templates={templates!r}"])
    datasets = build_datasets(cfg)
    model = build_model(cfg, datasets["train"])
    out, reported = evaluate_model(dict(model["encoders"]), model["objective"], datasets, cfg, torch.device("cpu"))
    classes = [str(c).replace("_", " ") for c in datasets["test"].classes]
    with frozen(*model["encoders"].values(), model["objective"]), torch.no_grad():
        per_template = [model["objective"].embed_text(model["encoders"], [t.replace("{}", c) for c in classes])
                        .double().numpy() for t in templates]
    class_texts = np.mean([unit(t) for t in per_template], axis=0)
    with frozen(*model["encoders"].values(), model["objective"]):
        got = class_text_embeddings(model["objective"], model["encoders"], datasets["test"].classes, cfg["eval"])
    np.testing.assert_allclose(got.numpy(), class_texts, rtol=1e-4, atol=1e-6)
    want = np.argmax(unit(reported["joint"].double().numpy()) @ unit(class_texts).T, axis=1)
    assert out["zero_shot_acc"] == pytest.approx(float((want == reported["label"].numpy()).mean()))
