"""The layout rules of docs/architecture.md, checked on the source (issue 13): the CLI and the
benchmarks are both thin callers of the core (no benchmark imports the CLI), the core and the data
readers never import the ROS adapters or the CLI, and no function in ``ovs3d_ros/`` reaches 80 lines."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 80


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def test_benchmarks_do_not_import_the_cli():
    offenders = [str(p.relative_to(ROOT)) for p in _sources("bench")
                 if any(m == "ovs3d_ros.cli" for m in _imported_modules(p))]
    assert _sources("bench") and not offenders, f"benchmarks importing the CLI: {offenders}"


def test_core_and_data_never_import_the_adapters():
    offenders = {}
    for path in _sources("ovs3d_ros/core", "ovs3d_ros/data"):
        bad = sorted(m for m in _imported_modules(path)
                     if m.startswith(("ovs3d_ros.ros", "ovs3d_ros.cli")))
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    assert not offenders, offenders


def _long_functions(path: Path, root: Path = ROOT) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.end_lineno - node.lineno + 1
            if lines >= MAX_FUNCTION_LINES:
                out.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({lines} lines)")
    return out


def test_long_function_detector_sees_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "m.py").write_text(f"def short():\n    return 1\n\n\ndef long():\n{body}\n")
    found = _long_functions(tmp_path / "m.py", tmp_path)
    assert len(found) == 1 and " long (" in found[0]


def test_no_function_in_the_package_reaches_80_lines():
    long = [entry for path in _sources("ovs3d_ros") for entry in _long_functions(path)]
    assert not long, "split these into named steps:\n" + "\n".join(long)
