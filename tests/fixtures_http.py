"""A loopback HTTP server with scripted faults, for download tests (127.0.0.1 only, no network).

Each path serves fixed bytes; a list of faults is consumed one per GET, in order, then requests succeed:
``"ok"``, ``"status:500"``, ``"drop:N"`` (send the headers of the whole file, N body bytes, then close),
``"stall"`` (hold the connection until the server stops), ``"corrupt"`` (flip one byte),
``"slow"`` (send the body in 8 pieces, 50 ms apart). ``Range`` requests get 206 partial content.
Also answers the two Hugging Face routes ``hf_hub_download`` uses (HEAD and GET
``/{repo}/resolve/{revision}/{filename}`` with ``X-Repo-Commit`` and an sha256 ``ETag``).
"""
from __future__ import annotations

import base64
import hashlib
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Route:
    body: bytes
    faults: list = field(default_factory=list)
    headers: dict = field(default_factory=dict)   # extra response headers, e.g. x-goog-hash
    hf: bool = False                              # answer like the Hub's /resolve/ route


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # injected drops make clients reset connections
        pass


class FaultServer:
    """``with FaultServer() as server: server.add('/a.bin', data, faults=['status:500'])``; ``server.url``."""

    def __init__(self):
        self.routes: dict[str, Route] = {}
        self.log: list[tuple[str, str, str | None]] = []   # (method, path, Range header)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_HEAD(self):
                owner._serve(self, head=True)

            def do_GET(self):
                owner._serve(self, head=False)

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def add(self, path, body, faults=(), headers=None, hf=False) -> Route:
        self.routes[path] = Route(body, list(faults), dict(headers or {}), hf)
        return self.routes[path]

    def add_hf_file(self, repo, filename, body, revision="main") -> Route:
        return self.add(f"/{repo}/resolve/{revision}/{filename}", body, hf=True)

    def gets(self, path) -> list:
        """Range headers (None for a plain GET) of the GETs of ``path``, in order."""
        with self.lock:
            return [rng for method, p, rng in self.log if method == "GET" and p == path]

    def _serve(self, handler, head):
        path = handler.path.split("?", 1)[0]
        rng = handler.headers.get("Range")
        with self.lock:
            self.log.append(("HEAD" if head else "GET", path, rng))
            route = self.routes.get(path)
            fault = route.faults.pop(0) if route and route.faults and not head else "ok"
        if route is None:  # the Hub says which thing is missing, as huggingface.co does
            missing = {"X-Error-Code": "EntryNotFound"} if "/resolve/" in path else None
            return self._send_status(handler, 404, "Not Found", missing)
        if fault.startswith("status:"):
            code = int(fault.split(":")[1])
            return self._send_status(handler, code, "Injected")
        if fault == "stall":
            self.stopping.wait(30)
            return
        body = route.body
        if fault == "corrupt":
            body = body[:-1] + bytes([body[-1] ^ 0xFF])
        headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes",
                   "ETag": f'"{hashlib.md5(route.body).hexdigest()}"', **route.headers}
        if route.hf:
            headers["ETag"] = f'"{hashlib.sha256(route.body).hexdigest()}"'
            headers["X-Repo-Commit"] = FAKE_COMMIT
        start, status = 0, 200
        match = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if match and int(match[1]) < len(body):
            start, status = int(match[1]), 206
            headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
        elif match:
            headers = {"Content-Range": f"bytes */{len(body)}"}
            return self._send_status(handler, 416, "Range Not Satisfiable", headers)
        payload = body[start:]
        handler.send_response(status)
        for k, v in headers.items():
            handler.send_header(k, v)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        if head:
            return
        if fault.startswith("drop:"):
            handler.wfile.write(payload[:int(fault.split(":")[1])])
            handler.wfile.flush()
            handler.close_connection = True
            handler.connection.shutdown(2)
            return
        if fault == "slow":
            step = max(1, len(payload) // 8)
            for i in range(0, len(payload), step):
                handler.wfile.write(payload[i:i + step])
                handler.wfile.flush()
                if self.stopping.wait(0.05):
                    return
            return
        handler.wfile.write(payload)

    @staticmethod
    def _send_status(handler, code, reason, headers=None):
        message = f"{code} {reason}\n".encode()
        handler.send_response(code, reason)
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.send_header("Content-Length", str(len(message)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(message)


def goog_md5(data: bytes) -> str:
    """The ``x-goog-hash`` header GCS sends for ``data``."""
    return "md5=" + base64.b64encode(hashlib.md5(data).digest()).decode()


def use_loopback_cache(monkeypatch, home, server_url):
    """Point vit_zoo at a cache in ``home`` and at ``server_url`` for storage.googleapis.com, with fast
    retries, no progress bars, no proxies and no offline flags inherited from the environment."""
    monkeypatch.setenv("VIT_ZOO_HOME", str(home))
    monkeypatch.setenv("VIT_ZOO_GCS_ENDPOINT", server_url)
    monkeypatch.setenv("VIT_ZOO_BACKOFF", "0.01")
    monkeypatch.setenv("VIT_ZOO_PROGRESS", "0")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for var in ("VIT_ZOO_OFFLINE", "HF_HUB_OFFLINE", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)


def use_fake_hub(monkeypatch, hf_home, server_url):
    """Point huggingface_hub at ``server_url`` (the fake Hub routes of ``FaultServer``) with its cache in
    ``hf_home``; the cache constant is patched too, since huggingface_hub reads it at import."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setenv("HF_ENDPOINT", server_url)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(hf_home / "hub"))
