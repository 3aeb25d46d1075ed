"""Fakes that stand in for hardware absent from a development machine; each follows the real API."""
