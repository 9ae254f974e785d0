"""The engine adapter protocol: what an engine author implements, in one file, to be tested.

An adapter translates the suite's calls into the engine's API. It never emulates a behaviour
the engine lacks and never hides a divergence: what the engine cannot express is declared in
``capabilities`` (the properties that need it are skipped, with the reason, in the report);
what it does differently from torch is listed in ``known_deviations`` (run as strict xfails).

Most engines with torch-like APIs subclass :class:`conformance.torchlike.TorchLikeEngine`
instead, which implements everything below on top of a torch-like module.
"""

from __future__ import annotations

import abc
import builtins
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from conformance.errors import ErrorKind
from conformance.ops import ALL_OPS

HYPERPARAMETERS = ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize")
"""torch.optim.SGD's hyperparameters, in its signature's order."""

OPTIMIZER_HYPERPARAMETERS: Mapping[str, tuple[str, ...]] = {
    "sgd": HYPERPARAMETERS,
    "adam": ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize"),
    "adamw": ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize"),
}
"""Each optimizer kind's hyperparameters, in its signature's order. ``hyper:<name>`` says an
engine lacks one in every optimizer (no ``maximize`` anywhere), ``hyper:<kind>:<name>`` in one
kind only (an ``Adam`` without ``weight_decay`` where ``SGD`` and ``AdamW`` have it)."""

FEATURES: frozenset[str] = frozenset(
    {f"op:{name}" for name in ALL_OPS}
    | {f"optim:{kind}" for kind in OPTIMIZER_HYPERPARAMETERS}
    | {f"hyper:{name}" for names in OPTIMIZER_HYPERPARAMETERS.values() for name in names
       if name != "lr"}
    | {f"hyper:{kind}:{name}" for kind, names in OPTIMIZER_HYPERPARAMETERS.items()
       for name in names if name != "lr"}
    | {"dtype:float32", "dtype:float64"}
    | {
        "param_groups",  # more than one param group in one optimizer
        "backward_gradient",  # backward(gradient=...) on a non-scalar output
        "backward_one_element",  # loss.backward() on a loss of shape (1,) or (1, 1), as torch
        "pow_scalar_base",  # a Python number ** tensor (2.0 ** x): pow with a scalar base
        "set_hyperparameter",  # changing param_groups[i][key] between steps
        "zero_grad_keep",  # zero_grad(set_to_none=False)
        "index:bool_mask",  # x[mask] with a boolean mask
        "update_no_grad",  # a user's in-place param update under no_grad (w -= lr * w.grad)
        "update_data",  # a user's update through .data (w.data.sub_(lr * w.grad))
        "edit_grad",  # a user's in-place edit of a grad (w.grad.zero_(), w.grad.mul_(0.5))
        "set_grad",  # w.grad = tensor(...): the optimizer-rule properties step on drawn grads
        "create_graph",  # backward(create_graph=True)
        "add_param_group",  # optimizer.add_param_group({...}) after steps
        "state_dict",  # optimizer.state_dict() loaded into a fresh optimizer
        "step_none_grad",  # step() while a param the optimizer holds has grad None (skipped)
        "step_0d_param",  # step() on a 0-d param (shape ()) the optimizer holds
        "step_mixed_dtypes",  # one optimizer holding float32 and float64 params
        "step_float64",  # step() on a float64 param, at float64 precision
        # step() at the param's precision, hyperparameters as Python floats (as torch): without
        # it the end of a run is not compared with the reference's own run (drift)
        "steps_at_param_precision",
    }
)
"""Everything an engine may declare unsupported."""


