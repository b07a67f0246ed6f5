"""The package's folders are its layers, and data flows one way: a module may import from its
own layer or a lower one, never from a higher one (DESIGN.md, "data flows one way")."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nodelib"
# lowest first; the top-level __init__ (the public facade) sits above every layer
LAYERS = ["errors", "solvers", "gradients", "sde", "models", "data", "training", "plotting"]


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def imports_of(path: Path) -> list[str]:
    """Absolute names of the nodelib modules that ``path`` imports (relative ones resolved)."""
    package = ".".join(("nodelib",) + path.relative_to(PACKAGE).parent.parts)
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            name = ".".join(p for p in (base, node.module) if p)
            found += [name] + [f"{name}.{a.name}" for a in node.names]
    return [m for m in found if m.startswith("nodelib.")]


def test_no_module_imports_a_higher_layer():
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(("nodelib",) + path.relative_to(PACKAGE).with_suffix("").parts)
        own = layer_of(module)
        if own is None:   # nodelib/__init__.py: the public facade
            continue
        for imported in imports_of(path):
            other = layer_of(imported)
            if other is not None and other > own:
                violations.append(f"{module} (layer {LAYERS[own]}) imports {imported} "
                                  f"(layer {LAYERS[other]})")
    assert not violations, "\n".join(violations)


def test_the_check_sees_a_violation():
    """The walk itself works: a solver module importing a model would be found."""
    fake = PACKAGE / "solvers" / "integrate.py"
    assert layer_of("nodelib.solvers.integrate") < layer_of("nodelib.models.blocks")
    assert "nodelib.solvers.problem" in imports_of(fake)   # relative imports are resolved
