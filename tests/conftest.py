"""Longest first: the tests that run the whole suite on an engine in a subprocess (minutes each)
start before the rest, so that under ``pytest -n 2`` the two workers end together instead of
one starting a five-minute run when the other has nothing left.

pytest-xdist hands each worker 200 consecutive tests at first, which would put every long test
on one worker; ``--maxschedchunk=1`` (set here unless given) makes it hand them out as workers
free up, in this order. The order of the rest is unchanged. (Set here, not in pyproject.toml:
a suite run from the repository, ``python -m conformance``, reads that file's options too.)
"""

from __future__ import annotations

import pytest

from conformance import profiles

LONGEST_FIRST = (  # minutes each: a whole suite run, with shrinking (a name, or a name[id])
    "test_control_passes",
    "test_a_crashing_engine_gives_a_report_with_every_selected_property[crashes:SegfaultsOnBadIndex]",
)


def pytest_configure(config: pytest.Config) -> None:
    if config.pluginmanager.hasplugin("xdist") and config.getoption("maxschedchunk") is None:
        config.option.maxschedchunk = 1
    # The project's own derandomized tests draw the same wherever xdist runs them: otherwise
    # Hypothesis mixes in the literals of whichever local modules that worker imported first.
    profiles.draw_without_local_literals()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        for name in (item.name, getattr(item, "originalname", item.name)):
            if name in LONGEST_FIRST:
                return LONGEST_FIRST.index(name)
        return len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the rest keep their order
