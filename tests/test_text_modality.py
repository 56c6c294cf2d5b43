"""The text modality: the word tokenizer, the Transformer text encoder and the factory."""
from __future__ import annotations

import importlib.util
import io

import pytest
import torch

from core import registry
import modalities.text  # noqa: F401  (registers)
from core.errors import UserError
from modalities.text import Tokenizer, build_text_encoder
from modalities.text.tokenizer import CLS, PAD, SEP, UNK, TokenizerError, words
from core.registry import RegistryError

CAPTIONS = ["A dog barks twice.", "A cat meows; the dog barks!", "Rain on a tin roof.", "The dog sleeps."]


# tokenizer -----------------------------------------------------------------

def test_words_lowercase_and_split_punctuation():
    assert words("A Dog's bark, LOUD!") == ["a", "dog's", "bark", ",", "loud", "!"]


def test_vocabulary_is_by_frequency_then_alphabetical_and_deterministic():
    tok = Tokenizer.from_texts(CAPTIONS)
    # a: 3, dog: 3, .: 3 ; barks: 2, the: 2 ; then the singletons alphabetically
    assert tok.vocab[:4] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    assert tok.vocab[4:9] == [".", "a", "dog", "barks", "the"]
    assert tok.vocab[9:] == sorted(tok.vocab[9:])
    assert tok == Tokenizer.from_texts(list(CAPTIONS))
    assert tok == Tokenizer.from_texts(list(reversed(CAPTIONS)))  # order of captions does not matter


def test_vocab_size_cut_and_unknown_words():
    tok = Tokenizer.from_texts(CAPTIONS, vocab_size=7)
    assert tok.vocab_size == 7 and tok.vocab[4:] == [".", "a", "dog"]
    ids, mask = tok(["A dog barks."])
    assert ids.tolist() == [[CLS, tok.index["a"], tok.index["dog"], UNK, tok.index["."], SEP]]
    assert mask.all()
    with pytest.raises(TokenizerError, match="at least 5"):
        Tokenizer.from_texts(CAPTIONS, vocab_size=4)


def test_padding_mask_and_truncation():
    tok = Tokenizer.from_texts(CAPTIONS, max_length=6)
    ids, mask = tok(["dog", "a cat meows; the dog barks!", ""])
    assert ids.dtype == torch.long and mask.dtype == torch.bool and ids.shape == mask.shape == (3, 6)
    assert ids[0].tolist() == [CLS, tok.index["dog"], SEP, PAD, PAD, PAD]
    assert mask[0].tolist() == [True, True, True, False, False, False]
    assert ids[1, -1] == SEP and mask[1].all()  # truncated to max_length, [SEP] kept last
    assert ids[2, :2].tolist() == [CLS, SEP] and mask[2].sum() == 2
    short_ids, _ = tok(["dog"])
    assert short_ids.shape == (1, 3)  # L is the batch's longest, not max_length
    with pytest.raises(TypeError, match="list of strings"):
        tok("a dog")


def test_state_round_trips_through_torch_load_weights_only_and_json(tmp_path):
    tok = Tokenizer.from_texts(CAPTIONS, vocab_size=9, max_length=12)
    buffer = io.BytesIO()
    torch.save(tok.state_dict(), buffer)
    buffer.seek(0)
    again = Tokenizer.from_state(torch.load(buffer, weights_only=True))
    assert again == tok and again.max_length == 12
    tok.save(tmp_path / "tokenizer.json")
    loaded = Tokenizer.load(tmp_path / "tokenizer.json")
    assert loaded == tok
    assert torch.equal(loaded(CAPTIONS)[0], tok(CAPTIONS)[0])
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="bad.json' is not a tokenizer JSON"):
        Tokenizer.load(tmp_path / "bad.json")
    with pytest.raises(TokenizerError, match="no tokenizer file"):
        Tokenizer.load(tmp_path / "missing.json")


# text encoder --------------------------------------------------------------

def small_encoder(**kwargs):
    torch.manual_seed(0)
    return build_text_encoder(CAPTIONS, width=32, layers=2, heads=4, **kwargs)


def test_registered_and_built_by_the_factory():
    assert {"text_transformer", "text_pretrained"} <= set(registry.names("encoder", "text"))
    enc = small_encoder(vocab_size=8, max_length=10)
    assert enc.tokenizer.vocab_size == 8 and enc.tokenizer.max_length == 10
    assert enc.dims == {"embedding": 32, "sequence": 32}
    with pytest.raises(RegistryError, match="did you mean 'width'"):
        build_text_encoder(CAPTIONS, widht=8)
    with pytest.raises(UserError, match="not a text encoder"):
        build_text_encoder(CAPTIONS, name="cpc_wave")


def test_shapes_finite_and_every_parameter_learns():
    enc = small_encoder()
    out = enc(CAPTIONS[:3])
    length = enc.tokenizer(CAPTIONS[:3])[0].shape[1]
    assert out["embedding"].shape == (3, 32) and out["sequence"].shape == (3, length, 32)
    assert all(torch.isfinite(v).all() for v in out.values())
    loss = (out["embedding"] * torch.randn(3, 32)).sum() + out["sequence"].square().mean()
    loss.backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_padding_does_not_change_the_embedding():
    enc = small_encoder(dropout=0.1).eval()
    long = "the dog barks; a cat meows, rain on a tin roof, the dog sleeps, a dog barks twice " * 2
    with torch.no_grad():
        alone = enc(["a dog barks."])
        batch = enc(["a dog barks.", long])
    assert batch["sequence"].shape[1] > 3 * alone["sequence"].shape[1]
    assert torch.allclose(alone["embedding"][0], batch["embedding"][0], atol=1e-5)
    n = alone["sequence"].shape[1]
    assert torch.allclose(alone["sequence"][0], batch["sequence"][0, :n], atol=1e-5)
    assert (batch["sequence"][0, n:] == 0).all()  # padded positions are zero
    assert not torch.allclose(batch["embedding"][0], batch["embedding"][1], atol=1e-3)


def test_state_dict_carries_the_tokenizer():
    enc = small_encoder()
    buffer = io.BytesIO()
    torch.save(enc.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    other = build_text_encoder([c.upper() + " extra words here" for c in CAPTIONS[::-1]], width=32,
                               vocab_size=enc.tokenizer.vocab_size)
    assert other.tokenizer != enc.tokenizer
    other.load_state_dict(state)
    assert other.tokenizer == enc.tokenizer
    with torch.no_grad():
        assert torch.allclose(other(CAPTIONS)["embedding"], enc(CAPTIONS)["embedding"])
    wrong = build_text_encoder(CAPTIONS, width=32, vocab_size=6)
    with pytest.raises(ValueError, match="does not fit this encoder"):
        wrong.load_state_dict(state)


@pytest.mark.skipif(importlib.util.find_spec("transformers") is not None, reason="transformers is installed")
def test_pretrained_without_transformers_says_how_to_install(tmp_path):
    with pytest.raises(UserError, match="pip install transformers"):
        build_text_encoder(CAPTIONS, name="text_pretrained", path=str(tmp_path))
