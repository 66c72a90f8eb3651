"""Packing a scene with every dependency, and the preflight that says what would render wrong."""
