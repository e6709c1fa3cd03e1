"""The import graph of the package (README, "Layout"): every import goes down the layers
below, or stays inside its own package; no task imports another task.

Oracle: the source itself, every ``import`` statement (module level or inside a function)
read with ``ast``.
"""

import ast
from pathlib import Path

import seqkit

ROOT = Path(seqkit.__file__).parent
LAYERS = [  # lowest first; a module may import from its own layer or any layer below
    ["seqkit.errors", "seqkit.io", "seqkit.config", "seqkit.compat"],
    ["seqkit.kernels", "seqkit.layers", "seqkit.losses", "seqkit.text", "seqkit.decoding", "seqkit.plots"],
    ["seqkit.training"],
    ["seqkit.tasks"],
    ["seqkit.export", "seqkit.tflite", "seqkit.diagnose", "seqkit.scheduling", "seqkit.serve",
     "seqkit.custom_objects"],
    ["seqkit.cli", "seqkit"],
]


def module_name(path):
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def layer(module):
    for i, names in enumerate(LAYERS):
        if any(module == n or module.startswith(n + ".") for n in names if n != "seqkit"):
            return i
    assert module == "seqkit", f"{module} is in no layer of the layout; add it to LAYERS and the README"
    return len(LAYERS) - 1


def imports(module):
    """The seqkit modules ``module`` imports (``from P import name`` counts P.name when that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "seqkit"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "seqkit":
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                      for a in node.names}
    return found


def task_of(module):
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "tasks" else None


def package_of(module):
    """The package a module belongs to: itself for a package's ``__init__``, else its parent."""
    return module if MODULES[module].name == "__init__.py" else module.rsplit(".", 1)[0]


def test_every_import_goes_down_or_stays_in_its_package():
    upward = []
    for module in MODULES:
        package = package_of(module)
        for target in imports(module):
            same_package = package != "seqkit" and (target == package or target.startswith(package + "."))
            if layer(target) > layer(module) and not same_package:
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_no_task_imports_another():
    crossing = [f"{m} -> {t}" for m in MODULES for t in imports(m)
                if task_of(m) and task_of(t) and task_of(m) != task_of(t)]
    assert crossing == []
    assert {task_of(m) for m in MODULES} - {None} == {"char_lm", "classify", "seq2seq"}


def readme_tree():
    """The paths of the README's layout tree: one line per file, two spaces per folder level."""
    readme = (ROOT.parent / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index("```", readme.index("## Layout")) + 3:]
    block = block[:block.index("```")]
    paths, folders = set(), []
    for line in block.strip("\n").splitlines():
        depth = (len(line) - len(line.lstrip(" "))) // 2
        name = line.split()[0]
        folders = folders[:depth]
        if name.endswith("/"):
            folders.append(name.rstrip("/"))
        else:
            paths.add("/".join([*folders, name]))
    return paths


def test_the_readme_layout_names_every_module():
    files = {str(p.relative_to(ROOT.parent)) for p in ROOT.rglob("*") if p.suffix in (".py", ".cc", ".txt")
             and "__pycache__" not in p.parts and (p.name != "__init__.py" or p.parent in (ROOT, ROOT / "kernels"))}
    in_readme = {p for p in readme_tree() if p.startswith("seqkit/")}
    assert sorted(files - in_readme) == [] and sorted(in_readme - files) == []
