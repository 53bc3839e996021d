"""The server's gate: which hosts and origins may talk to it, what bodies it reads, and how long it waits.

Any web page a person visits can send requests to a server on their machine. So, before any route runs:

- a request whose `Host` is not one of this server's names is refused (400): a DNS-rebinding page reaches
  127.0.0.1 under its own name, and this is where it stops;
- a WebSocket handshake or a state-changing request (POST, PUT, PATCH, DELETE) whose `Origin` is present and
  is not this server's own is refused (403): other sites can neither watch a run nor act on one;
- a state-changing request must carry the content type its route documents (JSON, or multipart for image
  uploads), else 415: the "simple" text/plain and form posts a page may send anywhere are refused unread;
- a JSON body is capped (413 as soon as it passes the cap, before any of it is parsed), and every chunk of
  a body must arrive within a timeout (408), so that no client can hold a request open for ever.

Pure ASGI (not BaseHTTPMiddleware), so that it wraps WebSocket handshakes and streamed bodies as well.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable

import anyio
from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
UPLOAD_PATH = re.compile(r"^/api/runs/[^/]+/(inspect|probe)$|^/api/datasets/?$")  # POST with an image or a zip
JSON_ROUTES = (("POST", re.compile(r"^/api/runs/?$")),
               ("PATCH", re.compile(r"^/api/runs/[^/]+$")), ("PUT", re.compile(r"^/api/runs/[^/]+/probe$")))


def route_body(path: str, method: str) -> str:
    """What a state-changing route reads: "multipart" (an image), "json" (an object) or "none"."""
    if method == "POST" and UPLOAD_PATH.match(path):
        return "multipart"
    if any(method == m and pattern.match(path) for m, pattern in JSON_ROUTES):
        return "json"
    return "none"


def host_name(host: str) -> str:
    """The name part of a Host header or an origin's authority: lower case, port and IPv6 brackets removed."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host[1:]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback(name: str) -> bool:
    """True for localhost and loopback addresses."""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Guard:
    """ASGI middleware: refuses foreign hosts and origins, wrong content types, huge or stalled bodies."""

    def __init__(self, app: ASGIApp, *, allowed_hosts: Iterable[str], max_json_bytes: int,
                 body_timeout: float) -> None:
        self.app = app
        names = {host_name(h) for h in allowed_hosts if h}
        self.any_host = "*" in names
        self.allowed = names | set(LOOPBACK_NAMES)
        self.max_json_bytes = max_json_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if not self.any_host and host_name(host) not in self.allowed:
            shown = host[:80] or "(none)"
            await self.refuse(scope, send, 400, f"This server does not answer to the host name {shown!r}; open it "
                                                f"as http://localhost or http://127.0.0.1, or start it with "
                                                f"--allow-host NAME.")
            return
        method = scope.get("method", "GET")
        origin = headers.get("origin")
        if (scope["type"] == "websocket" or method in CHANGING) and origin is not None \
                and not self.same_origin(origin, host):
            await self.refuse(scope, send, 403, f"Requests from {origin[:80]!r} are refused: only this server's own "
                                                f"page may watch or change its runs.")
            return
        if scope["type"] == "http" and method in CHANGING:
            problem = self.content_problem(scope["path"], method, headers)
            if problem is not None:
                await self.refuse(scope, send, problem[0], problem[1])
                return
            receive = self.bounded(receive, json=route_body(scope["path"], method) != "multipart")
        await self.app(scope, receive, send)

    @staticmethod
    def same_origin(origin: str, host: str) -> bool:
        """True when `origin` (scheme://authority) names the same authority the request was sent to."""
        authority = origin.split("://", 1)[1] if "://" in origin else ""
        return authority.lower() == host.lower()

    def content_problem(self, path: str, method: str, headers: Headers) -> tuple[int, str] | None:
        """(status, sentence) when a state-changing request's body is not what its route takes; else None."""
        ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        takes = route_body(path, method)
        if takes == "none" and ctype in ("", "application/json"):
            return None  # pause, stop, ...: no body, or an empty JSON one
        wanted = "multipart/form-data" if takes == "multipart" else "application/json"
        if ctype != wanted:
            what = "an image as multipart/form-data in a field named 'file'" if takes == "multipart" else \
                "a JSON object with Content-Type: application/json (send {} for the defaults)"
            return 415, f"This request must carry {what}, not {ctype or 'no content type'}."
        length = headers.get("content-length")
        if takes != "multipart" and length is not None and length.isdigit() and int(length) > self.max_json_bytes:
            return 413, self.too_large()
        return None

    def too_large(self) -> str:
        return f"The body is larger than {self.max_json_bytes // 1024} KB, the most a JSON request may be."

    def bounded(self, receive: Receive, *, json: bool) -> Receive:
        """`receive` with a timeout on every chunk and, for JSON, a cap on the whole body (as HTTP errors)."""
        received = 0

        async def wrapped() -> Message:
            nonlocal received
            try:
                with anyio.fail_after(self.body_timeout):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(408, f"The request body stalled for {self.body_timeout:g} s; send it "
                                         f"without pauses.") from None
            received += len(message.get("body", b""))
            if json and received > self.max_json_bytes:
                raise HTTPException(413, self.too_large())
            return message

        return wrapped

    @staticmethod
    async def refuse(scope: Scope, send: Send, status: int, sentence: str) -> None:
        """Answer `status` with {"detail": sentence}; a WebSocket handshake gets it as an HTTP answer too."""
        log.info("refused %s %s: %s", scope["type"], scope.get("path"), sentence)
        if scope["type"] == "websocket":
            if "websocket.http.response" in scope.get("extensions", {}):
                response = JSONResponse({"detail": sentence}, status_code=status)
                body = response.body
                await send({"type": "websocket.http.response.start", "status": status,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "websocket.http.response.body", "body": body})
            else:
                await send({"type": "websocket.close", "code": 1008, "reason": sentence[:120]})
            return
        await JSONResponse({"detail": sentence}, status_code=status)(scope, _nothing, send)


async def _nothing() -> Message:
    return {"type": "http.disconnect"}
