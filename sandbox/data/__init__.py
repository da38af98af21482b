"""Deterministic synthetic population and member histories."""
