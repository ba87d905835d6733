"""Keeping the center's files within bounds: recordings and CEL files by age and total size."""
