"""The adapter author's guide stays true: its template adapter runs from a package outside this
repository under ``--engine module:attr``, and the API names the guide and the template use exist.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.adapter import FEATURES
from conformance.errors import ErrorKind

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "adapter-guide.md"
TEMPLATE = ROOT / "docs" / "template_adapter.py"
PROPERTIES = ROOT / "conformance" / "properties"

# A known deviation (the template's torch aliasing, a strict xfail) and two passing properties,
# among the fastest: the run takes seconds, not the ~1.5 minutes of the whole ci profile.
SELECTION = ("test_grads_are_separate_tensors or test_zero_grad_default_sets_none "
             "or test_unused_param_example")


def _docs() -> dict[str, str]:
    return {path.name: path.read_text() for path in (GUIDE, TEMPLATE)}


def test_template_runs_from_a_package_outside_the_repository(tmp_path: Path) -> None:
    assert not tmp_path.resolve().is_relative_to(ROOT), "the copy must live outside the repository"
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    shutil.copy(TEMPLATE, package / "adapter.py")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "conformance", "mypkg.adapter:MyEngine", "--", "-k", SELECTION],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "conformance of my-engine (" in result.stdout, output
    assert "accumulation     1 known deviation" in result.stdout, output
    assert "verdict: CONFORMS" in result.stdout, output
    assert "stale known deviation" not in result.stdout, output


def _feature_names(text: str) -> set[str]:
    """Feature names in backticks or quotes: ``op:x``, ``hyper:x``, ``dtype:x``, ``index:x``."""
    return set(re.findall(r"[`\"']((?:op|hyper|dtype|index):[a-z_0-9]+(?::[a-z_0-9]+)?)[`\"']", text))


@pytest.mark.parametrize("name", ["adapter-guide.md", "template_adapter.py"])
def test_named_features_exist(name: str) -> None:
    named = _feature_names(_docs()[name])
    assert named, f"{name} names no feature: the check would prove nothing"
    assert named <= FEATURES, f"{name} names unknown features: {sorted(named - FEATURES)}"


@pytest.mark.parametrize("name", ["adapter-guide.md", "template_adapter.py"])
def test_named_error_kinds_exist(name: str) -> None:
    named = set(re.findall(r"ErrorKind\.([A-Za-z_]+)", _docs()[name]))
    assert named
    assert named <= set(ErrorKind.__members__), sorted(named - set(ErrorKind.__members__))


def _property_ids() -> set[str]:
    ids = set()
    for module in PROPERTIES.glob("test_*.py"):
        semantic = module.stem.removeprefix("test_")
        for test in re.findall(r"^def (test_\w+)\(", module.read_text(), flags=re.MULTILINE):
            ids.add(f"{semantic}::{test}")
    return ids


@pytest.mark.parametrize("name", ["adapter-guide.md", "template_adapter.py"])
def test_named_properties_exist(name: str) -> None:
    named = set(re.findall(r"(?<![\w./])([a-z_]+::test_\w+)", _docs()[name]))
    assert named
    assert named <= _property_ids(), sorted(named - _property_ids())


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                target = getattr(target, attr)
        except AttributeError:
            return False
        return True
    return False


def test_named_conformance_symbols_exist() -> None:
    """Every ``conformance.x.y`` in the guide's backticks is a module or an attribute."""
    named = set(re.findall(r"`(conformance(?:\.\w+)+)", GUIDE.read_text()))
    assert named
    missing = sorted(name for name in named if not _resolves(name))
    assert not missing, f"the guide names symbols that do not exist: {missing}"
