"""Which objectives can train on which modality, decided from registry capabilities alone.

An objective declares the capabilities it needs (``label``, ``text``, ``views``,
``sequence``, ...); a modality's dataset, encoder and views declare the ones they
offer. ``check_pair`` compares the two before anything is built, and
``capability_matrix`` does so for every registered pair (``run.py --list``).
"""
from __future__ import annotations

from core import config as config_lib
from core import registry
from core.errors import UserError


class IncompatibleError(UserError, ValueError):
    """An objective needs a capability that the modality does not offer."""


def offered(dataset: str, encoder: str, views: str | None) -> set[str]:
    """Capabilities a (dataset, encoder, views) triple offers."""
    caps = set(registry.get("dataset", dataset).capabilities) | set(registry.get("encoder", encoder).capabilities)
    if views:
        caps |= registry.get("views", views).capabilities
    return caps


def missing_capabilities(cfg: dict) -> list[str]:
    """Capabilities the configured objective needs that the configured modality lacks (sorted)."""
    needs = registry.get("objective", cfg["objective"]["name"]).capabilities
    caps = offered(cfg["data"]["name"], cfg["model"]["encoder"], cfg["views"]["name"])
    return sorted(needs - caps)


def capability_matrix() -> dict[tuple[str, str], list[str]]:
    """{(modality, objective): its missing capabilities} from each modality's default config."""
    return {(modality, objective): missing_capabilities(config_lib.load_config(modality, objective))
            for modality in registry.modalities() for objective in registry.names("objective")}


def check_pair(cfg: dict) -> None:
    """Raise a one-sentence error if the objective cannot train on this modality; the message
    names what is missing and the pairs with this modality or this objective that do work.

    Raises:
        IncompatibleError: a needed capability is missing.
    """
    lacking = missing_capabilities(cfg)
    if not lacking:
        return
    modality, objective = cfg["modality"], cfg["objective"]["name"]
    working = [f"{m}/{o}" for (m, o), lack in capability_matrix().items()
               if not lack and (m == modality or o == objective)]
    raise IncompatibleError(
        f"objective '{objective}' needs {', '.join(lacking)}, which modality '{modality}' (dataset "
        f"'{cfg['data']['name']}', encoder '{cfg['model']['encoder']}') does not provide; pairs that work: "
        f"{', '.join(working) or 'none'}")
