"""The architecture as a test: every import goes down the layers, never up or sideways.

    0 label_models                        imprecise labels; imports nothing of ours
    0 wsl_diffusion._validate             the number check every config runs; nothing of ours
    1 wsl_diffusion.data, .model          datasets and image files; the networks
    2 wsl_diffusion.posterior, .sampling  the diffusion classifier and the samplers
    3 wsl_diffusion.config                what a run is
    3 wsl_diffusion.schedule_fit          the posterior's schedule fitted to a model and its labels
    4 wsl_diffusion.run                   a run directory read and written
    5 wsl_diffusion.classifier, .eval     inference and measurement (never the training loop)
    6 wsl_diffusion.training              the loop and its losses
    7 wsl_diffusion.bench, .estimator     the benchmark; the scikit-learn estimator
    8 wsl_diffusion (the package's __init__, the public API)
    9 cli                                 the only place that knows command-line flags

A module may import a module of a lower layer, or one of its own unit (the same sub-package or
module); two units of one layer stay independent. Imports inside functions count as well.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("label_models", "wsl_diffusion", "cli")

LAYERS: dict[str, int] = {
    "label_models": 0, "wsl_diffusion._validate": 0,
    "wsl_diffusion.data": 1, "wsl_diffusion.model": 1,
    "wsl_diffusion.posterior": 2, "wsl_diffusion.sampling": 2,
    "wsl_diffusion.config": 3, "wsl_diffusion.schedule_fit": 3,
    "wsl_diffusion.run": 4,
    "wsl_diffusion.classifier": 5, "wsl_diffusion.eval": 5,
    "wsl_diffusion.training": 6,
    "wsl_diffusion.bench": 7, "wsl_diffusion.estimator": 7,
    "wsl_diffusion": 8,
    "cli": 9,
}


def unit_of(module: str) -> str | None:
    """The most specific LAYERS key that `module` belongs to (None for third-party modules)."""
    best = None
    for unit in LAYERS:
        if (module == unit or module.startswith(unit + ".")) and (best is None or len(unit) > len(best)):
            best = unit
    return best


def module_name(path: str) -> str:
    parts = Path(path).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: str, source: str) -> list[tuple[int, str]]:
    """(line, module) for every import in a file, relative imports resolved; `from pkg import x`
    yields pkg.x as well as pkg, since x may be a submodule."""
    this = module_name(path)
    package = this if path.endswith("__init__.py") else this.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(source, filename=path)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            out.append((node.lineno, base))
            out += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return out


def layer_violations(sources: dict[str, str]) -> list[str]:
    """Every import in {repo-relative path: source} that climbs a layer or crosses to another unit
    of the same layer, as 'path:line: importer (layer) -> imported (layer)'."""
    problems = []
    for path, source in sources.items():
        importer = unit_of(module_name(path))
        if importer is None:
            continue
        for line, module in imported_modules(path, source):
            target = unit_of(module)
            if target is None or target == importer:
                continue
            if LAYERS[target] >= LAYERS[importer]:
                problems.append(f"{path}:{line}: {importer} ({LAYERS[importer]}) -> {module} ({LAYERS[target]})")
    return sorted(set(problems))


def repo_sources() -> dict[str, str]:
    return {str(p.relative_to(ROOT)): p.read_text() for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def test_every_import_goes_down_the_layers():
    sources = repo_sources()
    assert len(sources) > 40  # the walk found the packages
    assert layer_violations(sources) == []


def test_every_module_belongs_to_a_layer():
    unplaced = [path for path in repo_sources() if unit_of(module_name(path)) is None]
    assert unplaced == []


def test_the_check_catches_each_kind_of_violation():
    bad = {
        "wsl_diffusion/classifier.py": "from wsl_diffusion.training.loop import train\n",  # inference -> training
        "label_models/io.py": "import wsl_diffusion.data.datasets\n",  # label model -> model layer
        "wsl_diffusion/data/sources.py": "from wsl_diffusion.model import network\n",  # sideways in layer 1
        "wsl_diffusion/eval/condensation.py": "def f():\n    from cli.main import main\n",  # up, inside a function
        "wsl_diffusion/posterior.py": "from .run import load_model\n",  # relative, up
    }
    found = layer_violations(bad)
    assert {problem.split(":")[0] for problem in found} == set(bad), found
    ok = {"wsl_diffusion/eval/condensation.py": "from wsl_diffusion.run import load_run\nfrom . import feature_net\n",
          "cli/train.py": "from wsl_diffusion.training.loop import train\nimport torch\n"}
    assert layer_violations(ok) == []
