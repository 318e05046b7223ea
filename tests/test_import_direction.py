"""Imports run one way, as design.md's "Which part may import which" draws it: cli → the public API
(``vit_zoo/__init__``) → use / train / exporting → weights + converters → model. Read from the source with
``ast`` (nothing is imported), so a wrong import fails here whether or not a test runs through it."""
from __future__ import annotations

import ast
from pathlib import Path

import vit_zoo

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vit_zoo"
CONVERTERS = ROOT / "converters"  # installed as vit_zoo.converters

# CLI imports of internals that have no meaning for a user of the library, (module, name) -> why.
CLI_ALLOWED = {
    ("vit_zoo.native_output", "native_stderr_silenced"):
        "process plumbing beside vit_zoo/files.py (file descriptor 2 closed while TensorFlow starts), which "
        "export and training share; the command line silences start-up noise with it",
    ("vit_zoo.exporting.formats", "default_output"):
        "`vit-zoo export` needs the output path export would pick before exporting, to refuse overwriting its "
        "input; export(output=None) applies the same rule itself",
    ("vit_zoo.train.start", "HUB_PREFIX"):
        "`vit-zoo export MODEL` tells a path from NAME[:TAG] as finetune's model= does",
    ("vit_zoo.train.start", "refuse_a_name_shadowed_by_a_path"):
        "the same rule: a bare model name that is also a file here is refused, with finetune's message",
}
# Parts above the model (the model imports none of them), and above the converters.
ABOVE_MODEL = ("vit_zoo.weights", "vit_zoo.converters", "vit_zoo.cli", "vit_zoo.train", "vit_zoo.use",
               "vit_zoo.exporting")
ABOVE_CONVERTERS = ("vit_zoo.weights", "vit_zoo.cli", "vit_zoo.train", "vit_zoo.use", "vit_zoo.exporting")


def _is_submodule(module: str) -> bool:
    """True when ``module`` (``vit_zoo.x.y``) names a module or package of the tree, not an attribute."""
    parts = module.split(".")[1:]
    base = CONVERTERS if parts[:1] == ["converters"] else PACKAGE
    parts = parts[1:] if parts[:1] == ["converters"] else parts
    path = base.joinpath(*parts) if parts else base
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def vit_zoo_imports(path: Path):
    """``(line, module, name)`` of every import of vit_zoo in ``path``, in functions too. ``module`` is
    "vit_zoo" for the public API (``import vit_zoo``, ``from vit_zoo import load``), else the vit_zoo module
    imported (``from vit_zoo import converters`` imports ``vit_zoo.converters``); ``name`` the name taken
    from it (None for ``import``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, None) for alias in node.names
                      if alias.name.split(".")[0] == "vit_zoo"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "vit_zoo":
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.append((node.lineno, child, None) if _is_submodule(child)
                             else (node.lineno, node.module, alias.name))
    return found


def _sources(*folders: Path):
    return sorted(file for folder in folders for file in folder.rglob("*.py"))


def _where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


def test_the_command_line_imports_the_library_through_the_public_api():
    wrong = [f"{_where(path, line)} imports {module}" + (f".{name}" if name else "")
             for path in _sources(PACKAGE / "cli") for line, module, name in vit_zoo_imports(path)
             if module != "vit_zoo" and not module.startswith("vit_zoo.cli")
             and (module, name) not in CLI_ALLOWED]
    assert not wrong, "the CLI reaches into the library past its public API (vit_zoo/__init__.py):\n" + \
        "\n".join(wrong)


def test_the_allow_list_holds_only_imports_the_command_line_makes():
    made = {(module, name) for path in _sources(PACKAGE / "cli") for _, module, name in vit_zoo_imports(path)}
    assert set(CLI_ALLOWED) <= made, f"allowed but no longer imported: {sorted(set(CLI_ALLOWED) - made)}"


def test_the_model_imports_nothing_above_it():
    wrong = [f"{_where(path, line)} imports {module}" for path in _sources(PACKAGE / "model")
             for line, module, _ in vit_zoo_imports(path)
             if module == "vit_zoo" or module.startswith(tuple(part + "." for part in ABOVE_MODEL))
             or module in ABOVE_MODEL]
    assert not wrong, "the model part imports a part above it:\n" + "\n".join(wrong)


def test_converters_import_neither_downloads_nor_the_command_line():
    wrong = [f"{_where(path, line)} imports {module}" for path in _sources(CONVERTERS)
             for line, module, _ in vit_zoo_imports(path)
             if module == "vit_zoo" or module.startswith(tuple(part + "." for part in ABOVE_CONVERTERS))
             or module in ABOVE_CONVERTERS]
    assert not wrong, "the converters import a part above them:\n" + "\n".join(wrong)


def test_no_part_below_the_command_line_imports_the_public_api():
    parts = [PACKAGE / part for part in ("model", "weights", "use", "train", "exporting")]
    wrong = [f"{_where(path, line)} imports vit_zoo" + (f".{name}" if name else "")
             for path in _sources(*parts, CONVERTERS) for line, module, name in vit_zoo_imports(path)
             if module == "vit_zoo"]
    assert not wrong, "a part imports the top-level package (import the module it needs instead):\n" + \
        "\n".join(wrong)


def _defined_names(path: Path) -> set:
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.ImportFrom):
            names.update(alias.asname or alias.name for alias in node.names)
    return names


def test_every_public_name_is_defined_where_the_public_api_says():
    assert vit_zoo.__all__ == sorted(vit_zoo._PUBLIC)
    for name, module in vit_zoo._PUBLIC.items():
        parts = module.split(".")[1:]
        base, parts = (CONVERTERS, parts[1:]) if parts[:1] == ["converters"] else (PACKAGE, parts)
        path = base.joinpath(*parts)
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        if name in vit_zoo._MODULES:
            assert path.is_file(), (name, module)
        else:
            assert name in _defined_names(path), f"vit_zoo.{name}: not defined in {module}"
