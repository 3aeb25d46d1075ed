"""The gateway's errors: one hierarchy, each saying what failed and where."""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway raises."""


class EnrolmentError(GatewayError):
    """A badge could not be enrolled, or its enrolment record is unusable."""


class BrokerConfigError(GatewayError):
    """The broker's accounts, settings or configuration files are invalid or cannot be written."""


class CertificateError(GatewayError):
    """A certificate or its key is missing, malformed, mismatched or too widely readable."""
