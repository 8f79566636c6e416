"""The package's folders are its layers and every import runs downward; the package stays readable:
no module over 350 lines, no function over 80 (the stage and loop shapes are kept by splitting, not
by growing one function)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "latentwm"
MAX_MODULE, MAX_FUNCTION = 350, 80

# layer -> the layers it may import (besides itself). figures sits beside core: training and
# evaluation draw with it, and it draws with nothing of the package's.
MAY_IMPORT = {
    "core": set(),
    "figures": {"core"},
    "config": {"core"},
    "data": {"core", "config"},
    "models": {"core", "config", "data"},
    "training": {"core", "config", "data", "models", "figures"},
    "evaluation": {"core", "config", "data", "models", "figures"},
    "pipeline": {"core", "config", "data", "models", "training", "evaluation", "figures"},
    "play": {"core", "config", "data", "models", "evaluation", "figures"},
}


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, package: Path = PACKAGE) -> set[str]:
    """The latentwm modules `path` imports, at top level or inside a function (lazy imports count)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (imports are absolute: the layer is in the name)"
            if node.module and node.module.split(".")[0] == "latentwm":
                for a in node.names:  # `from latentwm.core import files` imports the module latentwm.core.files
                    sub = f"{node.module}.{a.name}"
                    out.add(sub if (package.parent / (sub.replace(".", "/") + ".py")).exists() else node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "latentwm"}
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            out.add("importlib")  # a module imported by its name cannot be checked: not allowed
    return out


def graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    return {module_name(p, package): imports(p, package) for p in sorted(package.rglob("*.py"))}


def layer(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def upward(g: dict[str, set[str]]) -> list[str]:
    """Imports against the direction of MAY_IMPORT, and imports by name."""
    wrong = []
    for mod, deps in g.items():
        for dep in sorted(deps):
            if dep == "importlib":
                wrong.append(f"{mod} imports a module by its name")
            elif layer(dep) != layer(mod) and layer(dep) not in MAY_IMPORT.get(layer(mod), ()):
                wrong.append(f"{mod} -> {dep}")
    return wrong


def circles(g: dict[str, set[str]]) -> list[str]:
    """Every import circle a depth-first walk meets, as "a -> b -> a"."""
    state, stack, found = {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for d in sorted(g.get(m, ())):
            if state.get(d) == "open":
                found.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d in g and d not in state:
                visit(d)
        stack.pop()
        state[m] = "done"

    for m in sorted(g):
        if m not in state:
            visit(m)
    return found


def test_every_module_lives_in_a_layer():
    assert set(MAY_IMPORT) == {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    loose = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert not loose, f"modules outside the layer folders: {loose}"


def test_imports_run_downward():
    assert not upward(graph())


def test_no_import_circles():
    assert not circles(graph())


def test_the_checks_find_a_circle_and_an_upward_import(tmp_path):
    """The two tests above can fail: a package with a circle in core and a model that imports training."""
    fake = tmp_path / "latentwm"
    for folder, text in {"core": "from latentwm.core.b import x\n", "models": "from latentwm.training import a\n",
                         "training": "import latentwm.core.a\n"}.items():
        (fake / folder).mkdir(parents=True)
        (fake / folder / "__init__.py").write_text("")
        (fake / folder / "a.py").write_text(text)
    (fake / "core" / "b.py").write_text("def f():\n    from latentwm.core.a import z  # lazy: still an import\n")
    g = graph(fake)
    assert circles(g) == ["latentwm.core.a -> latentwm.core.b -> latentwm.core.a"]
    assert upward(g) == ["latentwm.models.a -> latentwm.training.a"]


def test_modules_and_functions_stay_short():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        name = path.relative_to(PACKAGE)
        if len(text.splitlines()) > MAX_MODULE:
            long.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION:
                    long.append(f"{name}:{node.lineno} {node.name}: {n} lines")
    assert not long, long


SCRIPTS = PACKAGE.parent / "workflow_scripts"


def script_shape(path: Path) -> list[str]:
    """What keeps a workflow script from the one shape (latentwm.pipeline.job): a `main(job)`, then
    `Job.rule(snakemake, __file__).run(main)` for a rule and `Job.by_hand(...).run(main)` by hand,
    nothing else at top level but imports, the docstring and main's helpers."""
    tree = ast.parse(path.read_text())
    wrong = []
    mains = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"]
    if len(mains) != 1 or [a.arg for a in mains[0].args.args] != ["job"]:
        wrong.append("no main(job)")
    runs = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "run"]
    if not any(r.startswith("Job.by_hand(") and r.endswith(".run(main)") for r in runs) and "Job.rule(snakemake, __file__).run(main)" not in runs:
        wrong.append("main is not run in a Job")
    for node in tree.body:
        if isinstance(node, ast.If):
            test = ast.unparse(node.test)
            if test not in ("'snakemake' in globals()", "__name__ == '__main__'"):
                wrong.append(f"top-level if {test}")
        elif not isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef)) and not (
                isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
            wrong.append(f"top-level statement at line {node.lineno}")
    return wrong


def test_every_workflow_script_has_one_shape(tmp_path):
    found = {p.name: script_shape(p) for p in sorted(SCRIPTS.glob("*.py"))}
    assert len(found) >= 20 and not any(found.values()), {k: v for k, v in found.items() if v}
    # and the check can fail: a script of the old shapes
    old = tmp_path / "old.py"
    old.write_text('import sys\n\ndef main(video, out):\n    pass\n\nif "snakemake" in globals():\n'
                   '    main(snakemake.input[0], snakemake.output[0])\nprint(sys.argv)\n')
    assert script_shape(old) == ["no main(job)", "main is not run in a Job", "top-level statement at line 8"]
