"""Fine-tuning (evaluation/finetune.py): never reads the reported split before its report, leaves the
run's encoder and the frozen protocols alone, reaches 1.0 on a separable set, floor from the random init."""
import copy
import hashlib
import json

import pytest
import torch
from conftest import TINY, run_cli
from torch.utils.data import Dataset

import modalities  # noqa: F401  (registers encoders, datasets, views)
import objectives  # noqa: F401  (registers objectives)
from core import config as config_lib
from core import registry
from core.errors import UserError
from evaluation.finetune import finetune_report
from evaluation.label_subsets import stratified_subset
from evaluation.protocols import check_protocol, evaluate_run
from training.build import build_model_and_data, initial_encoder

CPU = torch.device("cpu")
TINY_EVAL = ["eval.probe_epochs=5", "eval.finetune_epochs=3", "eval.svm_c_grid=[1.0]"]


class Recording(Dataset):
    """A real dataset whose every item read is appended to ``log`` as (name, index)."""

    def __init__(self, dataset, name: str, log: list):
        self.dataset, self.name, self.log = dataset, name, log

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        self.log.append((self.name, int(i)))
        return self.dataset[i]

    def __getattr__(self, attr):  # classes, captions, input_shape ... of the wrapped dataset
        if attr in ("dataset", "name", "log"):
            raise AttributeError(attr)
        return getattr(self.dataset, attr)


class Ramps(Dataset):
    """Two linearly separable classes of (1, 32) series: a rising ramp (class 1) or a falling one
    (class 0), plus Gaussian noise of std 0.1 (separable after any per-series standardization)."""

    classes = ["falling", "rising"]
    input_shape = (1, 32)

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % 2
        ramp = torch.linspace(-1, 1, 32)
        self.x = (2 * self.labels.float() - 1)[:, None, None] * ramp + 0.1 * torch.randn(n, 1, 32, generator=g)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"x": self.x[i], "label": self.labels[i]}


def tiny_cfg(*overrides):
    return config_lib.load_config("sequence", "supcon", None, [*TINY["sequence"], *TINY_EVAL, *overrides])


def test_fine_tuning_reads_every_train_item_it_uses_before_the_first_reported_item():
    cfg = tiny_cfg("eval.finetune=true", "eval.label_fractions=[0.5, 1.0]")
    datasets, model, _ = build_model_and_data(cfg, CPU)
    log = []
    train, test = Recording(datasets["train"], "train", log), Recording(datasets["test"], "test", log)
    labels = datasets["train"].labels
    out = finetune_report(model["encoders"]["x"], train, test, labels, 8, cfg["eval"], cfg["seed"], CPU)
    assert set(out) == {"finetune_acc", "finetune_acc@50%", "finetune_acc@100%"}
    first_test = next(i for i, (name, _) in enumerate(log) if name == "test")
    assert all(name == "test" for name, _ in log[first_test:])  # no train read after the first test read
    # Two fine-tunings (all of train, then its 50% subset; 100% is the first one's number), each
    # scored once: every test item read exactly twice, in order.
    assert [i for _, i in log[first_test:]] == [*range(len(test)), *range(len(test))]
    assert out["finetune_acc@100%"] == out["finetune_acc"]
    # 16 train items (2 per class), batch min(32, N): the full run reads all 16 in each of 3 epochs,
    # the 50% run the 8 subset items (1 per class) in each of its 3 epochs.
    read = [i for _, i in log[:first_test]]
    assert sorted(read[:48]) == sorted(list(range(16)) * 3)
    subset = stratified_subset(labels, 0.5, cfg["seed"]).tolist()
    assert len(subset) == 8 and sorted(read[48:]) == sorted(subset * 3)
    for value in out.values():  # accuracies over the 8 test items
        assert value * 8 == pytest.approx(round(value * 8))


