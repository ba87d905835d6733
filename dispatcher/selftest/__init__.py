"""Continuous self-test: the center calls its own hotline and raises an alarm when it fails."""
