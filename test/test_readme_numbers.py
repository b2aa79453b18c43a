"""The README's demo and benchmark figures are exactly what scripts/readme_numbers.py renders from the
JSON in bench/results/: a changed result without a regenerated README (or a hand-typed figure inside a
marked block) fails here."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("readme_numbers", ROOT / "scripts" / "readme_numbers.py")
readme_numbers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(readme_numbers)


def test_readme_blocks_match_the_results_json():
    text = (ROOT / "README.md").read_text()
    names = {m.group("name") for m in readme_numbers.BLOCK.finditer(text)}
    assert {"demo", "demo_runs", "stream", "step_cost", "tiny_clip_method"} <= names, names
    assert readme_numbers.render(text) == text, "README figures are stale: run scripts/readme_numbers.py"


def test_demo_block_carries_the_recorded_figures():
    demo = json.loads((ROOT / "bench" / "results" / "demo_cpu.json").read_text())
    block = readme_numbers.demo()
    assert f"{100 * demo['mask_miou_paper']:.1f} mIoU" in block
    assert f"{100 * demo['teacher_miou_paper']:.1f} mIoU" in block
    assert f"{demo['semantic_iterations']} with the feature distillation" in block


def test_render_fills_only_marked_blocks_and_refuses_unknown_ones():
    text = "before\n<!-- numbers:step_cost -->\nstale 9.99x\n<!-- /numbers:step_cost -->\nafter\n"
    out = readme_numbers.render(text)
    assert out.startswith("before\n<!-- numbers:step_cost -->\n")
    assert out.endswith("<!-- /numbers:step_cost -->\nafter\n")
    assert "stale" not in out and "semantic / geometry" in out
    try:
        readme_numbers.render("<!-- numbers:nothing -->\nx\n<!-- /numbers:nothing -->")
    except KeyError as exc:
        assert "nothing" in str(exc)
    else:
        raise AssertionError("an unknown block must fail")
