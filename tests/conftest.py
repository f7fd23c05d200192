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


@pytest.fixture(scope="session")
def tls(tmp_path_factory) -> Path:
    """A test CA (``ca.pem``) and a loopback certificate it signed
    (``cert.pem``, ``key.pem``)."""
    import trustme

    ca = trustme.CA()
    directory = tmp_path_factory.mktemp("tls")
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    leaf.private_key_pem.write_to_path(directory / "key.pem")
    leaf.cert_chain_pems[0].write_to_path(directory / "cert.pem")
    ca.cert_pem.write_to_path(directory / "ca.pem")
    return directory
