"""Benchmarks: each prints a table and appends a dated section to the log in benchmarks/RESULTS.md
(through benchmarks/common.py, which also describes the machine).

Run one from the repository root with `python -m benchmarks.NAME`.
"""
