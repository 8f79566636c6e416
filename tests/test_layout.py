"""The package stays readable: no module over 350 lines, no function over 80 (the stage and loop
shapes are kept by splitting, not by growing one function)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "latentwm"
MAX_MODULE, MAX_FUNCTION = 350, 80


def test_modules_and_functions_stay_short():
    long = []
    for path in sorted(PACKAGE.glob("*.py")):
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE:
            long.append(f"{path.name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION:
                    long.append(f"{path.name}:{node.lineno} {node.name}: {n} lines")
    assert not long, long
