"""Class names of loaded data mapped to 0..K-1, the same way for every loader."""
from __future__ import annotations


def label_map(values) -> dict[str, int]:
    """Sorted distinct names (numerically when all are numbers) -> 0..K-1."""
    distinct = sorted(set(values))
    try:
        distinct = sorted(distinct, key=float)
    except ValueError:
        pass
    return {v: i for i, v in enumerate(distinct)}
