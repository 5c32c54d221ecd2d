"""Fixtures of the fault-injection suite: the sandbox with a FaultInjector in front of moto."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from exporter.sandbox import Sandbox
from exporter.sandbox.faults import FaultInjector


@pytest.fixture
def faults(sandbox: Sandbox) -> Iterator[FaultInjector]:
    """The sandbox's fault injector, with no rule at the start and the end of each test."""
    injector = FaultInjector.install(sandbox)
    injector.clear()
    yield injector
    injector.clear()
