"""Optimisation: one pass per file under ``passes/``, and the planner that builds, gates and picks variants."""
