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


def _joined_literals(path: pathlib.Path) -> list[tuple[str, int]]:
    """The string literals a file passes to os.path.join after its first argument."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "os.path.join":
            found += [(a.value, node.lineno) for a in node.args[1:]
                      if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    return found


# Joins of a name the run directory also uses, for something that is no run directory.
NOT_RUN_DIRECTORIES = {
    ("distill/text.py", "assets"),  # A SavedModel's assets/ folder.
    ("distill/convert.py", "encoder"),  # `distill convert --output DIR` writes DIR/encoder.
    ("pipelines/cli.py", "encoder"),  # `distill mlm --output DIR` writes DIR/encoder ...
    ("pipelines/cli.py", "train"),  # ... and DIR/train.
}


def test_every_run_directory_path_is_built_by_rundir():
    """No module but distill/rundir.py joins a name of the run directory's layout onto a path
    (the artifacts rundir names, and the stage table's directories)."""
    from distill import stages

    names = {v for v, _ in _joined_literals(pathlib.Path(ROOT, "distill", "rundir.py"))}
    names |= {part for s in stages.STAGES if s.directory for part in s.directory.split("/")}
    assert {"teachers", "cell.json", "trial.json", "teacher", "student"} <= names
    built_elsewhere = []
    for layer in ALLOWED:
        for path in sorted(pathlib.Path(ROOT, layer).glob("*.py")):
            rel = f"{layer}/{path.name}"
            built_elsewhere += [(rel, line, v) for v, line in _joined_literals(path)
                                if v in names and rel != "distill/rundir.py"
                                and (rel, v) not in NOT_RUN_DIRECTORIES]
    assert not built_elsewhere, built_elsewhere
