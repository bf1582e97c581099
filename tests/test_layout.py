"""The layers import downwards only: pipelines -> teachers, students -> distill (the core)."""
import ast
import pathlib

from conftest import ROOT

# What each layer may import from this project, besides itself.
ALLOWED = {"distill": {"distill"}, "teachers": {"distill", "teachers"},
           "students": {"distill", "students"},
           "pipelines": {"distill", "teachers", "students", "pipelines"}}


def imported_layers(path: pathlib.Path) -> set[str]:
    layers = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                 [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
        layers |= {n.split(".")[0] for n in names} & set(ALLOWED)
    return layers


def test_no_layer_imports_upwards_or_sideways():
    for layer, allowed in ALLOWED.items():
        for path in sorted(pathlib.Path(ROOT, layer).glob("*.py")):
            assert imported_layers(path) <= allowed, (path, imported_layers(path) - allowed)


def test_only_rundir_spells_out_the_run_directory():
    """Artifact names of the run directory appear in distill/rundir.py alone."""
    names = ('"metrics.json"', '"report.md"', '"config.yaml"', '"serving.json"', '"done.json"',
             '"inputs.json"', '"predictions"', '"weights"')
    for layer in ALLOWED:
        for path in pathlib.Path(ROOT, layer).glob("*.py"):
            if path.name != "rundir.py":
                found = [n for n in names if n in path.read_text()]
                assert not found, (path, found)
