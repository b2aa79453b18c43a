"""Query vocabularies: validation (clear errors for every bad list), cache keys, stable class colours.

A vocabulary is the exact ordered list of class names a query asks for; label ``k`` means
``classes[k]``. Names are used verbatim after stripping surrounding whitespace (CLIP encodes any
Unicode string), so 'chair' and 'Chair' are different classes.

Invisible names: a name must keep something visible once format characters (category Cf: zero-width
space U+200B, joiners, BOM, bidi marks), separators (Z*), combining marks on nothing (Mn, Me),
unassigned code points and the blank "letters" (Hangul fillers, the blank Braille pattern) are
removed (combining marks count only on a visible base character); two names that are the same
once those are removed are duplicates. Invisible characters inside a
visible name are kept verbatim.

NUL: a NUL inside a name is a control character and refused here. Over ROS it never gets here:
rclpy/rosidl strings are C strings, so a service request's ``'chair\x00...'`` arrives as ``'chair'``
(everything from the NUL on is dropped before the node sees it); clients must not rely on it.
"""

from __future__ import annotations

import hashlib
import unicodedata

import numpy as np

UNKNOWN_U8 = 255
"""Label of 'unknown'/unlabelled in uint8 label images (vocabularies of at most 255 classes)."""
UNKNOWN_U16 = 65535
"""Label of 'unknown' in uint16 label images (more than 255 classes) and in every labeled cloud."""


# Code points that render as nothing although their category says letter or symbol.
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
_INVISIBLE_CATEGORIES = frozenset({"Cf", "Cc", "Cn", "Zs", "Zl", "Zp"})
_MARKS = frozenset({"Mn", "Me"})  # visible on a base character, nothing on their own


def visible_form(name: str) -> str:
    """``name`` without the characters that render as nothing (see the module docstring)."""
    return "".join(ch for ch in name
                   if ch not in _BLANK_LETTERS and unicodedata.category(ch) not in _INVISIBLE_CATEGORIES)


def _has_visible_base(name: str) -> bool:
    return any(unicodedata.category(ch) not in _MARKS for ch in visible_form(name))


class QueryError(ValueError):
    """A query that cannot be answered as asked (the message says why)."""


def validate_classes(classes, max_classes: int, max_name_chars: int) -> list[str]:
    """The vocabulary as a clean list of names, or QueryError naming the first problem.

    Rules: a non-empty list of strings; each stripped name non-empty, at most ``max_name_chars``
    characters, without control characters, with a visible character; no duplicates after stripping
    or after removing invisible characters (a duplicate would make
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
    seen_visible: dict[str, int] = {}
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
        visible = visible_form(name)
        if not _has_visible_base(name):
            raise QueryError(f"classes[{k}] {name!r} has no visible character (only invisible, format "
                             "or space characters)")
        if name in seen:
            raise QueryError(f"duplicate class name {name!r} at positions {seen[name]} and {k}")
        if visible in seen_visible:
            raise QueryError(f"classes[{k}] {name!r} looks the same as classes[{seen_visible[visible]}] "
                             f"{names[seen_visible[visible]]!r} (they differ only in invisible characters)")
        seen[name] = k
        seen_visible[visible] = k
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
