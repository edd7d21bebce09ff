"""A tiny model hub on 127.0.0.1 in the Hugging Face hub's layout, for testing hub downloads offline.

Serves repositories built from local folders at fixed commits: ``GET /api/models/<repo>/revision/<rev>`` (repo info
with its file list), ``GET /api/models/<repo>/tree/<rev>`` (the recursive file listing), ``HEAD``/``GET
/<repo>/resolve/<rev>/<path>`` (headers ``X-Repo-Commit``, ``ETag`` — sha256 for "LFS" files (weights), the git blob
sha1 otherwise — ``X-Linked-Etag``/``X-Linked-Size`` for LFS, ranges). Unknown repos and revisions answer 404 with
the hub's ``X-Error-Code`` (``RepoNotFound`` / ``RevisionNotFound``). Loopback only, bounded: every connection has a
timeout and the server stops with the context manager.
"""
from __future__ import annotations

import hashlib
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

LFS_SUFFIXES = (".safetensors", ".bin", ".onnx", ".pt", ".pth", ".ckpt", ".gguf")


@dataclass
class Repo:
    folder: Path
    commit: str
    files: dict[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.files = {p.relative_to(self.folder).as_posix(): p.read_bytes()
                      for p in sorted(self.folder.rglob("*")) if p.is_file()}

    @staticmethod
    def etag(name: str, data: bytes) -> str:
        if name.endswith(LFS_SUFFIXES):
            return hashlib.sha256(data).hexdigest()
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubServer:
    """``with HubServer({"org/name": Repo(folder, commit)}) as hub: hub.endpoint`` → ``http://127.0.0.1:<port>``."""

    def __init__(self, repos: dict[str, Repo]) -> None:
        self.repos = repos
        self.requests: list[tuple[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _error(self, code: int, error_code: str) -> None:
                data = json.dumps({"error": error_code}).encode()
                self.send_response(code)
                self.send_header("X-Error-Code", error_code)
                self.send_header("X-Error-Message", error_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command == "GET":
                    self.wfile.write(data)

            def _find(self, parts: list[str]) -> tuple[str, Repo] | None:
                for n in (2, 1):
                    name = "/".join(parts[:n])
                    if name in server.repos:
                        return name, server.repos[name]
                return None

            def _serve(self, body: bool) -> None:
                path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
                server.requests.append((self.command, path))
                parts = [p for p in path.split("/") if p]
                if parts[:2] == ["api", "models"]:
                    found = self._find(parts[2:])
                    if found is None:
                        return self._error(404, "RepoNotFound")
                    name, repo = found
                    rest = parts[2 + len(name.split("/")):]
                    if rest[:1] in (["revision"], ["tree"]) and rest[1:] and rest[1] not in (repo.commit, "main"):
                        return self._error(404, "RevisionNotFound")
                    if rest[:1] == ["tree"]:
                        tree = [{"type": "file", "path": f, "size": len(d),
                                 "oid": hashlib.sha1(b"blob %d\0" % len(d) + d).hexdigest(),
                                 **({"lfs": {"oid": Repo.etag(f, d), "size": len(d), "pointerSize": 134}}
                                    if f.endswith(LFS_SUFFIXES) else {})} for f, d in repo.files.items()]
                        return self._send(200, json.dumps(tree).encode(), {"Content-Type": "application/json"}, body)
                    info = {"id": name, "modelId": name, "sha": repo.commit, "private": False, "disabled": False,
                            "gated": False, "downloads": 0, "likes": 0, "tags": [],
                            "lastModified": "2025-01-01T00:00:00.000Z",
                            "siblings": [{"rfilename": f, "size": len(d),
                                          **({"lfs": {"sha256": Repo.etag(f, d), "size": len(d),
                                                      "pointerSize": 134}} if f.endswith(LFS_SUFFIXES) else {})}
                                         for f, d in repo.files.items()]}
                    return self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"}, body)
                found = self._find(parts)
                if found is None:
                    return self._error(404, "RepoNotFound")
                name, repo = found
                rest = parts[len(name.split("/")):]
                if rest[:1] != ["resolve"] or len(rest) < 3:
                    return self._error(404, "EntryNotFound")
                if rest[1] not in (repo.commit, "main"):
                    return self._error(404, "RevisionNotFound")
                filename = "/".join(rest[2:])
                if filename not in repo.files:
                    return self._error(404, "EntryNotFound")
                data = repo.files[filename]
                etag = Repo.etag(filename, data)
                headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{etag}"', "Accept-Ranges": "bytes",
                           "Content-Type": "application/octet-stream"}
                if filename.endswith(LFS_SUFFIXES):
                    headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(data))})
                status, start = 200, 0
                ranged = self.headers.get("Range", "")
                if ranged.startswith("bytes=") and body:
                    start = int(ranged[6:].split("-")[0] or 0)
                    status = 206
                    headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                self._send(status, data[start:], headers, body)

            def _send(self, status: int, data: bytes, headers: dict, body: bool) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
