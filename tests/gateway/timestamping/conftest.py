"""Shared fixtures: one evidence CA and TSA per module, and a TSA served over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.pki.ca import EvidenceCA
from gateway.timestamping import TimeStampAuthority, TsaHttpServer


@pytest.fixture(scope="module")
def ca() -> EvidenceCA:
    return EvidenceCA.create("City Hospital No. 1")


@pytest.fixture(scope="module")
def tsa(ca: EvidenceCA) -> TimeStampAuthority:
    key, certificate = ca.issue_tsa_certificate("City Hospital No. 1 Gateway TSA")
    return TimeStampAuthority(key, certificate, ca.certificate)


@pytest.fixture
def server(tsa: TimeStampAuthority) -> Iterator[TsaHttpServer]:
    with TsaHttpServer(tsa, "127.0.0.1", 0) as running:
        yield running

