"""Benchmarks of the hub and its sandbox payers (README.md "Benchmarks")."""
