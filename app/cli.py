"""The `filterscope` command.

`filterscope serve [--host 127.0.0.1] [--port 8000] [--allow-host NAME ...]`: the server and its page.
`filterscope train [--config JSON] [--data-dir DIR]`: one run trained in this process, into the data
directory a server reads (it shows the run live); no server needed.
`filterscope dataset add PATH [--name N] [--size S] [--channels C] [--data-dir DIR]`: a zip or a folder of
`<class>/<image>` files imported as a data set (training/datasets/uploaded.py); a server started after lists it.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import logging
import os
import re
import secrets
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import uvicorn

from .api.guard import host_name, is_loopback
from .boot import App, Boot
from .config import Settings
from .paths import PRETRAINED
from .record import opening
from .record.lease import FileLock
from .training.events import Status

# SIGTERM: runs stop at once, open requests get this long to finish (a half-sent body does not hold the server),
# and the training threads are joined after: the server is gone within about 5 s whatever clients do.
GRACEFUL_SECONDS = 2
# The server token travels in the link `serve` prints (/?token=...), and uvicorn logs every request's path with
# its query string (the access log; WebSocket handshakes on uvicorn.error): its value is masked in both.
TOKEN_IN_QUERY = re.compile(r"(?i)([?&](?:server_)?token=)[^&#\s\"]*")


class Server(uvicorn.Server):
    """uvicorn's server of the Boot app, stopping every run as soon as it is asked to exit (before it waits for
    connections), and at once if the app could not start (`failure`: why, said in one line)."""

    def __init__(self, config: uvicorn.Config, boot: Boot, listening: Callable[[], None] | None = None) -> None:
        """`listening`: called once the socket is bound (the first answers go out meanwhile)."""
        super().__init__(config)
        self.boot = boot
        self.failure: BaseException | None = None
        self._listening = listening

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self._listening is not None:
            self._listening()

    def failed(self, exc: BaseException) -> None:
        """The app could not start: the server stops (the loop's thread, from the Boot app's start task)."""
        self.failure = exc
        self.should_exit = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        app = self.boot.app
        manager = getattr(app.state, "runs", None) if app is not None else None  # type: ignore[attr-defined]
        if manager is not None:  # from a thread: never take a lock inside a signal handler
            threading.Thread(target=manager.stop_all, name="stop-runs", daemon=True).start()
        super().handle_exit(sig, frame)


class MaskTokens(logging.Filter):
    """Masks a token's value in a query string a log record carries, so a log never holds a usable link."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(TOKEN_IN_QUERY.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        return True


