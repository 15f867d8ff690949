"""Benchmarks: each prints a table and appends its figures to benchmarks/RESULTS.md.

Run one with `python -m benchmarks.<name>`.
"""
