"""A word-level tokenizer built from the training captions: deterministic, tiny, saved as JSON.

Text is lower-cased and split by ``WORD`` into words (letters and digits, with
an optional apostrophe part: "dog's") and single punctuation marks. The
vocabulary keeps the most frequent words of the captions it is built from,
ties broken alphabetically, so the same captions always give the same ids.

Special tokens: [PAD]=0, [UNK]=1, [CLS]=2 (first token; the encoder's output
there is the pooled embedding), [SEP]=3 (last token).
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import torch

from core.errors import UserError

PAD, UNK, CLS, SEP = 0, 1, 2, 3
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?|[^\w\s]|_")


class TokenizerError(UserError, ValueError):
    """A tokenizer file or state that cannot be read."""


def words(text: str) -> list[str]:
    """Lower-cased words and punctuation marks of ``text``: "A dog's bark!" -> [a, dog's, bark, !]."""
    return WORD.findall(text.lower())


class Tokenizer:
    """Words -> ids, with [CLS] first, [SEP] last, [PAD] after, and [UNK] for unknown words.

    Args:
        vocab: every token by id; the first four must be ``SPECIALS``.
        max_length: longest token sequence, [CLS] and [SEP] included (longer texts are truncated).

    Raises:
        TokenizerError: a vocabulary without the special tokens first, with duplicates,
            or a max_length below 2.
    """

    def __init__(self, vocab: list[str], max_length: int = 32):
        vocab = list(vocab)
        if tuple(vocab[:4]) != SPECIALS:
            raise TokenizerError(f"a vocabulary must start with {', '.join(SPECIALS)}, got {vocab[:4]}")
        if len(set(vocab)) != len(vocab):
            raise TokenizerError("the vocabulary holds duplicate tokens")
        if int(max_length) < 2:
            raise TokenizerError(f"max_length must be at least 2 ([CLS] and [SEP]), got {max_length}")
        self.vocab = vocab
        self.max_length = int(max_length)
        self.index = {w: i for i, w in enumerate(vocab)}

    @classmethod
    def from_texts(cls, texts, vocab_size: int = 2000, max_length: int = 32) -> "Tokenizer":
        """The ``vocab_size - 4`` most frequent words of ``texts`` (ties alphabetical) plus the specials.

        Raises:
            TokenizerError: vocab_size below 5 or texts that are not strings.
        """
        if vocab_size < 5:
            raise TokenizerError(f"vocab_size must be at least 5 (4 special tokens and a word), got {vocab_size}")
        counts = Counter()
        for text in texts:
            if not isinstance(text, str):
                raise TokenizerError(f"captions must be strings, got {type(text).__name__}")
            counts.update(words(text))
        ranked = sorted(counts, key=lambda w: (-counts[w], w))
        return cls(list(SPECIALS) + ranked[:vocab_size - len(SPECIALS)], max_length)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        """Ids of one text: [CLS] words... [SEP], truncated to ``max_length``."""
        ids = [self.index.get(w, UNK) for w in words(text)][: self.max_length - 2]
        return [CLS, *ids, SEP]

    def decode(self, ids) -> str:
        """The tokens of ``ids`` joined by spaces, specials dropped (for reading, not a round trip)."""
        return " ".join(self.vocab[i] for i in ids if i >= len(SPECIALS))

    def __call__(self, texts) -> tuple[torch.Tensor, torch.Tensor]:
        """Pad a batch of texts: ids LongTensor (B, L) and mask BoolTensor (B, L), True on real tokens.

        L is the longest sequence of the batch (at most ``max_length``).

        Raises:
            TypeError: a single string instead of a list of strings.
        """
        if isinstance(texts, str):
            raise TypeError("the tokenizer takes a list of strings, got one string; wrap it in a list")
        seqs = [self.encode(t) for t in texts]
        length = max((len(s) for s in seqs), default=2)
        ids = torch.full((len(seqs), length), PAD, dtype=torch.long)
        mask = torch.zeros(len(seqs), length, dtype=torch.bool)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
            mask[i, :len(s)] = True
        return ids, mask

    def state_dict(self) -> dict:
        """Plain lists, ints and strings (safe for ``torch.load(weights_only=True)`` and JSON)."""
        return {"vocab": list(self.vocab), "max_length": self.max_length}

    @classmethod
    def from_state(cls, state: dict) -> "Tokenizer":
        """Inverse of ``state_dict``.

        Raises:
            TokenizerError: a state without ``vocab`` and ``max_length``.
        """
        if not isinstance(state, dict) or "vocab" not in state or "max_length" not in state:
            raise TokenizerError("a tokenizer state is a dict with 'vocab' and 'max_length'")
        return cls(state["vocab"], state["max_length"])

    def save(self, path) -> None:
        """Write the state as JSON (e.g. ``tokenizer.json`` in a run directory)."""
        Path(path).write_text(json.dumps(self.state_dict(), ensure_ascii=False, indent=0))

    @classmethod
    def load(cls, path) -> "Tokenizer":
        """Read a tokenizer written by ``save``.

        Raises:
            TokenizerError: the file is missing or not a tokenizer JSON.
        """
        path = Path(path)
        if not path.is_file():
            raise TokenizerError(f"no tokenizer file at '{path}'")
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise TokenizerError(f"'{path}' is not a tokenizer JSON ({type(err).__name__}: {err})") from None
        return cls.from_state(state)

    def __eq__(self, other) -> bool:
        return isinstance(other, Tokenizer) and self.state_dict() == other.state_dict()

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, max_length={self.max_length})"
