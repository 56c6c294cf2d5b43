"""The registry: names, capabilities, and errors that say what is registered."""
import pytest
import torch

import modalities  # noqa: F401
import objectives  # noqa: F401
from core import registry
from core.registry import RegistryError


def test_duplicate_name_is_refused_and_names_the_first_owner():
    with pytest.raises(RegistryError, match=r"encoder 'cpc_wave' is already registered \(by modalities\.audio"):
        registry.register("encoder", "cpc_wave", outputs=("embedding",))(torch.nn.Identity)


def test_unknown_name_lists_registered_names_and_suggests_closest():
    with pytest.raises(RegistryError) as err:
        registry.get("objective", "cpcc")
    assert "did you mean 'cpc'?" in str(err.value)
    assert "registered objectives: " in str(err.value) and "cpc" in str(err.value).split("registered objectives: ")[1]


def test_unknown_capability_and_kind_are_refused():
    with pytest.raises(RegistryError, match="unknown capabilities"):
        registry.register("encoder", "test_bad_caps", outputs=("embeddings",))
    with pytest.raises(RegistryError, match="did you mean 'encoder'"):
        registry.register("encoders", "x")


def test_build_rejects_unknown_keyword_with_closest_option():
    with pytest.raises(RegistryError, match="did you mean 'width'"):
        registry.build("encoder", "cpc_wave", widht=8)
    encoder = registry.build("encoder", "cpc_wave", width=8, context_dim=4)
    assert encoder.dims == {"embedding": 8, "sequence": 8, "context": 4}


def test_capabilities_are_declared_from_decorators():
    assert {"x", "label", "text"} <= registry.get("dataset", "audio_builtin").capabilities
    assert registry.get("objective", "cpc").capabilities == frozenset({"sequence"})
    assert "audio" in registry.modalities()
