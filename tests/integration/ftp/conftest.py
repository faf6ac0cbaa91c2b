"""Fixtures for the FTP gateway's integration tests (defined in ftp_harness.py)."""

from ftp_harness import gateway, gateway_factory, no_leaks  # noqa: F401
