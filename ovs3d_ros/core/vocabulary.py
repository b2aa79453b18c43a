"""Query vocabularies: validation (clear errors for every bad list), cache keys, stable class colours.

A vocabulary is the exact ordered list of class names a query asks for; label ``k`` means
``classes[k]``. Names are used verbatim after stripping surrounding whitespace (CLIP encodes any
Unicode string), so 'chair' and 'Chair' are different classes.
"""

from __future__ import annotations

import hashlib
import unicodedata

import numpy as np

UNKNOWN_U8 = 255
"""Label of 'unknown'/unlabelled in uint8 label images (vocabularies of at most 255 classes)."""
UNKNOWN_U16 = 65535
"""Label of 'unknown' in uint16 label images (more than 255 classes) and in every labeled cloud."""


class QueryError(ValueError):
    """A query that cannot be answered as asked (the message says why)."""


def validate_classes(classes, max_classes: int, max_name_chars: int) -> list[str]:
    """The vocabulary as a clean list of names, or QueryError naming the first problem.

    Rules: a non-empty list of strings; each stripped name non-empty, at most ``max_name_chars``
    characters, without control characters; no duplicates after stripping (a duplicate would make
    two labels mean the same thing); at most ``max_classes`` names (also bounded by 65535, the
    unknown label of uint16 outputs).
    """
    if isinstance(classes, str) or not isinstance(classes, (list, tuple)):
        raise QueryError(f"classes must be a list of names, got {type(classes).__name__}")
    if len(classes) == 0:
        raise QueryError("classes is empty: give at least one class name")
    limit = min(max_classes, UNKNOWN_U16)
    if len(classes) > limit:
        raise QueryError(f"too many classes: {len(classes)} > query.max_classes={limit}")
    names: list[str] = []
    seen: dict[str, int] = {}
    for k, raw in enumerate(classes):
        if not isinstance(raw, str):
            raise QueryError(f"classes[{k}] is not a string: {raw!r}")
        name = raw.strip()
        if not name:
            raise QueryError(f"classes[{k}] is empty (or only whitespace)")
        if len(name) > max_name_chars:
            raise QueryError(f"classes[{k}] has {len(name)} characters > "
                             f"query.max_class_name_chars={max_name_chars}")
        if any(unicodedata.category(ch) == "Cc" for ch in name):
            raise QueryError(f"classes[{k}] {name!r} contains control characters")
        if name in seen:
            raise QueryError(f"duplicate class name {name!r} at positions {seen[name]} and {k}")
        seen[name] = k
        names.append(name)
    return names


def vocabulary_key(classes: list[str], teacher_id: str) -> str:
    """Cache key of a vocabulary: the exact ordered names and the teacher that encodes them."""
    digest = hashlib.sha256()
    digest.update(teacher_id.encode("utf-8"))
    for name in classes:
        digest.update(b"\x00" + name.encode("utf-8"))
    return digest.hexdigest()


# A qualitative palette of well-separated colours (Glasbey-like, the 20 of matplotlib's tab20 order
# with the dark/light pairs interleaved), extended deterministically by a hue wheel beyond it.
_PALETTE = np.array([
    [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
    [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207],
    [174, 199, 232], [255, 187, 120], [152, 223, 138], [255, 152, 150], [197, 176, 213],
    [196, 156, 148], [247, 182, 210], [199, 199, 199], [219, 219, 141], [158, 218, 229],
], dtype=np.uint8)


def _name_hash(name: str) -> int:
    # Python's hash() is salted per process; sha256 is the same everywhere.
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")


def class_color(name: str) -> np.ndarray:
    """Colour (3,) uint8 of a class name: the same in every run and process."""
    return _PALETTE[_name_hash(name) % len(_PALETTE)].copy()


def class_colors(classes: list[str]) -> np.ndarray:
    """(C, 3) uint8 colours, one per name, stable per name; collisions inside one vocabulary are
    moved to the next free palette entry (then to hashed hues) so classes stay distinguishable."""
    colors = np.zeros((len(classes), 3), dtype=np.uint8)
    used: set[int] = set()
    for k, name in enumerate(classes):
        h = _name_hash(name)
        slot = h % len(_PALETTE)
        for probe in range(len(_PALETTE)):
            cand = (slot + probe) % len(_PALETTE)
            if cand not in used:
                used.add(cand)
                colors[k] = _PALETTE[cand]
                break
        else:  # palette exhausted: a hue from the hash, bright and saturated
            import colorsys
            hue = (h % 3600) / 3600.0
            sat = 0.55 + 0.4 * ((h >> 12) % 100) / 100.0
            val = 0.6 + 0.4 * ((h >> 24) % 100) / 100.0
            colors[k] = np.round(np.array(colorsys.hsv_to_rgb(hue, sat, val)) * 255).astype(np.uint8)
    return colors
