"""Vocabulary validation, cache keys and stable class colours."""

import subprocess
import sys

import numpy as np
import pytest

from ovs3d_ros.core.vocabulary import QueryError, class_color, class_colors, validate_classes, vocabulary_key


def _v(classes, max_classes=1000, max_chars=200):
    return validate_classes(classes, max_classes, max_chars)


def test_clean_list_and_stripping_and_unicode():
    assert _v([" chair ", "sofa", "Stuhl mit Lehne", "椅子", "café"]) == [
        "chair", "sofa", "Stuhl mit Lehne", "椅子", "café"]


@pytest.mark.parametrize("bad, message", [
    ([], "empty"),
    ("chair", "list of names"),
    (None, "list of names"),
    (["chair", ""], r"classes\[1\] is empty"),
    (["chair", "   "], r"classes\[1\] is empty"),
    (["chair", 3], "not a string"),
    (["chair", "sofa", " chair"], "duplicate class name 'chair' at positions 0 and 2"),
    (["a\x00b"], "control characters"),
    (["x" * 201], "max_class_name_chars"),
    (["\u200b"], "no visible character"),  # zero-width space (Cf)
    (["chair", "\u200b\u200d\ufeff"], r"classes\[1\] .* no visible character"),
    (["\u2060\u3000\u00a0"], "no visible character"),  # word joiner, ideographic + no-break space
    (["\u3164"], "no visible character"),  # Hangul filler: a 'letter' that renders as nothing
    (["\u0301\u20dd"], "no visible character"),  # combining marks on nothing
    (["chair", "cha\u200bir"], r"looks the same as classes\[0\]"),
])
def test_bad_vocabularies(bad, message):
    with pytest.raises(QueryError, match=message):
        _v(bad)


def test_invisible_characters_inside_a_visible_name_are_kept():
    assert _v(["cha\u200bir", "e\u0301", "e"]) == ["cha\u200bir", "e\u0301", "e"]


def test_long_lists_against_max_classes():
    names = [f"class {i}" for i in range(500)]
    assert len(_v(names)) == 500
    with pytest.raises(QueryError, match="too many classes: 10000 > query.max_classes=1000"):
        _v([f"class {i}" for i in range(10_000)])
    with pytest.raises(QueryError, match="query.max_classes=65535"):  # uint16 unknown label bound
        _v([f"c{i}" for i in range(70_000)], max_classes=100_000)
    assert issubclass(QueryError, ValueError)


def test_vocabulary_key_order_and_teacher_sensitive():
    k = vocabulary_key(["a", "b"], "clip:ViT-B-16")
    assert k == vocabulary_key(["a", "b"], "clip:ViT-B-16")
    assert k != vocabulary_key(["b", "a"], "clip:ViT-B-16")
    assert k != vocabulary_key(["a", "b"], "synthetic")
    assert vocabulary_key(["ab"], "t") != vocabulary_key(["a", "b"], "t")


def test_colors_stable_across_processes_and_distinct_within_vocabulary():
    code = "from ovs3d_ros.core.vocabulary import class_color; print(class_color('wooden chair').tolist())"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == str(class_color("wooden chair").tolist())
    names = [f"name {i}" for i in range(40)]
    cols = class_colors(names)
    assert cols.dtype == np.uint8 and cols.shape == (40, 3)
    assert len({tuple(c) for c in cols[:20]}) == 20  # the palette is used without repeats first
    assert np.array_equal(class_colors(names), cols)
    assert np.array_equal(class_colors(["sofa"])[0], class_color("sofa"))