def state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_fine_tuning_leaves_the_model_and_the_frozen_protocols_as_they_were(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    results, rng_after = {}, {}
    for finetune in (False, True):
        cfg = tiny_cfg(f"eval.finetune={str(finetune).lower()}", "eval.label_fractions=[0.5]")
        datasets, model, _ = build_model_and_data(cfg, CPU)
        with torch.no_grad():  # a model that is not its own random init (the same draws both times)
            for p in model["encoders"]["x"].parameters():
                p.add_(0.05 * torch.randn_like(p))
        floor_encoder = initial_encoder(cfg, datasets["train"])
        before, floor_before = state(model), state(floor_encoder)
        writer = SummaryWriter(str(tmp_path / f"tb{finetune}"))
        results[finetune] = evaluate_run(cfg, model, floor_encoder, datasets, CPU, writer, step=1)
        writer.close()
        rng_after[finetune] = torch.get_rng_state()
        after = state(model)
        assert before.keys() == after.keys()
        assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm buffers included
        assert all(torch.equal(floor_before[k], v) for k, v in state(floor_encoder).items())
    assert torch.equal(rng_after[False], rng_after[True])  # fine-tuning draws from a forked random stream
    off, on = results[False], results[True]
    added = {"finetune_acc", "finetune_acc@50%"}
    for part in ("metrics", "floor"):
        assert set(on[part]) - set(off[part]) == added
        assert {k: v for k, v in on[part].items() if k not in added} == off[part]
    # The numbers are those of fine-tuning each encoder on its own: the trained one for the model,
    # the random init (initial_encoder of the run's seed) for the floor.
    labels = datasets["train"].labels
    mine = finetune_report(model["encoders"]["x"], datasets["train"], datasets["test"], labels, 8, cfg["eval"],
                           cfg["seed"], CPU)
    floor = finetune_report(initial_encoder(cfg, datasets["train"]), datasets["train"], datasets["test"], labels,
                            8, cfg["eval"], cfg["seed"], CPU)
    assert {k: on["metrics"][k] for k in added} == mine
    assert {k: on["floor"][k] for k in added} == floor


def test_a_separable_set_is_fine_tuned_to_perfect_accuracy_from_a_random_init():
    torch.manual_seed(0)
    encoder = registry.build("encoder", "tcn", in_channels=1, width=8, depth=2)
    ev = {"finetune_epochs": 20, "finetune_batch_size": 8, "finetune_lr": 1e-2, "finetune_weight_decay": 0.0,
          "batch_size": 16, "label_fractions": None}
    train, test = Ramps(32, seed=1), Ramps(16, seed=2)
    out = finetune_report(encoder, train, test, train.labels, 2, ev, 0, CPU)
    assert out == {"finetune_acc": 1.0}
    again = finetune_report(encoder, train, test, train.labels, 2, ev, 0, CPU)
    assert again == out  # seeded: the same number twice


@pytest.mark.parametrize("override, message", [
    ("eval.label_fractions=[0.0, 0.5]", "eval.label_fractions must be null or a list of distinct numbers in (0, 1]"),
    ("eval.label_fractions=[0.5, 0.5]", "eval.label_fractions must be null or a list of distinct numbers in (0, 1]"),
    ("eval.label_fractions=[1.5]", "eval.label_fractions must be null or a list"),
    ("eval.finetune_epochs=0", "eval.finetune_epochs must be an integer of at least 1"),
    ("eval.finetune_batch_size=1", "eval.finetune_batch_size must be an integer of at least 2"),
    ("eval.finetune_lr=0.0", "eval.finetune_lr must be positive"),
])
def test_bad_fine_tuning_and_fraction_settings_are_one_sentence_errors(override, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        check_protocol(tiny_cfg(override))


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_run_eval_with_fine_tuning_keeps_the_checkpoint_and_adds_keys_for_model_and_floor(tmp_path):
    run_dir = tmp_path / "run"
    done = run_cli("--modality", "sequence", "--objective", "supcon", "--run-dir", run_dir, *TINY["sequence"],
                   "train.steps=2", "train.batch_size=8", "train.val_every=0", "train.progress=false", *TINY_EVAL)
    assert done.returncode == 0, done.stderr[-2000:]
    first = json.loads((run_dir / "results.json").read_text())
    assert not any(k.startswith("finetune") or "@" in k for k in first["metrics"])  # off by default
    checkpoint = sha256(run_dir / "checkpoints" / "last.pt")

    again = run_cli("eval", run_dir, "eval.finetune=true", "eval.label_fractions=[0.25, 1.0]")
    assert again.returncode == 0, again.stderr[-2000:]
    assert sha256(run_dir / "checkpoints" / "last.pt") == checkpoint
    second = json.loads((run_dir / "results.json").read_text())
    added = {"finetune_acc", "finetune_acc@25%", "finetune_acc@100%", "linear_probe_acc@25%",
             "linear_probe_acc@100%"}
    for part in ("metrics", "floor"):
        assert set(second[part]) - set(first[part]) == added, part
        assert {k: v for k, v in second[part].items() if k not in added} == first[part], part
        assert second[part]["linear_probe_acc@100%"] == second[part]["linear_probe_acc"]
        assert second[part]["finetune_acc@100%"] == second[part]["finetune_acc"]
    assert "finetune_acc@25% " in again.stdout


def test_a_copy_of_an_encoder_is_what_fine_tuning_trains():
    torch.manual_seed(0)
    encoder = registry.build("encoder", "tcn", in_channels=1, width=8, depth=2)
    before = copy.deepcopy(encoder.state_dict())
    ev = {"finetune_epochs": 2, "finetune_batch_size": 8, "finetune_lr": 1e-2, "finetune_weight_decay": 0.0,
          "batch_size": 16, "label_fractions": [0.5]}
    train = Ramps(16, seed=1)
    finetune_report(encoder, train, Ramps(8, seed=2), train.labels, 2, ev, 0, CPU)
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())
    assert encoder.training  # its mode untouched too
