"""``-p optimizer_probe``: any property that draws a program constructing an optimizer fails.

For ``tests/test_broken_engines.py``, over ``-m "not optimizer"`` with the catalogue's
``--catalogue-generate-only`` (programs drawn, nothing run): ``-m optimizer`` may leave a
property out only if it never draws one.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest

import conformance.runner
from conformance.program import MakeOptimizer, Program


@pytest.hookimpl(trylast=True)  # after the catalogue plugin put its generate-only stub in place
def pytest_collection_finish(session: pytest.Session) -> None:
    for module in (conformance.runner, sys.modules.get("conformance.properties.test_laws")):
        if module is not None:
            module.run = _probe(module.run)  # type: ignore[attr-defined]


def _probe(run: Any) -> Any:
    def probed(engine: Any, program: Program, **kwargs: Any) -> Any:
        made = [i for i in program.instructions if isinstance(i, MakeOptimizer)]
        if made:
            raise AssertionError(f"{os.environ.get('PYTEST_CURRENT_TEST', '?')} drew a program "
                                 f"that constructs an optimizer ({made[0].kind}) but has no "
                                 "optimizer marker")
        return run(engine, program, **kwargs)
    return probed
