"""National identifiers: configured systems, validation, normalisation (systems.py)."""
