"""Benchmarks that print each figure as a ratio to a physical limit measured in the same run."""
