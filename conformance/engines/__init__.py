"""The engine registry: built-in adapters, entry points, and ``module:attr`` specs.

An engine is named on the command line (``--engine torch``), through the
``CONFORMANCE_ENGINE`` environment variable, or as ``package.module:Attr`` for any adapter
importable from the current environment. Third-party packages can register names under the
``autograd_conformance.engines`` entry-point group.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from conformance.adapter import AnyEngine, Engine, FunctionalEngine

ENTRY_POINT_GROUP = "autograd_conformance.engines"

BUILTIN: dict[str, str] = {
    "reference": "conformance.engines.reference_engine:ReferenceEngine",
    "torch": "conformance.engines.torch_engines:TorchEngine",
    "torch-foreach": "conformance.engines.torch_engines:TorchForeachEngine",
    "torch-fused": "conformance.engines.torch_engines:TorchFusedEngine",
    "torch-compile": "conformance.engines.torch_compile:TorchCompileEngine",
    "torch-compile-step": "conformance.engines.torch_compile:TorchCompileStepEngine",
    "tinygrad": "conformance.engines.tinygrad_engine:TinygradEngine",
    "paddle": "conformance.engines.paddle_engine:PaddleEngine",
    "mlx": "conformance.engines.mlx_engine:MLXEngine",
}


class UnknownEngine(LookupError):
    """The engine name or spec does not resolve to an adapter."""


def known_engines() -> dict[str, str]:
    """Every engine name this environment knows, with the spec it resolves to."""
    known = dict(BUILTIN)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        known.setdefault(entry.name, entry.value)
    return known


def load_engine(spec: str) -> AnyEngine:
    """An adapter instance for a registered name or a ``module:attr`` spec.

    >>> load_engine("reference").name
    'reference'
    """
    known = known_engines()
    target = known.get(spec, spec)
    if ":" not in target:
        raise UnknownEngine(
            f"unknown engine {spec!r}; known engines: {', '.join(known)}; "
            "or give an adapter as 'package.module:Attr'"
        )
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownEngine(f"engine {spec!r}: cannot import {module_name!r}: {exc}") from exc
    except Exception as exc:  # the adapter module itself is broken (say, a bad Capabilities)
        raise UnknownEngine(
            f"engine {spec!r}: importing {module_name!r} raised {type(exc).__name__}: {exc}"
        ) from exc
    try:
        adapter = getattr(module, attr)
    except AttributeError:
        raise UnknownEngine(f"engine {spec!r}: module {module_name!r} has no {attr!r}") from None
    try:
        engine = adapter() if isinstance(adapter, type) else adapter
    except Exception as exc:
        raise UnknownEngine(f"engine {spec!r}: {target}() raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(engine, (Engine, FunctionalEngine)):
        raise UnknownEngine(
            f"engine {spec!r}: {target} is a {type(engine).__name__}, not a conformance.Engine "
            "or conformance.FunctionalEngine"
        )
    return engine
