"""Snapshots to frames (codec, protocol) and their fan-out to every connected page (hub)."""
