"""A STAND-IN for a lakeFS server, for tests where no real lakeFS can run (CI).

It is not lakeFS. It implements, in memory, only the REST endpoints of lakeFS's API v1
that Tideline's code and tests call through the official ``lakefs`` SDK: repositories,
branches (staging area, diff, commit, revert), commits, tags, and object upload
(including ``If-None-Match: *``), download with ranges, head, stat, listing with
delimiter and pagination, copy and delete. Every response body is built from the
``lakefs_sdk.models`` classes and every request body is parsed with them, so the
shapes stay those of the real API (a field the SDK does not know fails here too).
Checksums are the MD5 of the content, as lakeFS reports for single-part uploads.

The same tests run against a real lakeFS server when ``LAKEFS_ENDPOINT`` is set
(see ``tests/conftest.py`` and ``deploy/README.md``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from lakefs_sdk import models

API = "/api/v1"


@dataclass
class _Object:
    data: bytes
    checksum: str
    mtime: int
    physical_address: str
    content_type: str = "application/octet-stream"

    def stats(self, path: str) -> models.ObjectStats:
        return models.ObjectStats(
            path=path, path_type="object", physical_address=self.physical_address,
            checksum=self.checksum, size_bytes=len(self.data), mtime=self.mtime,
            metadata={}, content_type=self.content_type)


@dataclass
class _Commit:
    id: str
    parents: list[str]
    message: str
    metadata: dict[str, str]
    creation_date: int
    tree: dict[str, _Object]

    def model(self) -> models.Commit:
        return models.Commit(id=self.id, parents=self.parents, committer="standin",
                             message=self.message, creation_date=self.creation_date,
                             meta_range_id=hashlib.sha256(self.id.encode()).hexdigest(),
                             metadata=self.metadata, generation=len(self.parents), version=1)


@dataclass
class _Repo:
    name: str
    namespace: str
    default_branch: str
    created: int
    commits: dict[str, _Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)          # name -> head commit
    staging: dict[str, dict[str, _Object | None]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


class HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class LakeFSStandIn:
    """The stand-in's state and request handling; `serve` runs it on loopback."""

    def __init__(self, access_key_id: str = "standin-key",
                 secret_access_key: str = "standin-secret"):
        self.access_key_id, self.secret_access_key = access_key_id, secret_access_key
        self.repos: dict[str, _Repo] = {}
        self.requests: list[tuple[str, str, dict[str, list[str]]]] = []
        self.lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def serve(self) -> str:
        """Start on a free loopback port; returns the endpoint URL."""
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return

            def _handle(self) -> None:
                try:
                    standin.dispatch(self)
                except (ConnectionError, ValueError):  # the client went away mid-request
                    self.close_connection = True

            do_GET = do_POST = do_DELETE = do_HEAD = do_PUT = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def object_reads(self) -> int:
        """How many object downloads (GET of content) were served so far."""
        return sum(1 for m, p, _ in self.requests if m == "GET" and p.endswith("/objects"))

    # -- HTTP plumbing ------------------------------------------------------------------------
    def dispatch(self, h: BaseHTTPRequestHandler) -> None:
        split = urlsplit(h.path)
        query = parse_qs(split.query, keep_blank_values=True)
        body = self._body(h)
        with self.lock:
            self.requests.append((h.command, split.path, query))
        try:
            self._authorize(h.headers.get("Authorization"))
            status, payload, headers = self._route(h.command, split.path, query, body, h.headers)
        except HTTPError as exc:
            status, headers = exc.status, exc.headers
            payload = models.Error(message=exc.message) if h.command != "HEAD" else None
        if isinstance(payload, bytes):
            data = payload
            headers.setdefault("Content-Type", "application/octet-stream")
        elif isinstance(payload, str):
            data = payload.encode()
            headers.setdefault("Content-Type", "text/html")
        elif payload is not None:
            data = json.dumps(payload.to_dict()).encode()
            headers.setdefault("Content-Type", "application/json")
        else:
            data = b""
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        if "Content-Length" not in headers:
            h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)

    @staticmethod
    def _body(h: BaseHTTPRequestHandler) -> bytes:
        if "chunked" in (h.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:  # the SDK streams uploads from a file: chunked transfer encoding
                size = int(h.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                part = h.rfile.read(size)
                if len(part) < size:
                    raise ConnectionError("upload cut off mid-chunk: nothing is staged")
                parts.append(part)
                h.rfile.readline()
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        if len(body) < length:
            raise ConnectionError("upload cut off: nothing is staged")
        return body

    def _authorize(self, header: str | None) -> None:
        expected = base64.b64encode(
            f"{self.access_key_id}:{self.secret_access_key}".encode()).decode()
        if header != f"Basic {expected}":
            raise HTTPError(401, "error authenticating request")

    def _route(self, method: str, path: str, q: dict[str, list[str]], body: bytes,
               headers: Any) -> tuple[int, Any, dict[str, str]]:
        if not path.startswith(API):
            raise HTTPError(404, f"no such endpoint {path}")
        parts = [unquote(p) for p in path[len(API):].strip("/").split("/")]
        arg = {k: v[0] for k, v in q.items()}
        with self.lock:
            if parts == ["repositories"] and method == "POST":
                return self._create_repo(models.RepositoryCreation.from_json(body.decode()))
            if len(parts) < 2 or parts[0] != "repositories":
                raise HTTPError(404, f"no such endpoint {path}")
            repo = self._repo(parts[1])
            rest = parts[2:]
            if not rest and method == "GET":
                return 200, self._repo_model(repo), {}
            match rest, method:
                case ["branches"], "POST":
                    req = models.BranchCreation.from_json(body.decode())
                    if req.name in repo.branches:
                        raise HTTPError(409, "branch already exists")
                    repo.branches[req.name] = self._resolve(repo, req.source)
                    repo.staging[req.name] = {}
                    return 201, repo.branches[req.name], {}
                case ["branches", b], "GET":
                    self._branch(repo, b)
                    return 200, models.Ref(id=b, commit_id=repo.branches[b]), {}
                case ["branches", b, "diff"], "GET":
                    return 200, self._diff(repo, b, arg), {}
                case ["branches", b, "commits"], "POST":
                    return self._commit(repo, b, models.CommitCreation.from_json(body.decode()))
                case ["branches", b, "revert"], "POST":
                    return self._revert(repo, b, models.RevertCreation.from_json(body.decode()))
                case ["branches", b, "objects"], "POST":
                    return self._upload(repo, b, arg["path"], body, headers)
                case ["branches", b, "objects"], "DELETE":
                    self._branch(repo, b)
                    if arg["path"] not in self._view(repo, b):
                        raise HTTPError(404, "object not found")
                    repo.staging[b][arg["path"]] = None
                    return 204, None, {}
                case ["branches", b, "objects", "copy"], "POST":
                    req = models.ObjectCopyCreation.from_json(body.decode())
                    src = self._view(repo, req.src_ref or b).get(req.src_path)
                    if src is None:
                        raise HTTPError(404, "object not found")
                    self._branch(repo, b)
                    repo.staging[b][arg["dest_path"]] = src
                    return 201, src.stats(arg["dest_path"]), {}
                case ["refs", ref, "objects"], "GET" | "HEAD":
                    return self._download(repo, ref, arg["path"], headers, method)
                case ["refs", ref, "objects", "stat"], "GET":
                    obj = self._view(repo, ref).get(arg["path"])
                    if obj is None:
                        raise HTTPError(404, "object not found")
                    return 200, obj.stats(arg["path"]), {}
                case ["refs", ref, "objects", "ls"], "GET":
                    return 200, self._list(repo, ref, arg), {}
                case ["refs", ref, "commits"], "GET":
                    return 200, self._log(repo, ref, arg), {}
                case ["commits", commit_id], "GET":
                    return 200, repo.commits[self._resolve(repo, commit_id)].model(), {}
                case ["tags"], "POST":
                    req = models.TagCreation.from_json(body.decode())
                    if req.id in repo.tags:
                        raise HTTPError(409, "tag already exists")
                    repo.tags[req.id] = self._resolve(repo, req.ref)
                    return 201, models.Ref(id=req.id, commit_id=repo.tags[req.id]), {}
                case ["tags", tag], "GET":
                    if tag not in repo.tags:
                        raise HTTPError(404, "tag not found")
                    return 200, models.Ref(id=tag, commit_id=repo.tags[tag]), {}
        raise HTTPError(404, f"the stand-in does not implement {method} {path}")

    # -- repository model -------------------------------------------------------------------
    def _repo(self, name: str) -> _Repo:
        if name not in self.repos:
            raise HTTPError(404, "repository not found")
        return self.repos[name]

    def _repo_model(self, repo: _Repo) -> models.Repository:
        return models.Repository(id=repo.name, creation_date=repo.created,
                                 default_branch=repo.default_branch,
                                 storage_namespace=repo.namespace, read_only=False)

    def _create_repo(self, req: models.RepositoryCreation) -> tuple[int, Any, dict[str, str]]:
        if req.name in self.repos:
            raise HTTPError(409, "repository already exists")
        now = int(time.time())
        repo = _Repo(req.name, req.storage_namespace, req.default_branch or "main", now)
        first = _Commit(hashlib.sha256(f"{req.name}{uuid.uuid4()}".encode()).hexdigest(), [],
                        "Repository created", {}, now, {})
        repo.commits[first.id] = first
        repo.branches[repo.default_branch] = first.id
        repo.staging[repo.default_branch] = {}
        self.repos[req.name] = repo
        return 201, self._repo_model(repo), {}

    def _branch(self, repo: _Repo, name: str) -> None:
        if name not in repo.branches:
            raise HTTPError(404, "branch not found")

    def _resolve(self, repo: _Repo, ref: str) -> str:
        if ref in repo.branches:
            return repo.branches[ref]
        if ref in repo.tags:
            return repo.tags[ref]
        matches = [c for c in repo.commits if c.startswith(ref)] if len(ref) >= 6 else []
        if len(matches) != 1:
            raise HTTPError(404, f"ref {ref!r} not found")
        return matches[0]

    def _view(self, repo: _Repo, ref: str) -> dict[str, _Object]:
        tree = dict(repo.commits[self._resolve(repo, ref)].tree)
        for path, obj in repo.staging.get(ref, {}).items() if ref in repo.branches else ():
            if obj is None:
                tree.pop(path, None)
            else:
                tree[path] = obj
        return tree

    # -- objects -------------------------------------------------------------------------------
    def _upload(self, repo: _Repo, branch: str, path: str, body: bytes,
                headers: Any) -> tuple[int, Any, dict[str, str]]:
        self._branch(repo, branch)
        if headers.get("If-None-Match") == "*" and path in self._view(repo, branch):
            raise HTTPError(412, "object already exists")
        obj = _Object(body, hashlib.md5(body, usedforsecurity=False).hexdigest(),
                      int(time.time()), f"{repo.namespace}/data/{uuid.uuid4().hex}",
                      headers.get("Content-Type") or "application/octet-stream")
        repo.staging[branch][path] = obj
        return 201, obj.stats(path), {}

    def _download(self, repo: _Repo, ref: str, path: str, headers: Any,
                  method: str) -> tuple[int, Any, dict[str, str]]:
        obj = self._view(repo, ref).get(path)
        if obj is None:
            raise HTTPError(404, "object not found")
        size = len(obj.data)
        common = {"ETag": f'"{obj.checksum}"', "Content-Type": obj.content_type,
                  "Accept-Ranges": "bytes"}
        if method == "HEAD":
            return 200, None, common | {"Content-Length": str(size)}
        spec = headers.get("Range")
        if not spec:
            return 200, obj.data, common
        start_s, _, end_s = spec.removeprefix("bytes=").partition("-")
        start = int(start_s)
        end = min(int(end_s), size - 1) if end_s else size - 1
        if start >= size:
            raise HTTPError(416, "requested range not satisfiable",
                            {"Content-Range": f"bytes */{size}"})
        return 206, obj.data[start:end + 1], common | {
            "Content-Range": f"bytes {start}-{end}/{size}"}

    def _list(self, repo: _Repo, ref: str, arg: dict[str, str]) -> models.ObjectStatsList:
        prefix, after = arg.get("prefix", ""), arg.get("after", "")
        delimiter = arg.get("delimiter", "/")
        amount = min(int(arg.get("amount", 1000)), 1000)
        entries: dict[str, models.ObjectStats] = {}
        for path, obj in self._view(repo, ref).items():
            if not path.startswith(prefix):
                continue
            cut = path.find(delimiter, len(prefix)) if delimiter else -1
            if cut >= 0:
                common = path[:cut + len(delimiter)]
                entries[common] = models.ObjectStats(path=common, path_type="common_prefix",
                                                     physical_address="", checksum="", mtime=0)
            else:
                entries[path] = obj.stats(path)
        names = [n for n in sorted(entries) if n > after]
        page = names[:amount]
        more = len(names) > amount
        return models.ObjectStatsList(
            pagination=models.Pagination(has_more=more, next_offset=page[-1] if more else "",
                                         results=len(page), max_per_page=1000),
            results=[entries[n] for n in page])

    # -- versioning -----------------------------------------------------------------------------
    def _log(self, repo: _Repo, ref: str, arg: dict[str, str]) -> models.CommitList:
        chain, commit_id = [], self._resolve(repo, ref)
        while commit_id:
            commit = repo.commits[commit_id]
            chain.append(commit)
            commit_id = commit.parents[0] if commit.parents else ""
        if arg.get("after"):
            ids = [c.id for c in chain]
            chain = chain[ids.index(arg["after"]) + 1:] if arg["after"] in ids else []
        amount = int(arg.get("amount", 1000))
        page, more = chain[:amount], len(chain) > amount
        return models.CommitList(
            pagination=models.Pagination(has_more=more, next_offset=page[-1].id if more else "",
                                         results=len(page), max_per_page=1000),
            results=[c.model() for c in page])

    def _diff(self, repo: _Repo, branch: str, arg: dict[str, str]) -> models.DiffList:
        self._branch(repo, branch)
        base = repo.commits[repo.branches[branch]].tree
        changes = []
        for path, obj in sorted(repo.staging[branch].items()):
            if path <= arg.get("after", "") or not path.startswith(arg.get("prefix", "")):
                continue
            kind = "removed" if obj is None else ("changed" if path in base else "added")
            if obj is None and path not in base:
                continue
            changes.append(models.Diff(type=kind, path=path, path_type="object",
                                       size_bytes=len(obj.data) if obj else None))
        amount = int(arg.get("amount", 1000))
        page, more = changes[:amount], len(changes) > amount
        return models.DiffList(
            pagination=models.Pagination(has_more=more,
                                         next_offset=page[-1].path if more else "",
                                         results=len(page), max_per_page=1000),
            results=page)

    def _new_commit(self, repo: _Repo, branch: str, message: str, metadata: dict[str, str],
                    tree: dict[str, _Object]) -> _Commit:
        parent = repo.branches[branch]
        commit_id = hashlib.sha256(f"{parent}{message}{uuid.uuid4()}".encode()).hexdigest()
        commit = _Commit(commit_id, [parent], message, dict(metadata or {}), int(time.time()),
                         tree)
        repo.commits[commit_id] = commit
        repo.branches[branch] = commit_id
        repo.staging[branch] = {}
        return commit

    def _commit(self, repo: _Repo, branch: str,
                req: models.CommitCreation) -> tuple[int, Any, dict[str, str]]:
        self._branch(repo, branch)
        view = self._view(repo, branch)
        if view == repo.commits[repo.branches[branch]].tree and not req.allow_empty:
            raise HTTPError(400, "commit: no changes")
        commit = self._new_commit(repo, branch, req.message, req.metadata or {}, view)
        return 201, commit.model(), {}

    def _revert(self, repo: _Repo, branch: str,
                req: models.RevertCreation) -> tuple[int, Any, dict[str, str]]:
        self._branch(repo, branch)
        if repo.staging[branch]:
            raise HTTPError(400, "revert: branch has uncommitted changes")
        target = repo.commits[self._resolve(repo, req.ref)]
        if not target.parents:
            raise HTTPError(400, "cannot revert the first commit")
        parent = repo.commits[target.parents[max(req.parent_number, 1) - 1]].tree
        tree = dict(repo.commits[repo.branches[branch]].tree)
        for path in set(parent) | set(target.tree):
            if parent.get(path) is target.tree.get(path):
                continue
            if path in parent:
                tree[path] = parent[path]
            else:
                tree.pop(path, None)
        self._new_commit(repo, branch, f"Revert {req.ref}", {}, tree)
        return 204, None, {}
