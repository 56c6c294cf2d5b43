"""``load_run``: a trained run (or its export) as encoders in eval mode plus the preprocessing
its loader applied, in the manner of open_clip's ``create_model_and_transforms``."""
from __future__ import annotations

from pathlib import Path

import torch

from core.errors import UserError
from inference.model import build_modules, load_weights
from inference.preprocess import make_preprocess
from inference.source import Source, read_source
from objectives.parts import encode_batch
from training.build import pick_device
from training.data import to_device


class LoadedRun:
    """A run's trained modules, frozen, on ``device``.

    Attributes:
        encoders: ``nn.ModuleDict`` {"x"[, "text"]} in eval mode.
        objective: the paired objective whose heads make the joint space (``embed_joint``,
            ``embed_text``; what the evaluation's retrieval uses), or None.
        preprocess: raw input -> one model input (``inference/preprocess.py``).
        spec: the preprocessing as a dict (``preprocess.json``); ``input_shape`` is one item's shape.
        config, classes (class names by label index), step, device, source (the folder).
    """

    def __init__(self, modules, source: Source, device: torch.device):
        self.modules = modules
        self.encoders = modules["encoders"]
        self.objective = modules["objective"] if "objective" in modules else None
        self.preprocess = make_preprocess(source.spec)
        self.spec, self.config, self.classes, self.step = source.spec, source.cfg, source.classes, source.step
        self.device, self.source = device, source.path

    @property
    def paired(self) -> bool:
        """Whether the run has a joint (signal-text) space."""
        return self.objective is not None

    @torch.no_grad()
    def embed_batch(self, batch: dict) -> dict:
        """A loader's batch {"x": (B, *input_shape)[, "mask": (B, T)]} -> {"embedding": (B, D)[,
        "joint": (B, P) for paired runs]}, float32 on the CPU (as the evaluation embeds a split)."""
        batch = to_device(batch, self.device)
        embedding = encode_batch(self.encoders["x"], batch)["embedding"]
        out = {"embedding": embedding.float().cpu()}
        if self.objective is not None:
            out["joint"] = self.objective.project_x(embedding).float().cpu()
        return out

    def as_batch(self, x) -> dict:
        """Stacked ``preprocess`` outputs (B, *input_shape) as a batch; for series, steps with a NaN
        or inf are set to 0 and masked, as the series loaders do.

        Raises:
            UserError: x is not (B, *input_shape).
        """
        x = torch.as_tensor(x, dtype=torch.float32)
        shape = tuple(self.spec["input_shape"])
        if tuple(x.shape[1:]) != shape or x.dim() != len(shape) + 1:
            raise UserError(f"expected inputs of shape (B, {', '.join(map(str, shape))}) (preprocess gives one "
                            f"item: stack them, or add a batch axis with x[None]), got {tuple(x.shape)}")
        if self.spec["modality"] == "sequence":
            finite = torch.isfinite(x).all(dim=1)
            if not finite.all():
                return {"x": torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0), "mask": finite}
        return {"x": x}

    def embed(self, x) -> torch.Tensor:
        """The x encoder's ``embedding`` (B, D) float32 CPU of preprocessed inputs x (B, *input_shape)."""
        return self.embed_batch(self.as_batch(x))["embedding"]

    def embed_joint(self, x) -> torch.Tensor:
        """Joint-space embeddings (B, P) of inputs x (B, *input_shape); paired runs only.

        Raises:
            UserError: the run's objective is not paired.
        """
        self._need_paired()
        return self.embed_batch(self.as_batch(x))["joint"]

    @torch.no_grad()
    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """Joint-space embeddings (M, P) float32 CPU of M strings; paired runs only.

        Raises:
            UserError: the run's objective is not paired.
        """
        self._need_paired()
        return self.objective.embed_text(self.encoders, list(texts)).float().cpu()

    def _need_paired(self) -> None:
        if self.objective is None:
            raise UserError(f"objective '{self.config['objective']['name']}' has no joint space "
                            f"(only paired objectives do: clap, convirt, siglip)")

    def __repr__(self) -> str:
        return (f"LoadedRun('{self.source}', {self.config['modality']}/{self.config['objective']['name']}, "
                f"step {self.step}, {self.preprocess!r}, device {self.device})")


def load_run(run_dir, device=None) -> LoadedRun:
    """The trained encoders of a run folder or an export folder (``run.py export``), in eval mode,
    with the preprocessing of the run's loader.

    ``device``: 'cpu', 'cuda' or 'auto'; default the run's ``device`` setting (auto: CUDA when
    there is one).

    Example::

        import soundfile
        from inference import load_run
        run = load_run("runs/audio-cpc-20261124-120000")  # a run folder or an export folder
        wave, rate = soundfile.read("clip.wav")           # any sample rate, mono or stereo
        z = run.embed(run.preprocess(wave, rate)[None])   # (1, D): the run's embedding of the clip

    Raises:
        UserError: ``run_dir`` is neither kind of folder, a file of it is damaged or does not fit
            its config, or the device asked for is absent.
    """
    source = read_source(Path(run_dir))
    device = pick_device(str(device) if device is not None else source.cfg["device"])
    modules = build_modules(source.cfg, source.spec["input_shape"], source.tokenizer, len(source.classes))
    load_weights(modules, source.tensors, str(source.weights_file))
    modules.to(device).eval()
    return LoadedRun(modules, source, device)
