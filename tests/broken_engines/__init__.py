"""The proof of power: deliberately broken autograd engines that the suite must catch, and
correct engines built differently (controls) that it must pass.

Each broken engine is torch with ONE plausible bug, placed where a real engine would have it:
an ``autograd.Function`` with a wrong backward (``conventions``, ``indexing``,
``broadcasting``), an optimizer whose ``step``/``zero_grad`` has one wrong line (``sgd``,
``zero_grad``), an AccumulateGrad rule (``accumulation``), or the engine's ``backward`` entry
point (``retain_graph``, ``backward_errors``). Observations are never corrupted in the adapter.

Every engine class says where it should be caught (``catches_in``: property modules,
properties or single cases, tried first by ``--catalogue-order=targeted``) and
whether it is a control; :func:`catalogue` lists them all as ``--engine`` specs::

    python -m pytest --pyargs conformance -p no:cacheprovider \\
        --engine tests.broken_engines.sgd:DampeningOnFirstStep
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass

MODULES = (
    "accumulation",
    "retain_graph",
    "backward_errors",
    "indexing",
    "conventions",
    "broadcasting",
    "zero_grad",
    "sgd",
    "ops",
    "crashes",
    "controls",
    "as_written",
    "adam",
    "rounding",
    "functional",
)


@dataclass(frozen=True)
class Entry:
    """One catalogued engine."""

    spec: str  # "tests.broken_engines.sgd:DampeningOnFirstStep"
    name: str  # the engine's ``name``
    control: bool
    catches_in: tuple[str, ...]
    bug: str  # the first line of the class docstring
    options: tuple[str, ...] = ()  # extra options for the suite's run (``suite_options``)
    crashes: bool = False
    """Whether the bug may show as a crash (an exception no ErrorKind describes, or a dead
    process) rather than a divergence: the engine's ``crashes`` class attribute."""
    isolated: bool = False
    """Whether the engine must run in the suite's worker process (its ``isolated`` class
    attribute): it ends the process it runs in (a segfault, an abort, an exit, a hang). The
    others are Python engines whose bugs raise at worst; the catalogue runs them in the suite's
    own process (``--no-isolate``), which costs a fifth less CPU and checks the same programs
    the same way (isolation has its own tests, in tests/test_suite_isolation.py)."""

    @property
    def short(self) -> str:
        return self.spec.rsplit(".", 1)[-1]


def catalogue(spec_prefix: str = "tests.broken_engines") -> list[Entry]:
    """Every engine class defined in :data:`MODULES`, broken ones first, in source order;
    specs name the modules under ``spec_prefix`` (how a subprocess run from the repository
    root imports them).

    >>> catalogue()[0].short
    'accumulation:OverwritesGrad'
    """
    from conformance.adapter import Engine, FunctionalEngine

    entries = []
    for module_name in MODULES:
        module = importlib.import_module(f"{__name__}.{module_name}")
        classes = [
            cls for _, cls in inspect.getmembers(module, inspect.isclass)
            if cls.__module__ == module.__name__ and issubclass(cls, (Engine, FunctionalEngine))
            and not cls.__name__.startswith("_") and hasattr(cls, "control")
        ]
        classes.sort(key=lambda cls: inspect.getsourcelines(cls)[1])
        for cls in classes:
            doc = inspect.getdoc(cls) or ""
            entries.append(Entry(
                spec=f"{spec_prefix}.{module_name}:{cls.__name__}",
                name=cls.name,
                control=bool(cls.control),  # type: ignore[attr-defined]
                catches_in=tuple(cls.catches_in),  # type: ignore[attr-defined]
                bug=doc.split("\n\n")[0].replace("\n", " ").removeprefix("CONTROL: "),
                options=tuple(getattr(cls, "suite_options", ())),
                crashes=bool(getattr(cls, "crashes", False)),
                isolated=bool(getattr(cls, "isolated", False)),
            ))
    return sorted(entries, key=lambda entry: entry.control)
