"""The soak and fault suite (issue 6): `python -m tests.soak --duration 600` from the repo root."""
