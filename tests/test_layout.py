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
}
# Inside recon, its parts in layers: each imports only the layers before it (and img2mesh.data). The modules
# at recon's top (config, stage, field_file, field_outputs) put the layers together and may import them all.
RECON_LAYERS = ("mesh", "sections", "fields", "start", "render", "train", "methods")


def imported_modules(path: Path, package: str) -> set[str]:
    """Absolute names of the modules a file imports (relative imports resolved against its package), except
    those imported for type annotations only (under ``if TYPE_CHECKING:``)."""
    parts = package.split(".") + list(path.parent.relative_to(ROOT / package_folder(package)).parts)
    names = set()

    def visit(node):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            return
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[:len(parts) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
                names.add(module)
                if not node.module:  # from . import losses: the submodules themselves
                    names.update(f"{module}.{a.name}" for a in node.names)
            else:
                names.add(node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return names


def package_folder(package: str) -> str:
    return {p: f for f, (p, _) in RULES.items()}[package]


@pytest.mark.parametrize("folder", sorted(RULES))
def test_imports_follow_the_data(folder):
    package, allowed = RULES[folder]
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files
    for path in files:
        for name in imported_modules(path, package):
            if name.startswith("img2mesh"):
                ok = name.startswith(package) or any(name.startswith(a) for a in allowed)
                assert ok, f"{path.relative_to(ROOT)} imports {name}"


def recon_layer(name: str) -> str | None:
    """The layer of a recon module name (img2mesh.recon.fields.grid -> fields); None for recon's top."""
    parts = name.split(".")
    return parts[2] if len(parts) > 2 and parts[2] in RECON_LAYERS else None


@pytest.mark.parametrize("layer", RECON_LAYERS)
def test_recon_layers_point_one_way(layer):
    """E.g. fields import nothing of render, train or methods; train imports no method; mesh only data."""
    files = [ROOT / "recon" / f"{layer}.py"] if (ROOT / "recon" / f"{layer}.py").is_file() else \
        sorted((ROOT / "recon" / layer).rglob("*.py"))
    assert files
    below = RECON_LAYERS[:RECON_LAYERS.index(layer) + 1]
    for path in files:
        for name in imported_modules(path, "img2mesh.recon"):
            if name.startswith("img2mesh.recon"):
                assert recon_layer(name) in below, f"{path.relative_to(ROOT)} ({layer}) imports {name}"
