"""Framework-free training code: data sets, models, the training loop and its snapshots.

Nothing in this package imports FastAPI or asyncio, so it can be run and tested on its own.
"""
