"""The import rule of README's Layout section, checked on the source: imports follow the data."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# folder -> (its package, the img2mesh packages it may import besides its own)
RULES = {
    "data": ("img2mesh.data", ()),
    "diffusion": ("img2mesh.diffusion", ("img2mesh.data",)),
    "recon": ("img2mesh.recon", ("img2mesh.data",)),
    "recon/mesh": ("img2mesh.recon.mesh", ("img2mesh.data",)),
}


def imported_modules(path: Path, package: str) -> set[str]:
    """Absolute names of the modules a file imports (relative imports resolved against its package)."""
    parts = package.split(".") + list(path.parent.relative_to(ROOT / package_folder(package)).parts)
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[:len(parts) - node.level + 1]
                names.add(".".join(base + ([node.module] if node.module else [])))
            else:
                names.add(node.module)
    return names


def package_folder(package: str) -> str:
    return {p: f for f, (p, _) in RULES.items()}[package]


@pytest.mark.parametrize("folder", sorted(RULES))
def test_imports_follow_the_data(folder):
    package, allowed = RULES[folder]
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files
    for path in files:
        if folder == "recon" and (ROOT / "recon" / "mesh") in path.parents:
            continue  # checked under its own rule
        for name in imported_modules(path, package):
            if not name.startswith("img2mesh"):
                continue
            ok = name.startswith(package) or any(name.startswith(a) for a in allowed)
            if folder == "recon/mesh":
                ok = name.startswith("img2mesh.recon.mesh") or any(name.startswith(a) for a in allowed)
            assert ok, f"{path.relative_to(ROOT)} imports {name}"
