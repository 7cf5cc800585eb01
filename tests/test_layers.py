"""The import layers of DESIGN.md, checked on the source with ``ast``: no qcslib module imports another inside a
function (the way to dodge a cycle), and the lower layers (``data``, and ``video``'s decode, encode, track, smooth,
draw and report) import nothing from ``train``, ``analysis`` or the video orchestration."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "qcslib"
LOWER_VIDEO = ["decode", "encode", "track", "smooth", "draw", "report"]
UPPER = ("qcslib.train", "qcslib.analysis", "qcslib.video.predict")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The absolute names an import statement of ``module`` brings in (``from . import x``: the submodule x too)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level == 0:
        return [node.module]
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = ".".join(package[: len(package) - node.level + 1])
    if node.module:
        return [f"{base}.{node.module}"]
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def imports(source: str, module: str, is_package: bool = False) -> list[tuple[str, bool]]:
    """Each qcslib name ``source`` imports → (name, whether the import is inside a function)."""
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.extend((name, in_function) for name in imported(child, module, is_package)
                             if name == "qcslib" or name.startswith("qcslib."))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(source), False)
    return found


def modules() -> list[tuple[str, Path]]:
    return [(module_name(path), path) for path in sorted(PACKAGE.rglob("*.py"))]


def test_the_checker_sees_relative_imports_inside_functions_and_resolves_them():
    source = ("from ..faces import Face\n"
              "def f():\n    from ..train import fit\n"
              "class C:\n    def g(self):\n        from . import smooth\n")
    assert imports(source, "qcslib.video.track") == [("qcslib.faces", False), ("qcslib.train", True),
                                                      ("qcslib.video", True), ("qcslib.video.smooth", True)]
    assert imports("from .decode import Frame\n", "qcslib.video", is_package=True) == [("qcslib.video.decode", False)]


def test_no_qcslib_module_imports_another_inside_a_function():
    inside = [f"{path.relative_to(ROOT)}: {name}" for module, path in modules()
              for name, in_function in imports(path.read_text(), module, path.name == "__init__.py") if in_function]
    assert inside == []


@pytest.mark.parametrize("module", [f"qcslib.video.{m}" for m in LOWER_VIDEO] + ["qcslib.data"])
def test_the_lower_layers_import_nothing_from_the_upper_ones(module):
    files = [(m, p) for m, p in modules() if m == module or m.startswith(module + ".")]
    assert files
    upward = [f"{p.relative_to(ROOT)}: {name}" for m, p in files
              for name, _ in imports(p.read_text(), m, p.name == "__init__.py")
              if name == "qcslib.video" or name.startswith(UPPER)]
    assert upward == []
