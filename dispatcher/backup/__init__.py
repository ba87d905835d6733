"""Backups of a center: its database, recordings and secrets, and restoring them."""
