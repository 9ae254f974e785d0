"""Hypothesis settings profiles for the suite: ``ci`` (the gate), ``dev`` and ``thorough``.

``ci`` is derandomized with no example database and reports one failure per property, so two
runs on the same engine give the same verdicts and the same reports; ``thorough`` keeps the
database so failures found once are replayed first next time.
"""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, settings

PROFILES = ("ci", "dev", "thorough")
DEFAULT_PROFILE = "ci"

_COMMON = {
    "deadline": None,  # engines differ wildly in per-call overhead; speed is benchmarked, not tested
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "print_blob": True,
}

# report_multiple_bugs=False: after a first failure Hypothesis would look for others for up
# to 10 *seconds*, which makes a failing run's example counts depend on the machine's load.
settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    max_examples=60,
    report_multiple_bugs=False,
    **_COMMON,  # type: ignore[arg-type]
)
settings.register_profile("dev", max_examples=30, **_COMMON)  # type: ignore[arg-type]
settings.register_profile("thorough", max_examples=1000, **_COMMON)  # type: ignore[arg-type]

NO_SHRINK = tuple(phase for phase in Phase if phase != Phase.shrink)
"""Phases for a run that only needs to know *whether* an engine fails (the broken-engine
catalogue): shrinking the counterexample is the slow part and adds nothing there."""
