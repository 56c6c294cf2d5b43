"""The one registry: encoders, datasets, view transforms and objectives by name.

Each entry declares capabilities from a small closed vocabulary so that
``run.py`` can tell, before building anything, whether an objective can train
on a modality:

* a dataset **provides** batch fields: ``x``, ``label``, ``text``; and ``series`` when its ``x``
  is a signal over time, (C, T) per item with time last (audio, sensor series; an image is
  not), so that cropping x along its last axis crops an encoder's ``sequence`` (TS2Vec's crops);
* a view transform provides ``views`` (two or more augmented copies of ``x``);
* an encoder **outputs** ``embedding`` (B, D), ``sequence`` (B, T, D) and,
  optionally, ``context`` (B, T, D): a causal summary of ``sequence`` up to t;
* an objective **needs** some of the above.

Registration is a decorator; modules register through explicit imports in
``modalities/__init__.py`` and ``objectives/__init__.py``.
"""
from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from core.errors import UserError

CAPABILITIES = ("x", "series", "views", "label", "text", "embedding", "sequence", "context")
MEANING = {  # one line each, printed under ``run.py --list``
    "x": "the dataset gives inputs",
    "series": "the dataset's x is a signal over time, time last (an image is not)",
    "views": "a view transform makes augmented copies of x",
    "label": "the dataset gives class labels",
    "text": "the dataset gives captions or reports",
    "embedding": "the encoder gives one vector per item (B, D)",
    "sequence": "the encoder gives per-step outputs (B, T, D)",
    "context": "the encoder gives a causal summary of its per-step outputs (B, T, D)",
}
KINDS = ("encoder", "dataset", "views", "objective")


class RegistryError(UserError, ValueError):
    """A name or a capability that the registry cannot resolve."""


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    factory: Callable[..., Any]
    modality: str | None = None
    capabilities: frozenset[str] = field(default_factory=frozenset)


_ENTRIES: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}


def closest(word: str, candidates) -> str:
    """' (did you mean X?)' for the closest candidate, or '' if none is close."""
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


def register(kind: str, name: str, *, modality: str | None = None, provides=(), outputs=(), needs=()):
    """Decorator registering ``factory`` under (kind, name).

    ``provides`` (datasets, views), ``outputs`` (encoders) and ``needs``
    (objectives) are capabilities from ``CAPABILITIES``.

    Raises:
        RegistryError: unknown kind or capability, or a name already registered.
    """
    if kind not in KINDS:
        raise RegistryError(f"unknown registry kind '{kind}'{closest(kind, KINDS)}; kinds are {', '.join(KINDS)}")
    caps = frozenset(provides) | frozenset(outputs) | frozenset(needs)
    unknown = sorted(caps - set(CAPABILITIES))
    if unknown:
        raise RegistryError(f"unknown capabilities {unknown} for {kind} '{name}'; the vocabulary is {', '.join(CAPABILITIES)}")

    def decorator(factory):
        if name in _ENTRIES[kind]:
            raise RegistryError(f"{kind} '{name}' is already registered (by {_ENTRIES[kind][name].factory.__module__})")
        _ENTRIES[kind][name] = Entry(kind, name, factory, modality, caps)
        return factory

    return decorator


def get(kind: str, name: str) -> Entry:
    """The entry registered as (kind, name).

    Raises:
        RegistryError: the name is not registered; the message lists what is.
    """
    entries = _ENTRIES[kind]
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none"
        raise RegistryError(f"unknown {kind} '{name}'{closest(name, entries)}; registered {kind}s: {known}")
    return entries[name]


def names(kind: str, modality: str | None = None) -> list[str]:
    """Registered names of ``kind``, optionally only those of one modality."""
    return sorted(n for n, e in _ENTRIES[kind].items() if modality is None or e.modality == modality)


def modalities() -> list[str]:
    """Every modality that registered a dataset."""
    return sorted({e.modality for e in _ENTRIES["dataset"].values() if e.modality})


def check_modality(name: str) -> str:
    """``name`` when a modality of that name registered a dataset.

    Raises:
        RegistryError: no such modality; the message names the closest one and lists them all.
    """
    if name not in modalities():
        raise RegistryError(f"unknown modality '{name}'{closest(name, modalities())}; "
                            f"modalities: {', '.join(modalities())}")
    return name


def build(kind: str, name: str, **kwargs):
    """Instantiate (kind, name) with keyword arguments checked against its signature.

    Raises:
        RegistryError: unknown name, or a keyword the factory does not accept
        (the message names the closest accepted keyword).
    """
    entry = get(kind, name)
    params = inspect.signature(entry.factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if not takes_any:
        for key in kwargs:
            if key not in params:
                raise RegistryError(
                    f"{kind} '{name}' has no option '{key}'{closest(key, params)}; its options are {', '.join(params)}")
    return entry.factory(**kwargs)
