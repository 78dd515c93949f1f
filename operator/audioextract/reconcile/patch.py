"""JSON merge patches (RFC 7386) between two versions of a status."""

from typing import Any


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The merge patch that turns ``old`` into ``new``; empty when they are equal.

    Keys missing from ``new`` become ``null`` (a merge patch deletes them); nested
    objects are diffed recursively, so a stale nested key never survives; lists and
    scalars are replaced whole.
    """
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            sub = merge_patch(before, value)
            if sub:
                patch[key] = sub
        elif before != value or key not in old:
            patch[key] = value
    return patch
