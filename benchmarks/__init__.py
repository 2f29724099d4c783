"""Benchmark suite for the helpers package: ``python -m benchmarks.run [--smoke] [--json PATH]``."""
