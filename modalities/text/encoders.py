"""Text encoders: captions -> {"embedding": (B, D), "sequence": (B, L, D)}.

``text_transformer`` is a small pre-norm Transformer over the word tokens of
``tokenizer.Tokenizer`` (built from the training captions); its tokenizer
travels inside ``state_dict()`` as extra state. ``text_pretrained`` wraps a
HuggingFace model from a local folder when ``transformers`` is installed.
``build_text_encoder`` is the one entry point the training code calls.
"""
from __future__ import annotations

import inspect
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from core import registry
from core.errors import UserError
from modalities.text.tokenizer import Tokenizer
from core.registry import register


class Block(nn.Module):
    """Pre-norm self-attention + MLP block; keys at padded positions are masked out."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(4 * width, width), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, L, D), mask (B, L) True on real tokens -> (B, L, D)."""
        q, k, v = rearrange(self.qkv(self.norm1(x)), "b l (three h d) -> three b h l d", three=3, h=self.heads)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=rearrange(mask, "b l -> b 1 1 l"),
                                           dropout_p=self.dropout if self.training else 0.0)
        x = x + F.dropout(self.proj(rearrange(y, "b h l d -> b l (h d)")), self.dropout, self.training)
        return x + self.mlp(self.norm2(x))


@register("encoder", "text_transformer", modality="text", outputs=("embedding", "sequence"))
class TextTransformer(nn.Module):
    """A small Transformer text encoder that owns its tokenizer.

    Token + learned position embeddings, ``layers`` pre-norm blocks, a final
    LayerNorm. Attention never looks at padding, so a caption's outputs do not
    depend on the other captions of its batch.

    Input:  texts, a list of B strings (tokenized here, ids moved to the module's device).
    Output: "embedding" (B, width): the [CLS] token after the final LayerNorm;
            "sequence" (B, L, width): every token, zero at padded positions
            (``self.tokenizer(texts)[1]`` is the mask), L = longest caption (<= max_length).

    ``state_dict()`` carries the tokenizer's vocabulary as extra state (plain lists and
    ints, loadable with ``weights_only=True``); ``load_state_dict`` restores it.

    Raises:
        ValueError: width not divisible by heads.
    """

    def __init__(self, tokenizer: Tokenizer, width: int = 128, layers: int = 2, heads: int = 4,
                 dropout: float = 0.0):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} must be divisible by heads {heads}")
        self.tokenizer = tokenizer
        self.token = nn.Embedding(tokenizer.vocab_size, width)
        self.position = nn.Parameter(0.02 * torch.randn(tokenizer.max_length, width))
        self.blocks = nn.ModuleList(Block(width, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.dims = {"embedding": width, "sequence": width}
        nn.init.normal_(self.token.weight, std=0.02)

    def forward(self, texts) -> dict[str, torch.Tensor]:
        ids, mask = self.tokenizer(texts)
        ids, mask = ids.to(self.position.device), mask.to(self.position.device)
        x = self.token(ids) + self.position[: ids.shape[1]]
        for block in self.blocks:
            x = block(x, mask)
        x = self.norm(x) * mask.unsqueeze(-1)
        return {"embedding": x[:, 0], "sequence": x}

    def get_extra_state(self) -> dict:
        return {"tokenizer": self.tokenizer.state_dict()}

    def set_extra_state(self, state: dict) -> None:
        tokenizer = Tokenizer.from_state(state["tokenizer"])
        if tokenizer.vocab_size != self.token.num_embeddings or tokenizer.max_length != self.position.shape[0]:
            raise ValueError(f"the checkpoint's tokenizer ({tokenizer}) does not fit this encoder "
                             f"(vocab_size={self.token.num_embeddings}, max_length={self.position.shape[0]})")
        self.tokenizer = tokenizer


@register("encoder", "text_pretrained", modality="text", outputs=("embedding", "sequence"))
class PretrainedText(nn.Module):
    """A HuggingFace text model and its tokenizer from a local folder (``transformers`` required).

    Output: "embedding" (B, hidden): the first ([CLS]) token's last hidden state;
            "sequence" (B, L, hidden): every token, zero at padding.

    Raises:
        UserError: ``transformers`` is not installed, or ``path`` is not a folder it can load.
    """

    def __init__(self, path: str, max_length: int = 64):
        super().__init__()
        try:
            import transformers
        except ImportError:
            raise UserError("encoder 'text_pretrained' needs the transformers package: pip install transformers "
                            "(or use encoder 'text_transformer', which needs nothing extra)") from None
        if not Path(path).is_dir():
            raise UserError(f"encoder 'text_pretrained': '{path}' is not a folder holding a saved model and tokenizer")
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.model = transformers.AutoModel.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as err:
            raise UserError(f"encoder 'text_pretrained' cannot load '{path}': {str(err).splitlines()[0]}") from None
        self.max_length = max_length
        width = self.model.config.hidden_size
        self.dims = {"embedding": width, "sequence": width}

    def forward(self, texts) -> dict[str, torch.Tensor]:
        device = next(self.model.parameters()).device
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt").to(device)
        hidden = self.model(**batch).last_hidden_state
        hidden = hidden * batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return {"embedding": hidden[:, 0], "sequence": hidden}


def build_text_encoder(captions, name: str = "text_transformer", **kwargs) -> nn.Module:
    """The text encoder ``name``, with a tokenizer built from ``captions`` where it needs one.

    For an encoder that takes a ``tokenizer`` (``text_transformer``), ``vocab_size``
    and ``max_length`` (if given) go to ``Tokenizer.from_texts`` and the rest to the
    encoder; other text encoders get ``kwargs`` alone. Pass the *training* split's captions, and save
    ``encoder.tokenizer`` (``.save(run_dir / "tokenizer.json")``) with the run.

    Raises:
        RegistryError: an unknown encoder name or option.
        UserError: ``name`` is not a text encoder.
    """
    entry = registry.get("encoder", name)
    if entry.modality != "text":
        raise UserError(f"'{name}' is a {entry.modality} encoder, not a text encoder; text encoders: "
                        f"{', '.join(registry.names('encoder', 'text'))}")
    if "tokenizer" in inspect.signature(entry.factory).parameters:
        tok = {k: kwargs.pop(k) for k in ("vocab_size", "max_length") if k in kwargs}
        return registry.build("encoder", name, tokenizer=Tokenizer.from_texts(list(captions), **tok), **kwargs)
    return registry.build("encoder", name, **kwargs)
