"""Shared fixtures: the bundled vendor samples and hypothesis profiles."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

SAMPLES = Path(__file__).parent / "samples"

settings.register_profile("fast", max_examples=60, deadline=None)
settings.register_profile("slow", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))


@pytest.fixture(scope="session")
def samples() -> Path:
    return SAMPLES
