"""What ruff does not check of the code's shape: no function in the project's packages runs
past 80 lines (ruff counts statements, and a function of few long statements passes it)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LONGEST = 80


def test_no_function_in_the_packages_is_longer_than_80_lines() -> None:
    too_long = []
    for package in ("pipeline", "agents", "schemas"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    assert node.end_lineno is not None
                    lines = node.end_lineno - node.lineno + 1
                    if lines > LONGEST:
                        where = path.relative_to(ROOT)
                        too_long.append(f"{where}:{node.lineno} {node.name} ({lines} lines)")
    assert not too_long
