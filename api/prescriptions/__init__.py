"""Electronic prescriptions over HTTP: verification and printing (routes.py), the national export (export.py)."""
