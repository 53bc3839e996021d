"""The run record: one truth for a run\x27s history, persisted in SQLite and resumable."""