def _train(config_json: str, data_dir: Path) -> int:
    """`filterscope train`: 0 when the run finished, 1 if it could not (the reason said in one line)."""
    from pydantic import ValidationError

    from .runs.process import train
    from .training.config import TrainConfig

    try:
        config = TrainConfig.model_validate_json(config_json)
    except ValidationError as exc:
        first = exc.errors()[0]
        print(f"filterscope: --config: {'.'.join(map(str, first['loc'])) or 'the JSON'}: {first['msg']}",  # noqa: T201
              file=sys.stderr)
        return 2
    try:
        _, _, status = train(config, data_dir, threads=Settings().training_threads)
    except ValueError as exc:
        print(f"filterscope: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    return 0 if status is Status.FINISHED else 1


def _dataset_add(path: Path, name: str | None, size: int | None, channels: int | None, data_dir: Path) -> int:
    """`filterscope dataset add`: 0 when imported (what was made said in a few lines), 2 with the reason if not."""
    from .training.datasets import uploaded

    if not path.exists():
        print(f"filterscope: {path} does not exist", file=sys.stderr)  # noqa: T201
        return 2
    name = name or re.sub(r"[^a-z0-9_-]+", "-", path.stem.lower()).strip("-_")[:40]
    try:
        result = uploaded.import_images(path, data_dir, name, size=size, channels=channels)
    except uploaded.ImportRefused as exc:
        print(f"filterscope: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    info = result.info
    print(f"filterscope: imported {info.name!r}: {len(info.classes)} classes, {info.size}x{info.size} "  # noqa: T201
          f"{'RGB' if info.channels == 3 else 'grey'}, {info.train_count} to train, {info.test_count} to test")
    for cls in info.classes:
        print(f"  {cls}: {result.train_per_class[cls]} + {result.test_per_class[cls]}")  # noqa: T201
    if result.skipped:
        print("  skipped: " + ", ".join(f"{n} {why}" for why, n in result.skipped.items()))  # noqa: T201
    return 0


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run it."""
    parser = argparse.ArgumentParser(prog="filterscope", description="Watch a CNN learn its filters, live.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start the web server")
    # Loopback by default: the server trains on this machine's CPU; elsewhere it asks for a server token.
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                       help="a host name the page may be opened under, besides localhost and the bound address "
                            "(repeatable; '*' for any)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--ray", default=None, metavar="ADDRESS",
                       help="train every run in a Ray actor: 'local' starts a Ray instance of this machine, an "
                            "address joins a running cluster (needs: pip install 'filterscope[ray]'; default: "
                            "FILTERSCOPE_RAY, else threads of this server)")
    train = sub.add_parser("train", help="train one run in this process, into the data directory a server reads")
    train.add_argument("--config", default="{}", help='the run config as JSON, e.g. \'{"epochs": 1}\' (default: '
                                                      "the defaults; GET /openapi.json lists every field)")
    train.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    dataset = sub.add_parser("dataset", help="a data set of your own pictures").add_subparsers(
        dest="action", required=True)
    add = dataset.add_parser("add", help="import a .zip or folder of <class>/<image> files into the data directory")
    add.add_argument("path", type=Path, help="the zip, or the folder holding one sub-folder per class")
    add.add_argument("--name", default=None, help="the data set's name (default: from the path)")
    add.add_argument("--size", type=int, default=None, help="side in pixels, 16-64 (default: 32 for colour, 28 "
                                                            "for grey, at most the pictures' median side)")
    add.add_argument("--channels", type=int, choices=[1, 3], default=None,
                     help="1 grey or 3 RGB (default: RGB if any picture has colour)")
    add.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    for command in (serve, train, add):
        command.add_argument("--data-dir", type=Path, default=None,
                             help="where runs are kept (default: FILTERSCOPE_DATA_DIR, else the per-user data dir)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.data_dir is not None:
        os.environ["FILTERSCOPE_DATA_DIR"] = str(args.data_dir)
    data_dir = Settings().data_dir  # not get_settings(): the environment is still being set below
    if args.command == "train":
        sys.exit(_train(args.config, data_dir))
    if args.command == "dataset":
        sys.exit(_dataset_add(args.path, args.name, args.size, args.channels, data_dir))
    if (data_dir.exists() and not os.access(data_dir, os.W_OK)) or \
            (not data_dir.exists() and not os.access(next(p for p in data_dir.parents if p.exists()), os.W_OK)):
        sys.exit(f"filterscope: the data directory {data_dir} is read-only: filterscope keeps its runs there. Make "
                 "it writable, or choose another with --data-dir or FILTERSCOPE_DATA_DIR.")
    holder = FileLock(data_dir / "server.lock")
    if not holder.is_free():  # the app would refuse too, but with a traceback
        sys.exit(f"filterscope: the data directory {data_dir} is in use by process {holder.holder().get('pid', '?')} "
                 "(filterscope serve); stop it, or serve another directory (--data-dir).")
    if args.ray is not None:
        os.environ["FILTERSCOPE_RAY"] = args.ray
    if os.environ.get("FILTERSCOPE_RAY") and importlib.util.find_spec("ray") is None:
        sys.exit("filterscope: --ray needs Ray, an optional dependency: pip install 'filterscope[ray]'.")
    hosts = [*args.allow_host]
    name = host_name(args.host)
    if name in ("0.0.0.0", "::"):  # every interface: people will use the machine's name or address
        hosts += [socket.gethostname(), socket.getfqdn()]
        with_addresses = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
        hosts += sorted(str(a) for a in with_addresses)
    else:
        hosts.append(name)
    os.environ["FILTERSCOPE_ALLOWED_HOSTS"] = json.dumps(hosts)
    link = f"http://{args.host if ':' not in args.host else f'[{args.host}]'}:{args.port}/"
    if not is_loopback(name):
        token = os.environ.get("FILTERSCOPE_SERVER_TOKEN") or secrets.token_urlsafe(16)
        os.environ["FILTERSCOPE_SERVER_TOKEN"] = token
        link += f"?token={token}"
        print("filterscope: reachable from the network; starting runs needs the token in this link",  # noqa: T201
              flush=True)
    print(f"filterscope: open {link} in a browser", flush=True)  # noqa: T201
    try:
        _serve(args.host, args.port, args.log_level)
    except KeyboardInterrupt:  # Ctrl+C: uvicorn has shut down cleanly and re-raised it; no traceback
        print("filterscope: stopped (Ctrl+C)", file=sys.stderr)  # noqa: T201
        sys.exit(130)  # 128 + SIGINT, as a shell reports a program Ctrl+C ended


def _load_app() -> App:
    """The real app: importing it imports PyTorch and everything else (boot.py answers meanwhile)."""
    from .main import app

    return app


def _serve(host: str, port: int, log_level: str) -> None:
    """Run the server until it is told to exit; exit with the reason if its app could not start."""
    # No permessage-deflate: snapshots are already quantised, and compressing 12 of them a second took half
    # of the event loop's CPU during a run (0.20 s -> 0.09 s a run), CPU that training on 2 cores needs.
    server: Server | None = None
    boot = Boot(_load_app, lambda exc: server.failed(exc) if server is not None else None)
    config = uvicorn.Config(boot, host=host, port=port, log_level=log_level, ws="websockets-sansio",
                            ws_per_message_deflate=False, timeout_graceful_shutdown=GRACEFUL_SECONDS)
    for name in ("uvicorn.access", "uvicorn.error"):  # after Config, which sets uvicorn's logging up
        logging.getLogger(name).addFilter(MaskTokens())
    settings = Settings()
    # Once it listens, the store opens (checked, its runs read) while the app and PyTorch are imported.
    server = Server(config, boot, lambda: opening.begin(settings.data_dir,
                                                        PRETRAINED if settings.pretrained else None))
    # The cyclic GC waits until the app is ready (Boot turns it back on): PyTorch's import and the stored runs
    # allocate hundreds of thousands of objects that live for good, and scanning them as they came cost
    # ~0.25 s of a 2 s start.
    gc.disable()
    server.run()
    if server.failure is not None:
        sys.exit(f"filterscope: could not start: {server.failure}")
