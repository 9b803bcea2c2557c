"""The layers of steercore hold: who may import whom, no cycles, no private names across modules, nothing heavy
when Snakemake parses the DAG, and the schema's enums equal the code's registries."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from checks import workflow_copy
from steercore.core.methods import METHODS
from steercore.experiments.preset import ROOT
from steercore.scorers.registry import CONCEPT_SCORERS

PACKAGE = ROOT / "steercore"
HEAVY = ("matplotlib", "diffusers", "transformers")

# layer -> the steercore layers it may import (besides itself); see each package's docstring
ALLOWED = {
    "core": set(),
    "hub": {"core"},
    "tables": {"core"},
    "models": {"core", "hub"},
    "testbed": {"core", "hub", "models"},
    "scorers": {"core", "hub", "tables", "testbed"},
    "experiments": {"core", "hub", "models", "testbed", "scorers"},
    "figures": {"core", "tables", "experiments"},
    "stages": {"core", "hub", "tables", "models", "testbed", "scorers", "experiments", "figures"},
    "__init__": {"core", "models"},
}


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = modules()


def layer(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def imports(path: Path, *, top_level_only: bool = False) -> list[tuple[str, list[str], int]]:
    """(imported steercore module, names taken from it, line) for each import in a file."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    out = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}:{node.lineno}: relative import; use absolute steercore.… imports")
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("steercore"):
            names = [a.name for a in node.names]
            target = node.module
            # `from steercore.x import y` where y is a submodule imports steercore.x.y
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
            out += [(s, [], node.lineno) for s in subs] or [(target, names, node.lineno)]
        elif isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("steercore")]
    return out


def test_every_layer_imports_only_the_layers_below_it():
    bad = []
    for module, path in MODULES.items():
        own = layer(module)
        for target, _, line in imports(path):
            other = layer(target)
            if other != own and other not in ALLOWED[own]:
                bad.append(f"{path.relative_to(ROOT)}:{line}: {own} imports {target}")
    assert not bad, "\n".join(bad)


def test_core_imports_no_model_or_plotting_library():
    for module, path in MODULES.items():
        if layer(module) != "core":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not [n for n in names if n.split(".")[0] in HEAVY], f"{path}: imports {names}"


def test_no_import_cycles():
    graph = {m: {t for t, _, _ in imports(p, top_level_only=True) if t in MODULES and t != m}
             for m, p in MODULES.items()}
    # a module imports its parent packages implicitly; only steercore/__init__ re-exports from below
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in graph[m]:
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(n):] + [n]))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m)


def test_no_private_name_is_imported_across_modules():
    bad = [f"{p.relative_to(ROOT)}:{line}: {n} from {t}" for m, p in MODULES.items() for t, names, line in imports(p)
           for n in names if n.startswith("_") and not n.startswith("__")]
    assert not bad, "\n".join(bad)


def test_the_checker_sees_what_it_checks():
    """The import parser finds layered imports (guards the tests above against passing vacuously)."""
    found = {t for t, _, _ in imports(PACKAGE / "stages" / "generate.py")}
    assert {"steercore.core.plan", "steercore.models.hooks", "steercore.tables"} <= found
    assert layer("steercore.models.hooks") == "models" and "figures" not in ALLOWED["models"]


def test_parsing_the_dag_loads_no_plotting_or_model_library(tmp_path):
    workflow_copy(tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "snakemake", "-n", "--cores", "1"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    loaded = set(re.findall(r"\|\s+([\w.]+)\s*$", res.stderr, re.M))
    assert "steercore.experiments.preset" in loaded  # the import log is read (the DAG did load steercore)
    assert not [m for m in loaded if m.split(".")[0] in HEAVY], sorted(m for m in loaded if m.split(".")[0] in HEAVY)


def test_schema_enums_equal_the_registries():
    schema = yaml.safe_load((ROOT / "config" / "experiment.schema.yaml").read_text())
    assert schema["properties"]["methods"]["items"]["enum"] == list(METHODS)
    assert schema["$defs"]["scorer"]["enum"] == ["auto", *CONCEPT_SCORERS]
