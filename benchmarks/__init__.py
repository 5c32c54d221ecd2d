"""Benchmarks of the exporter at organization scale: `python -m benchmarks` (docs/performance.md)."""