@dataclass(frozen=True)
class Capabilities:
    """What an engine cannot express, each with the reason shown in the report.

    >>> Capabilities(unsupported={"hyper:dampening": "SGD has no dampening argument"})
    """

    unsupported: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for feature in self.unsupported:
            if feature not in FEATURES:
                known = ", ".join(sorted(FEATURES))
                raise ValueError(f"unknown feature {feature!r} in unsupported; known: {known}")

    def supports(self, feature: str) -> bool:
        if feature not in FEATURES:
            raise ValueError(f"unknown feature {feature!r}")
        return feature not in self.unsupported

    def supports_hyperparameter(self, kind: str, name: str) -> bool:
        """Whether optimizer ``kind`` of the engine takes hyperparameter ``name`` (``lr``
        always): neither ``hyper:<name>`` nor ``hyper:<kind>:<name>`` is declared missing."""
        if name not in OPTIMIZER_HYPERPARAMETERS.get(kind, ()):
            raise ValueError(f"optimizer {kind!r} has no hyperparameter {name!r}")
        return name == "lr" or (self.supports(f"hyper:{name}")
                                and self.supports(f"hyper:{kind}:{name}"))

    @property
    def ops(self) -> frozenset[str]:
        return frozenset(op for op in ALL_OPS if self.supports(f"op:{op}"))

    @property
    def one_element_losses(self) -> bool:
        """Whether a loss may have shape (1,) or (1, 1) for a backward without a gradient."""
        return self.supports("backward_one_element")

    @property
    def scalar_bases(self) -> bool:
        """Whether ``pow`` may take a Python number as its base (``2.0 ** x``)."""
        return self.supports("pow_scalar_base")

    @property
    def bool_masks(self) -> bool:
        """Whether graphs may index with boolean masks."""
        return self.supports("index:bool_mask")

    @property
    def optimizers(self) -> tuple[str, ...]:
        """The optimizer kinds the engine has (``conformance.program.OPTIMIZERS``)."""
        return tuple(kind for kind in OPTIMIZER_HYPERPARAMETERS if self.supports(f"optim:{kind}"))

    @property
    def dtypes(self) -> tuple[np.dtype, ...]:
        names = [name for name in ("float32", "float64") if self.supports(f"dtype:{name}")]
        return tuple(np.dtype(name) for name in names)


ANY: Any = type("Any", (), {"__repr__": lambda self: "ANY"})()
"""A :class:`Diverges` field that matches every value."""


@dataclass(frozen=True)
class Diverges:
    """How a known deviation shows in a run, by what diverged, not by what the program holds:
    its first divergence from the reference (``conformance.compare.divergence``) is right after
    an instruction of a kind in ``at`` (e.g. ``Step``; empty: any), in ``fields`` only (of
    ``conformance.compare.FIELDS``; empty: any) and in every one of ``involves`` (what makes
    it this deviation: a bare "grads" would take every wrong gradient for it), with these
    errors on each side (``ANY``: any;
    None: no error) and, if given, only in params of ``dtypes`` and of ``shapes`` (``((),)``:
    0-d params only), with every one of its differences described by the regular expression
    ``detail`` (``"NaN in different places"``), and all of them smaller than ``smaller_than``
    (``max|engine - reference| / max(1, max|reference|)``: a rounding-sized difference, not
    any). ``crash=True`` describes an
    engine that crashes (an unclassified exception, or its process dies) at such an
    instruction instead, and ``message``, if given, is a regular expression its crash's message
    must contain (``re.search``): one crash told from another at the same instruction.

    A run that agreed after every instruction but whose end drifted from the reference's own
    run (field "drift") matches only a deviation whose ``fields`` name "drift" (empty fields
    do not take it), and ``at`` does not apply to it: a drift is in no one instruction.

    >>> from conformance.program import Backward
    >>> Diverges(at=(Backward,), fields=("error", "grads"), engine_error=None,
    ...          reference_error=ErrorKind.INPLACE_MODIFIED)  # no in-place error, grads move
    """

    at: tuple[type, ...] = ()
    fields: tuple[str, ...] = ()
    involves: tuple[str, ...] = ()
    engine_error: Any = ANY
    reference_error: Any = ANY
    dtypes: tuple[str, ...] = ()
    shapes: tuple[tuple[int, ...], ...] = ()
    detail: str = ""
    smaller_than: float | None = None
    crash: bool = False
    message: str = ""

    def __post_init__(self) -> None:
        if self.message and not self.crash:
            raise ValueError(f"Diverges(message={self.message!r}) describes a crash's message: "
                             "give crash=True with it")
        for name, pattern in (("message", self.message), ("detail", self.detail)):
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"Diverges({name}={pattern!r}) is not a regular expression: "
                                 f"{error}") from None

    def describe(self) -> str:
        """The fields given, as a report shows them: ``at=Step, fields=values``."""
        parts = []
        for name, value in (("at", tuple(kind.__name__ for kind in self.at)),
                            ("fields", self.fields), ("involves", self.involves),
                            ("dtypes", self.dtypes), ("shapes", self.shapes)):
            if value:
                parts.append(f"{name}={'/'.join(str(v) for v in value)}")
        for name, error in (("engine_error", self.engine_error),
                            ("reference_error", self.reference_error)):
            if error is not ANY:
                parts.append(f"{name}={getattr(error, 'name', error)}")
        if self.detail:
            parts.append(f"detail=/{self.detail}/")
        if self.smaller_than is not None:
            parts.append(f"smaller than {self.smaller_than:g}")
        if self.crash:
            parts.append("crash" + (f" saying /{self.message}/" if self.message else ""))
        return ", ".join(parts) or "any divergence"

    def matches(self, program: Any, found: Any, crashed: Any, message: str = "") -> bool:
        """Whether a run shows this: ``found`` is its ``FoundDivergence`` (None where it agreed),
        ``crashed`` the instruction it crashed at (None where it did not crash) and ``message``
        what the crash said."""
        if self.crash:
            return (crashed is not None and (not self.at or isinstance(crashed, self.at))
                    and (not self.message or re.search(self.message, message) is not None))
        if found is None or crashed is not None:
            return False
        if "drift" in found.fields:
            # A drift is in the run's end, after no instruction in particular: only a deviation
            # that names it matches one, whatever its ``at``.
            if "drift" not in self.fields:
                return False
        elif self.at:
            after = program.instructions[found.index - 1] if found.index else None
            if not isinstance(after, self.at):
                return False
        if self.fields and not found.fields <= set(self.fields):
            return False
        if not set(self.involves) <= found.fields:
            return False
        if self.engine_error is not ANY and found.engine_error != self.engine_error:
            return False
        if self.reference_error is not ANY and found.reference_error != self.reference_error:
            return False
        if self.shapes and not found.shapes <= set(self.shapes):
            return False
        if self.detail and not all(re.search(self.detail, problem) for problem in found.problems):
            return False
        if self.smaller_than is not None and not found.largest < self.smaller_than:
            return False
        return not self.dtypes or found.dtypes <= set(self.dtypes)


