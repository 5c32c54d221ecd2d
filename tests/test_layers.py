"""The package layout holds: each package of `exporter/` imports only the layers below it,
and no module imports itself through others.

The layers are import-linter's contract in pyproject.toml ([tool.importlinter]); README.md
(How it works) names the same packages in the same order.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (contract,) = config["tool"]["importlinter"]["contracts"]
    return contract["layers"]


def test_no_package_imports_a_layer_above_it() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "1 kept, 0 broken" in result.stdout


def test_no_module_imports_itself_through_others() -> None:
    """No import cycle between any two modules, within a package too (the layers cover
    only imports between packages). grimp is import-linter's import graph."""
    import grimp

    graph = grimp.build_graph("exporter", cache_dir=None)
    cycles = sorted(
        {
            tuple(sorted((module, imported)))
            for module in graph.modules
            for imported in graph.find_modules_directly_imported_by(module)
            if graph.chain_exists(importer=imported, imported=module)
        }
    )
    assert cycles == []


def test_every_package_and_module_of_the_exporter_is_in_a_layer() -> None:
    named = {part.strip() for layer in _layers() for part in layer.replace(":", "|").split("|")}
    found = {
        path.stem if path.is_file() else path.name
        for path in (ROOT / "exporter").iterdir()
        if (path.is_dir() and (path / "__init__.py").exists()) or (path.suffix == ".py" and not path.name.startswith("__"))
    }
    assert found == named, f"not in a layer: {sorted(found - named)}; no such package: {sorted(named - found)}"


def test_the_readme_names_the_packages_in_the_order_of_the_layers() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("Data flow, one package of `exporter/` per step") :]
    section = section[: section.index("\n## ")]
    bottom_up = [part.strip() for layer in reversed(_layers()) for part in layer.replace(":", "|").split("|")]
    positions = [section.index(f"`{name}/`") for name in bottom_up if name not in ("logs", "cli", "audit", "app", "sandbox")]
    assert positions == sorted(positions), "README's data-flow list is not in the order of the layers"
