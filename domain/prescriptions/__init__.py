"""Electronic prescriptions: codes (codes.py), licences and facility codes, issue and verification (service.py)."""
