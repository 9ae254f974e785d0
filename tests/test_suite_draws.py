"""The programs a derandomized run draws depend on the suite's seed and Hypothesis, nothing else.

Hypothesis mixes the numeric literals of every "local" module (one imported from outside
site-packages and the standard library) into what it draws. Left on, a ``ci`` run's programs,
and so an engine's verdict, changed whenever someone edited a number in the suite or in the
engine's adapter, or installed either one editable instead of not
(:func:`conformance.profiles.draw_without_local_literals`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Draws 80 programs, derandomized, then imports a new local module full of literals a program
# could use (as an edited adapter or an editable install would bring) and draws them again.
SCRIPT = textwrap.dedent("""
    import hashlib, importlib, sys
    from hypothesis import given, settings
    from conformance import profiles, strategies as cs
    from conformance.adapter import Capabilities

    if sys.argv[1] == "without":
        assert profiles.draw_without_local_literals(), "the pinned Hypothesis has no such pool"
    drawn = []

    @settings(derandomize=True, database=None, max_examples=80, deadline=None)
    @given(cs.programs(Capabilities()))
    def draw(program):
        drawn.append(hashlib.sha256(repr(program).encode()).hexdigest())

    draw()
    before, drawn[:] = list(drawn), []
    sys.path.insert(0, sys.argv[2])
    importlib.import_module("edited_adapter")
    draw()
    print(sum(a != b for a, b in zip(before, drawn)), len(before), len(drawn))
""")

LITERALS = "\n".join([
    "LEARNING_RATES = (0.8125, 1.3125, -2.6875, 0.046875, 3.40625)",
    "SIZES = (1, 2, 3, 4, 5, 6, 7, 9, 11, 13, 17)",
    "EPS = (1e-7, 2.5e-5)",
]) + "\n"


def _changed_draws(pool: str, tmp_path: Path) -> tuple[int, int, int]:
    (tmp_path / "edited_adapter.py").write_text(LITERALS)
    result = subprocess.run([sys.executable, "-c", SCRIPT, pool, str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    changed, before, after = map(int, result.stdout.split())
    return changed, before, after


def test_new_local_literals_leave_the_drawn_programs_unchanged(tmp_path: Path) -> None:
    changed, before, after = _changed_draws("without", tmp_path)
    assert before == after == 80
    assert changed == 0, f"{changed} of 80 programs changed when a module was imported"


def test_hypothesis_would_have_drawn_them_otherwise(tmp_path: Path) -> None:
    """Why the pool is emptied, and a check that the test above can fail: with Hypothesis's
    pool of local literals left in place, the same import changes the programs drawn."""
    changed, before, after = _changed_draws("with", tmp_path)
    assert changed > 0 or before != after, "the import changed nothing even with the pool"


# Hypothesis loads its own "ci" profile on import wherever a CI variable is set; the suite's
# profiles must not inherit from it.
PROFILE_SCRIPT = textwrap.dedent("""
    from hypothesis import settings
    import conformance.profiles
    for name in conformance.profiles.PROFILES:
        profile = settings.get_profile(name)
        print(name, profile.derandomize, profile.database is not None)
""")


@pytest.mark.parametrize("ci_variable", [{}, {"GITHUB_ACTIONS": "true"}, {"CI": "1"}])
def test_profiles_do_not_inherit_from_a_ci_environment(ci_variable: dict[str, str]) -> None:
    env = {key: value for key, value in os.environ.items()
           if key not in {"CI", "GITHUB_ACTIONS"}} | ci_variable
    out = subprocess.run([sys.executable, "-c", PROFILE_SCRIPT], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout.split("\n")
    settings_by_name = {line.split()[0]: line.split()[1:] for line in out if line}
    assert settings_by_name == {  # name: derandomize, has a database
        "ci": ["True", "False"],
        "quick": ["True", "False"],
        "dev": ["False", "True"],
        "thorough": ["False", "True"],
        "fuzz": ["False", "True"],
    }
