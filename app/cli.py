"""The `filterscope` command: `filterscope serve [--host 127.0.0.1] [--port 8000]`."""

from __future__ import annotations

import argparse
import logging

import uvicorn


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run it."""
    parser = argparse.ArgumentParser(prog="filterscope", description="Watch a CNN learn its filters, live.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start the web server")
    # Loopback by default: the server trains on this machine's CPU and has no authentication.
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(f"filterscope: open http://{args.host}:{args.port}/ in a browser", flush=True)  # noqa: T201
    # No permessage-deflate: snapshots are already quantised, and compressing 12 of them a second took half
    # of the event loop's CPU during a run (0.20 s -> 0.09 s a run), CPU that training on 2 cores needs.
    uvicorn.run("app.main:app", host=args.host, port=args.port, log_level=args.log_level, ws="websockets-sansio",
                ws_per_message_deflate=False)