LOCAL_FIELDS = ("values", "grads", "grad identity", "error")
"""What a local known deviation (``KnownDeviation.local``) may describe: differences the
reference can take from the engine after the instruction and go on from (param values, grads
and which are None, a grad's identity), and the error a ``backward()`` raised. Not grads that
share memory: an engine's grads that share a storage may overlap (accumulating into one
changes the other) or be disjoint views of it (stack's backward), and the observation does not
say which, so the reference cannot take it."""


@dataclass(frozen=True)
class KnownDeviation:
    """A behaviour the engine is known to get wrong, run as a strict xfail where it shows.

    ``property`` names the property it fails — ``"<semantic>::<test name>"`` (e.g.
    ``"sgd::test_param_groups"``), or with the parameter for one case of a parametrized property
    (``"sgd::test_hyperparameter[nesterov]"``) — or is a tuple of such names when one deviation
    fails several. ``evidence`` is a minimal script that shows the deviation on the engine
    itself; a deviation that starts passing, or names no property, is reported as stale. Two
    deviations naming the same property are a usage error: give it one, with both reasons.

    ``applies`` scopes a deviation that many properties could stumble on (say, one
    hyperparameter misbehaving): runs for which it returns True are set aside in every *other*
    property (``hypothesis.assume``), so those keep checking everything else, while the
    properties it names — its witnesses — still check them, as strict xfails.
    """

    property: str | tuple[str, ...]
    reason: str
    evidence: str = ""
    applies: Callable[[Any, Any], bool] | None = None
    name: str = ""
    """A short name for reports (which deviation set a run aside); default: the reason's start."""
    rare: bool = False
    """Reached by chance only (a few programs in a hundred need a particular run of values):
    its witnesses are non-strict xfails, so a run whose examples never reach it passes and the
    report says the deviation was not reached, instead of calling it fixed. Where it is
    reached it is checked as any other (a failure that does not match it still fails)."""
    local: bool = False
    """The deviation is confined to the instructions it describes: what differs right after
    one is state the reference can take from the engine and go on from (param values, grads,
    a grad's identity; or the error a ``backward()`` raised, whose only effect is on grads:
    :data:`LOCAL_FIELDS`), so such an instruction says nothing about the next ones. A run that
    shows it is then not set aside: each instruction it describes is excused
    (``compare.EXCUSED``), the reference takes the engine's params and grads there
    (``interpret.run``'s ``adopt``; after a step it takes the params anyway), and the run is
    compared on, to its end, so a second, unrelated difference still fails it (reports count
    such runs as checked past the deviation). A difference in anything else (an error outside
    a backward, a grad's history, grads sharing memory) is never excused: there a local
    deviation sets the run aside, as any other. Its end is not compared with the reference's
    own run (the drift check): that run has the instructions the engine got wrong. Needs a
    ``diverges`` (a predicate alone would excuse any difference in a program it matches)."""
    diverges: Diverges | None = None
    """How the deviation shows (preferred over ``applies``): runs whose first divergence it
    matches are set aside in every other property, and a witness is an expected failure only
    when its failure matches it — any other divergence fails, in the witness too. ``applies``
    remains for what a divergence cannot describe, and reports name it as a predicate. Given
    both, a run shows the deviation where its divergence matches and the predicate holds too:
    the predicate narrows the divergence (say, to Adam's steps)."""
    """``applies(program, engine_trace)``: True where this deviation shows in a run. When the
    engine crashed (:class:`~conformance.errors.EngineCrash`), ``engine_trace`` is the part
    before the crash, and the crashing instruction is ``program.instructions[len(trace) - 1]``."""

    def __post_init__(self) -> None:
        if not self.properties or not all(isinstance(p, str) and "::" in p
                                          for p in self.properties):
            raise ValueError(f"KnownDeviation.property: expected '<semantic>::<test name>' or a "
                             f"tuple of them, got {self.property!r}")
        diverges = self.diverges
        stepwise = set(diverges.fields) - {"drift"} if diverges is not None else set()
        if self.local and (diverges is None or diverges.crash or not diverges.at
                           or not stepwise or not stepwise <= set(LOCAL_FIELDS)):
            raise ValueError(
                f"KnownDeviation {self.label!r}: local=True excuses a difference the reference "
                f"can take from the engine and go on from, and its diverges is {diverges}: "
                f"give it at=(...) and fields from {LOCAL_FIELDS} (and 'drift', for the "
                "drift its instructions add up to when each is within rounding), or drop local")

    @builtins.property
    def matched_by(self) -> str:
        """How the suite tells a run that shows this deviation, as reports say it."""
        local = "; local: excused at the steps it describes" if self.local else ""
        if self.diverges is not None and self.applies is not None:
            name = getattr(self.applies, "__name__", "predicate")
            return (f"its divergence ({self.diverges.describe()}) where the predicate "
                    f"`{name}` holds too{local}")
        if self.diverges is not None:
            return f"its divergence ({self.diverges.describe()}){local}"
        if self.applies is not None:
            name = getattr(self.applies, "__name__", "predicate")
            return f"a predicate, `{name}` (what a divergence does not say){local}"
        return "nothing: its witnesses fail, and a run showing it elsewhere fails"

    @builtins.property
    def label(self) -> str:
        """How reports name this deviation: ``name``, else the start of ``reason``."""
        if self.name:
            return self.name
        return self.reason if len(self.reason) <= 60 else self.reason[:57].rstrip() + "..."

    @builtins.property  # the field ``property`` shadows the builtin in this class body
    def properties(self) -> tuple[str, ...]:
        """The property ids this deviation names (its witnesses)."""
        return (self.property,) if isinstance(self.property, str) else tuple(self.property)

    def witnessed_by(self, property_id: str) -> bool:
        """Whether ``property_id`` (``"sgd::test_hyperparameter[nesterov]"``) is a witness: it
        is named, or the whole parametrized property is."""
        return property_id in self.properties or property_id.split("[")[0] in self.properties


