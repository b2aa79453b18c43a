"""Progress bars for the long offline loops (training, evaluation): tqdm on stderr, so stdout keeps
only the results a command prints."""

from __future__ import annotations

import sys


def progress_bar(iterable=None, enabled: bool = True, **kw):
    """A tqdm bar over ``iterable`` (or a manual one with ``total=``); ``enabled=False`` draws nothing."""
    from tqdm import tqdm

    return tqdm(iterable, dynamic_ncols=True, file=sys.stderr, disable=not enabled, **kw)
