"""Benchmarks (kept apart from tests): ``python -m bench.run NAME``; each prints a markdown table with
ratios against a baseline measured in the same run. Latest figures live in BENCHMARKS.md."""