class Engine(abc.ABC):
    """The protocol every engine under test implements.

    Tensors are the engine's own objects; the suite only passes them back to the adapter.
    Optimizer hyperparameters arrive as torch names and values (``HYPERPARAMETERS``).

    Calls arrive as the program writes them: an optional argument the program leaves out is
    absent from the call (``backward(loss)`` is ``loss.backward()``, not
    ``loss.backward(None, retain_graph=None)``), so the engine's own defaults are what is
    tested. Forward exactly the arguments given, no more.
    """

    name: ClassVar[str] = "unnamed"
    capabilities: ClassVar[Capabilities] = Capabilities()
    known_deviations: ClassVar[Sequence[KnownDeviation]] = ()

    @abc.abstractmethod
    def version(self) -> str:
        """The engine's version string, for the report header."""

    def start_program(self) -> None:  # noqa: B027 -- an optional hook, no-op by default
        """Called once before each program, before its params are made. One adapter object
        runs every program of a run, so anything kept between calls (a compiled step, a
        cache keyed by shapes, a device's state) must be reset here, or one program's state
        leaks into the next. The default does nothing."""

    # --- tensors ---------------------------------------------------------------------------
    @abc.abstractmethod
    def tensor(self, value: np.ndarray, *, requires_grad: bool) -> Any:
        """A new leaf tensor holding a copy of ``value`` (same dtype and shape)."""

    @abc.abstractmethod
    def to_numpy(self, tensor: Any) -> np.ndarray:
        """A copy of the tensor's values (without touching its grad or graph). Called on params
        and on grads: whatever :meth:`grad` returns that is not None."""

    @abc.abstractmethod
    def apply(self, op: str, operands: Sequence[Any], params: Mapping[str, Any]) -> Any:
        """Run one op of ``conformance.ops.OPS``; operands are tensors or Python floats."""

    # --- autograd ----------------------------------------------------------------------------
    @abc.abstractmethod
    def backward(self, loss: Any, **arguments: Any) -> None:
        """``loss.backward(...)`` with exactly the ``arguments`` given: any of ``gradient`` (a
        NumPy array, passed positionally in the script), ``retain_graph`` (True, False or
        None) and ``create_graph``."""

    @abc.abstractmethod
    def grad(self, param: Any) -> Any | None:
        """The param's ``.grad`` object itself (not a copy), or None."""

    @abc.abstractmethod
    def set_grad_none(self, param: Any) -> None:
        """``param.grad = None``."""

    def set_grad(self, param: Any, value: np.ndarray) -> None:
        """``param.grad = tensor(value)`` (the param's dtype and shape): how the optimizer-rule
        properties give each step its gradients. Engines that cannot assign a grad declare
        ``set_grad`` unsupported, and those properties are skipped."""
        raise NotImplementedError(
            f"{type(self).__name__}.set_grad is not implemented: implement it (param.grad = "
            "tensor(value)), or declare 'set_grad' unsupported in capabilities"
        )

    def same_object(self, first: Any, second: Any) -> bool:
        """Whether two grads read at different times are one object (torch: ``is``)."""
        return first is second

    def shares_memory(self, first: Any, second: Any) -> bool:
        """Whether the grads of two different params share memory, so that accumulating into
        one changes the other: their elements overlap (disjoint views of one buffer do not).
        Return False if the engine cannot tell."""
        return False

    # --- optimizer ---------------------------------------------------------------------------
    @abc.abstractmethod
    def sgd(self, groups: Sequence[Mapping[str, Any]], defaults: Mapping[str, Any]) -> Any:
        """``SGD(groups, **defaults)``: groups are dicts with "params" and the keys that group
        overrides (any subset, often none); ``defaults`` holds only the hyperparameters the
        call passes (any subset, ``lr`` too: torch's default lr is 0.001). A group takes each
        key it does not name from the constructor's arguments, else from SGD's defaults.

        torch validates the constructor's ``defaults`` only, never per-group values.
        """

    def optimizer(
        self, kind: str, groups: Sequence[Mapping[str, Any]], defaults: Mapping[str, Any]
    ) -> Any:
        """``torch.optim.<Kind>(groups, **defaults)`` for a kind of
        :data:`conformance.program.OPTIMIZERS` ("sgd", "adam", "adamw"), with groups and
        defaults as :meth:`sgd` describes (Adam's ``betas`` arrive as a tuple). Engines with
        only SGD keep this default and declare ``optim:adam``/``optim:adamw`` unsupported."""
        if kind == "sgd":
            return self.sgd(groups, defaults)
        raise NotImplementedError(
            f"{type(self).__name__}.optimizer does not build {kind!r}: implement it, or declare "
            f"'optim:{kind}' unsupported in capabilities"
        )

    def add_param_group(self, optimizer: Any, group: Mapping[str, Any]) -> None:
        """``optimizer.add_param_group(group)`` (a dict as in :meth:`sgd`'s groups)."""
        raise NotImplementedError(
            f"{type(self).__name__}.add_param_group is not implemented: implement it, or declare "
            "'add_param_group' unsupported in capabilities"
        )

    def state_dict(self, optimizer: Any) -> Any:
        """``optimizer.state_dict()``: passed unchanged to :meth:`load_state_dict`."""
        raise NotImplementedError(
            f"{type(self).__name__}.state_dict is not implemented: implement it and "
            "load_state_dict, or declare 'state_dict' unsupported in capabilities"
        )

    def load_state_dict(self, optimizer: Any, state: Any) -> None:
        """``optimizer.load_state_dict(state)`` into a freshly built optimizer."""
        raise NotImplementedError(
            f"{type(self).__name__}.load_state_dict is not implemented: implement it and "
            "state_dict, or declare 'state_dict' unsupported in capabilities"
        )

    @abc.abstractmethod
    def step(self, optimizer: Any) -> None: ...

    @abc.abstractmethod
    def zero_grad(self, optimizer: Any, **arguments: Any) -> None:
        """``optimizer.zero_grad()``, or ``zero_grad(set_to_none=...)`` when it is given."""

    @abc.abstractmethod
    def set_hyperparameter(self, optimizer: Any, group: int, key: str, value: Any) -> None:
        """``optimizer.param_groups[group][key] = value`` between steps."""

    # --- a user's own updates (the hand-written loop) ----------------------------------------
    def update(self, param: Any, form: str, scalar: float) -> Any:
        """A hand-written in-place update of ``param``, one of
        :data:`conformance.program.UPDATE_FORMS` (``"isub"``: ``with no_grad(): w -= s * w.grad``,
        ``"data"``: ``w.data.sub_(s * w.grad)``, ...). Returns what the user's name ``w`` is
        bound to afterwards (``w -= ...`` rebinds it to the result of ``__isub__``).

        Engines without such updates declare ``update_no_grad`` / ``update_data`` unsupported."""
        raise NotImplementedError(
            f"{type(self).__name__}.update is not implemented: implement it, or declare "
            "'update_no_grad' and 'update_data' unsupported in capabilities"
        )

    def edit_grad(self, param: Any, form: str, scalar: float) -> None:
        """A user's in-place edit of ``param.grad``, one of
        :data:`conformance.program.GRAD_EDIT_FORMS` (``"zero_"``: ``w.grad.zero_()``, ...)."""
        raise NotImplementedError(
            f"{type(self).__name__}.edit_grad is not implemented: implement it, or declare "
            "'edit_grad' unsupported in capabilities"
        )

    def grad_requires_grad(self, grad: Any) -> bool:
        """Whether a grad itself requires grad (after ``backward(create_graph=True)`` when
        the grad depends on params). Engines without ``create_graph`` keep the default."""
        return bool(getattr(grad, "requires_grad", False))

    # --- errors ------------------------------------------------------------------------------
    @abc.abstractmethod
    def classify(self, error: Exception) -> ErrorKind | None:
        """The category of an exception the engine raised; None if it is not one of them."""


