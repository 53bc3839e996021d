"""Thin HTTP and WebSocket routers; the work happens in app.runs, app.training and app.streaming."""
