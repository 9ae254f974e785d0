"""Hypothesis settings profiles for the suite: ``ci`` (the gate), ``quick``, ``dev``,
``thorough`` and ``fuzz`` (the nightly tier), and the fuzz tier's time budget.

``ci`` is derandomized with no example database and reports one failure per property, so two
runs on the same engine give the same verdicts and the same reports. ``quick`` is ``ci`` with a
third of its examples: a smoke run, for a change that needs a first answer in minutes (and CI's
run of the slowest built-in engine); an engine's known deviations were recorded against ``ci``'s
programs, which ``quick`` may not reach, so there a witness that does not reach its deviation
passes and the report says so, as under random seeds. ``thorough`` keeps the
database so failures found once are replayed first next time. ``fuzz`` draws from random seeds,
many examples per property, and saves its failures into a database that many machines can share
(:mod:`conformance.database`); the gate replays them (``--database URL --replay``).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator

from hypothesis import HealthCheck, Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase

from conformance.database import FUZZ_DIRECTORY

PROFILES = ("ci", "quick", "dev", "thorough", "fuzz")
DEFAULT_PROFILE = "ci"
# The profile known deviations are recorded against: only its runs draw the programs a witness
# was seen failing on, every time, so only there is a witness that passes an error (strict).
RECORDED_PROFILE = "ci"

_COMMON = {
    "deadline": None,  # engines differ wildly in per-call overhead; speed is benchmarked, not tested
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "print_blob": True,
}

# Every profile starts from Hypothesis's own defaults, not from whatever profile is loaded when
# this module is imported: where a CI variable is set (GITHUB_ACTIONS, CI, ...) Hypothesis loads
# its built-in "ci" profile at import, and a profile registered without a parent would inherit
# its derandomize=True and database=None, so that ``--profile dev`` drew the same examples every
# run and ``thorough`` saved nothing, on exactly the machines where users run them.
_HYPOTHESIS_DEFAULTS = settings.get_profile("default")

CI_EXAMPLES = 120
"""Programs per property under ``ci``: what a ci run of torch's 133 properties on 2 cores
does in under a minute (46 s with -n auto; 200 took 73 s), measured in docs/benchmarks.md."""

# report_multiple_bugs=False: after a first failure Hypothesis would look for others for up
# to 10 *seconds*, which makes a failing run's example counts depend on the machine's load.
settings.register_profile(
    "ci",
    _HYPOTHESIS_DEFAULTS,
    derandomize=True,
    database=None,
    max_examples=CI_EXAMPLES,
    report_multiple_bugs=False,
    **_COMMON,
)
settings.register_profile("quick", settings.get_profile("ci"), max_examples=20)
settings.register_profile("dev", _HYPOTHESIS_DEFAULTS, max_examples=30, **_COMMON)
settings.register_profile("thorough", _HYPOTHESIS_DEFAULTS, max_examples=1000, **_COMMON)
# Without --budget, 10_000 programs per property: about 2.5 hours for torch's 133 properties at
# the 142 programs/s docs/benchmarks.md measured. Its database is the directory FUZZ_DIRECTORY
# unless --database names another, or a Redis server. No explain phase: it names the lines of
# the suite's own comparison code that failing examples ran, and took 18 s of a 21 s run that
# caught tests.broken_engines.accumulation:OverwritesGrad; the gate shows the shrunk script.
settings.register_profile(
    "fuzz",
    _HYPOTHESIS_DEFAULTS,
    derandomize=False,
    database=DirectoryBasedExampleDatabase(FUZZ_DIRECTORY),
    max_examples=10_000,
    phases=tuple(phase for phase in Phase if phase != Phase.explain),
    **_COMMON,
)

def derandomized(name: str) -> bool:
    """Whether the profile ``name`` draws the same programs every run."""
    return bool(settings.get_profile(name).derandomize)


def draw_without_local_literals() -> bool:
    """Stop Hypothesis from mixing numeric literals of "local" modules into what it draws.

    Hypothesis harvests the literals of every module imported from outside site-packages and
    the standard library, and draws one of them for about 5% of choices
    (``hypothesis.internal.conjecture.providers._get_local_constants``). Which modules count
    as local depends on how the suite and the engine's adapter were installed (editable or
    not), and the pool changes whenever anyone edits a number in them: a derandomized ``ci``
    run then draws other programs, and an engine's verdict changed with no change to it or to
    the semantics. Hypothesis has no setting for it, so the pool is replaced by an empty one
    (its own global constants, fixed per Hypothesis version, stay). Returns whether that was
    possible; ``tests/test_suite_draws.py`` checks it still works with the pinned Hypothesis.
    """
    try:
        from hypothesis.internal.conjecture import providers

        empty = providers.Constants()
        cache = providers.CONSTANTS_CACHE
        providers._get_local_constants  # noqa: B018 - present, or the pool works otherwise
    except (ImportError, AttributeError):
        return False
    providers._get_local_constants = lambda: empty
    cache.cache.clear()  # allowed constants already chosen per choice kind, local ones among them
    return True


NO_SHRINK = tuple(phase for phase in Phase if phase != Phase.shrink)
"""Phases for a run that only needs to know *whether* an engine fails (the broken-engine
catalogue): shrinking the counterexample is the slow part and adds nothing there."""


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([smh]?)")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600}


def parse_budget(text: str) -> float:
    """Seconds in a duration: ``90``, ``90s``, ``10m``, ``1.5h``.

    >>> parse_budget("10m")
    600.0
    """
    match = _DURATION.fullmatch(text.strip())
    seconds = float(match[1]) * _UNIT_S[match[2]] if match else math.nan
    if not seconds > 0:
        raise ValueError(f"expected a positive duration such as 90s, 10m or 2h, got {text!r}")
    return seconds


MIN_EXAMPLES = 10
"""A property's first run under a budget, and all it gets once the budget is spent: no
property goes unchecked because those before it took the time."""
CHUNK_SECONDS = 5.0
"""The longest single Hypothesis run under a budget. Each run replays the database first, so a
failure another machine saved is picked up within this, and so is a lost database server."""


class Budget:
    """A wall-clock budget for a whole run, shared out over its properties as each starts.

    A property gets the time left divided by the properties left: one that fails early
    leaves its time to the rest. Under xdist every worker holds the whole budget and expects
    an even part of the properties (xdist's ``workercount``), since the workers run side
    by side. A property spends its share in :meth:`runs`.
    """

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.properties_left = 1

    def expect(self, properties: int, *, workers: int = 1) -> None:
        """The number of properties the run will share the budget over."""
        self.properties_left = max(1, math.ceil(properties / max(1, workers)))

    def share(self) -> float:
        """The next property's share, in seconds (0 once the budget is spent)."""
        left = max(0.0, self.deadline - time.monotonic())
        share = left / max(1, self.properties_left)
        self.properties_left -= 1
        return share

    def runs(self) -> Iterator[int]:
        """``max_examples`` for each Hypothesis run of the next property: :data:`MIN_EXAMPLES`
        first, then as many as the last run's rate says fit in the time left of its share (at
        most :data:`CHUNK_SECONDS` at a time), until that is spent. Each run draws from a fresh
        random seed; Hypothesis has no time limit of its own, so the runs are the way to stop
        on time."""
        stop = time.monotonic() + self.share()
        examples = MIN_EXAMPLES
        while examples >= 1:
            started = time.monotonic()
            yield examples
            now = time.monotonic()
            rate = examples / max(now - started, 1e-3)
            # Half the time left at a time: later examples are larger than the ones the rate
            # was measured on (Hypothesis grows them), so a run sized to all of it overshoots.
            examples = int(rate * min((stop - now) / 2, CHUNK_SECONDS))