class FunctionalEngine(abc.ABC):
    """The protocol of an engine whose arrays have no ``.grad``: gradients come from a function
    transform (``vjp``, ``grad``) and optimizers take gradients as input (MLX, JAX).

    Such an engine runs the properties marked ``functional``: gradient conventions and
    indexing gradients through :meth:`vjp`, and every optimizer-rule property through
    :meth:`optimizer_step` on gradients the suite draws, so a difference in a gradient cannot
    hide one in the optimizer. The other properties test torch's stateful bookkeeping
    (accumulation into ``.grad``, freeing and retaining graphs, ``zero_grad``, a grad's
    identity): they are reported "not applicable: functional engine", never emulated.

    How a program's instructions arrive (``conformance.interpret`` runs them):

    - each param: :meth:`array` of its value;
    - ``Forward``: its ops through :meth:`apply` on the current arrays (an error is the
      forward's, as in torch);
    - ``loss.backward()`` / ``loss.backward(gradient)``: :meth:`vjp` of a function that runs
      the forward again from the params it reaches, at their current arrays; the grads of the
      params it does not reach are None;
    - ``p.grad = tensor(g)`` / ``p.grad = None``: that param's grad for the next steps;
    - ``torch.optim.<Kind>(groups, **defaults)``: :meth:`optimizer`;
    - ``opt.step()``: :meth:`optimizer_step` with the params the optimizer holds, in its
      groups' order, and their grads (None: no grad, the param must not move);
    - ``opt.param_groups[i][key] = value``: :meth:`set_hyperparameter`; a ``state_dict()``
      round trip: :meth:`state_dict` and :meth:`load_state_dict`; ``add_param_group``:
      :meth:`add_param_group` (each optional: declare ``state_dict``, ``add_param_group``,
      ``set_hyperparameter`` unsupported).

    Optimizer calls take hyperparameters as torch names and values, as :meth:`Engine.sgd`
    describes; the adapter translates them to the engine's own (``learning_rate``, ...).
    """

    name: ClassVar[str] = "unnamed"
    capabilities: ClassVar[Capabilities] = Capabilities()
    known_deviations: ClassVar[Sequence[KnownDeviation]] = ()

    @abc.abstractmethod
    def version(self) -> str:
        """The engine's version string, for the report header."""

    def start_program(self) -> None:  # noqa: B027 -- an optional hook, no-op by default
        """As :meth:`Engine.start_program`: called once before each program."""

    @abc.abstractmethod
    def array(self, value: np.ndarray) -> Any:
        """A new array holding a copy of ``value`` (same dtype and shape)."""

    @abc.abstractmethod
    def to_numpy(self, array: Any) -> np.ndarray:
        """A copy of the array's values (params and grads)."""

    @abc.abstractmethod
    def apply(self, op: str, operands: Sequence[Any], params: Mapping[str, Any]) -> Any:
        """Run one op of ``conformance.ops.OPS``; operands are arrays or Python floats."""

    @abc.abstractmethod
    def vjp(self, forward: Callable[[Sequence[Any]], Any], params: Sequence[Any],
            cotangent: Any | None) -> Sequence[Any]:
        """The gradients of ``forward`` (a function of a list of arrays, returning the loss,
        made of :meth:`apply` calls) at ``params``, one per param. ``cotangent`` is None for
        ``loss.backward()`` (the loss must be a scalar: a non-scalar one raises, as torch's
        ``NON_SCALAR_BACKWARD``), else an array of the loss's shape (a wrong shape raises)."""

    @abc.abstractmethod
    def optimizer(self, kind: str, groups: Sequence[Mapping[str, Any]],
                  defaults: Mapping[str, Any]) -> Any:
        """An optimizer (anything; the suite passes it back) of a kind of
        ``conformance.program.OPTIMIZERS``, with groups and defaults as :meth:`Engine.sgd`
        describes; each group's "params" holds the params' arrays at construction. Invalid
        hyperparameters raise here, as torch's constructors do."""

    @abc.abstractmethod
    def optimizer_step(self, optimizer: Any, params: Sequence[Any],
                       grads: Sequence[Any | None]) -> Sequence[Any]:
        """One step: the new arrays of ``params`` (those the optimizer holds, in its groups'
        order) given their ``grads``; a param whose grad is None keeps its value and state."""

    def set_hyperparameter(self, optimizer: Any, group: int, key: str, value: Any) -> None:
        """``optimizer.param_groups[group][key] = value`` between steps."""
        raise NotImplementedError(
            f"{type(self).__name__}.set_hyperparameter is not implemented: implement it, or "
            "declare 'set_hyperparameter' unsupported in capabilities")

    def add_param_group(self, optimizer: Any, group: Mapping[str, Any]) -> None:
        """``optimizer.add_param_group(group)``; its "params" hold arrays."""
        raise NotImplementedError(
            f"{type(self).__name__}.add_param_group is not implemented: implement it, or "
            "declare 'add_param_group' unsupported in capabilities")

    def state_dict(self, optimizer: Any) -> Any:
        """The optimizer's state, passed unchanged to :meth:`load_state_dict`."""
        raise NotImplementedError(
            f"{type(self).__name__}.state_dict is not implemented: implement it and "
            "load_state_dict, or declare 'state_dict' unsupported in capabilities")

    def load_state_dict(self, optimizer: Any, state: Any) -> None:
        """Load :meth:`state_dict`'s result into a freshly built optimizer."""
        raise NotImplementedError(
            f"{type(self).__name__}.load_state_dict is not implemented: implement it and "
            "state_dict, or declare 'state_dict' unsupported in capabilities")

    @abc.abstractmethod
    def classify(self, error: Exception) -> ErrorKind | None:
        """The category of an exception the engine raised; None if it is not one of them."""


AnyEngine = Engine | FunctionalEngine
"""An engine of either tier."""
