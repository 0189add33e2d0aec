"""The package's layers: decoding (torch only) and analysis (artifacts only) never import the runner,
and analysis never imports decoding; every module says what it is for on its first line."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gpt2_sweep"
# What each layer may import from the package besides itself.
ALLOWED = {
    "decoding": {"errors"},
    "analysis": {"artifact", "errors"},
    "runner": {"artifact", "errors", "decoding", "analysis", "__init__"},
}


def package_imports(path: Path) -> set[str]:
    """The first component under gpt2_sweep of every package module `path` imports."""
    layer = path.parent.name
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            parts = ([layer] if node.level == 1 else []) + (node.module.split(".") if node.module else [])
            found.add(parts[0] if parts else "__init__")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gpt2_sweep."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("gpt2_sweep.")}
    return {name for name in found if name != layer}


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_the_layers_below_it(layer):
    for path in sorted((PACKAGE / layer).glob("*.py")):
        assert package_imports(path) <= ALLOWED[layer], path.name


def test_the_layers_are_folders_of_the_package():
    assert {path.name for path in PACKAGE.iterdir() if path.is_dir() and path.name != "__pycache__"} == set(ALLOWED)


def test_every_module_starts_with_its_promise():
    for path in sorted(PACKAGE.rglob("*.py")):
        docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        assert docstring and docstring.strip(), f"{path.relative_to(PACKAGE)} has no docstring"
