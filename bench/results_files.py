"""Where a benchmark's numbers go: ``<out>.json`` (what README blocks and later tables are generated
from) and ``<out>.md`` (the same, readable), written side by side so the two never disagree."""

from __future__ import annotations

import json
from pathlib import Path


def write_json_and_md(out: str | Path, result, markdown: str) -> Path:
    """Write ``result`` as ``<out>.json`` and ``markdown`` as ``<out>.md`` (folders made); returns the
    JSON path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    out.with_suffix(".md").write_text(markdown)
    return out.with_suffix(".json")
