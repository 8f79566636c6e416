"""docs/FAULTS.md from the docstrings of tests/test_faults.py: `python tests/fault_table.py > docs/FAULTS.md`.

A docstring's first paragraph (up to the first line break) is the fault, the rest what happens.
"""

import ast
from pathlib import Path

HERE = Path(__file__).resolve().parent


def rows() -> list[tuple[str, str, str]]:
    tree = ast.parse((HERE / "test_faults.py").read_text())
    out = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            doc = ast.get_docstring(node) or ""
            if doc.startswith("(not a fault"):
                continue
            lines = doc.splitlines()
            # the fault runs until the line that starts the outcome (after the first line)
            split = next((i for i, line in enumerate(lines) if i and line[:1].isupper() and not lines[i - 1].endswith(",")), 1)
            fault = " ".join(line.strip() for line in lines[:split])
            outcome = " ".join(line.strip() for line in lines[split:])
            out.append((fault, outcome, node.name))
    return out


def table() -> str:
    lines = [
        "# Faults tried and what the pipeline does",
        "",
        "Generated from the docstrings of `tests/test_faults.py` (`python tests/fault_table.py > docs/FAULTS.md`);",
        "every row is a test that runs in CI.",
        "",
        "| fault | what happens | test |",
        "|---|---|---|",
    ]
    for fault, outcome, name in rows():
        lines.append(f"| {fault} | {outcome} | `{name}` |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(table(), end="")
