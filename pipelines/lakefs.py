"""lakeFS through the official ``lakefs`` SDK: versioned sources and a store on a branch.

Three uses, all optional (nothing here is imported unless a ``lakefs://`` URI is used):

- A dataset spec's ``source.path`` may be ``lakefs://<repo>/<ref>/<path>``. Its version is
  the commit the ref points at plus the object's checksum, read from lakeFS metadata
  (no data is read to detect a change), and the snapshot reads the object *at that
  commit*, so what is trained on is exactly what the version names.
- ``TIDELINE_STORE=lakefs://<repo>/<branch>/<prefix>`` puts the artifact store on a
  lakeFS branch (``LakeFSFileSystem``, an fsspec filesystem over the SDK). Each
  successful run commits the branch (`commit_store`), each deployed model is tagged
  (`tag_deployment`), so rolling the store back is a lakeFS revert of those commits.
  The filesystem lives in ``pipelines/lakefs_fs.py`` (it needs fsspec); this module
  imports only the standard library, so checking a URI costs nothing.
- Connection: ``LAKEFS_ENDPOINT``, ``LAKEFS_ACCESS_KEY_ID`` and
  ``LAKEFS_SECRET_ACCESS_KEY``; without them the SDK's own lookup applies
  (``LAKECTL_*`` variables, ``~/.lakectl.yaml``).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from typing import Any, BinaryIO

ENDPOINT_ENV = "LAKEFS_ENDPOINT"
ACCESS_KEY_ENV = "LAKEFS_ACCESS_KEY_ID"
SECRET_KEY_ENV = "LAKEFS_SECRET_ACCESS_KEY"
SCHEME = "lakefs://"
_MD5 = re.compile(r"^[0-9a-f]{32}$")


class LakeFSError(RuntimeError):
    """A lakeFS URI, connection or reference problem, with what to do about it."""


def is_lakefs(uri: str) -> bool:
    return str(uri).startswith(SCHEME)


@dataclass(frozen=True)
class LakeFSPath:
    """``lakefs://<repo>/<ref>/<path>``; ``path`` may be empty (the ref's root)."""

    repo: str
    ref: str
    path: str = ""

    @classmethod
    def parse(cls, uri: str) -> LakeFSPath:
        if not is_lakefs(uri):
            raise LakeFSError(f"{uri!r} is not a lakeFS URI (lakefs://<repo>/<ref>/<path>)")
        parts = uri[len(SCHEME):].rstrip("/").split("/", 2)
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise LakeFSError(f"{uri!r} names no repository and ref; expected "
                              "lakefs://<repo>/<ref>/<path>")
        return cls(parts[0], parts[1], parts[2] if len(parts) > 2 else "")

    @property
    def uri(self) -> str:
        return f"{SCHEME}{self.repo}/{self.ref}" + (f"/{self.path}" if self.path else "")


def make_client(endpoint: str | None = None, access_key_id: str | None = None,
                secret_access_key: str | None = None) -> Any:
    """A ``lakefs.Client`` from arguments, ``LAKEFS_*`` variables or the lakectl config."""
    import lakefs
    from lakefs.exceptions import NoAuthenticationFound

    endpoint = endpoint or os.environ.get(ENDPOINT_ENV)
    if endpoint:
        key = access_key_id or os.environ.get(ACCESS_KEY_ENV)
        secret = secret_access_key or os.environ.get(SECRET_KEY_ENV)
        if not key or not secret:
            raise LakeFSError(f"lakeFS at {endpoint} needs credentials: set {ACCESS_KEY_ENV} "
                              f"and {SECRET_KEY_ENV}")
        return lakefs.Client(host=endpoint, username=key, password=secret)
    try:
        return lakefs.Client()
    except NoAuthenticationFound as exc:
        raise LakeFSError(
            f"no lakeFS server configured: set {ENDPOINT_ENV}, {ACCESS_KEY_ENV} and "
            f"{SECRET_KEY_ENV} (or LAKECTL_SERVER_ENDPOINT_URL and credentials, or "
            "~/.lakectl.yaml)") from exc


# -- versioned sources -----------------------------------------------------------------------
@dataclass(frozen=True)
class SourceVersion:
    """What a ``lakefs://`` source is at one moment: read from metadata only."""

    location: LakeFSPath
    commit_id: str
    checksum: str
    size_bytes: int

    @property
    def data_version(self) -> str:
        """The Dagster data version: commit id and object checksum."""
        return f"{self.commit_id}:{self.checksum}"

    @property
    def content_key(self) -> str:
        """What identifies the bytes (for recipe keys): the checksum and size alone.

        A commit that leaves the object untouched changes the data version but not
        this, so the snapshot after it is a cache hit.
        """
        return f"lakefs-checksum:{self.checksum}:{self.size_bytes}"

    @property
    def pinned_uri(self) -> str:
        return LakeFSPath(self.location.repo, self.commit_id, self.location.path).uri


def not_found(exc: Exception) -> bool:
    """Whether an SDK error means the repository, ref or object does not exist."""
    from lakefs.exceptions import NotFoundException

    return isinstance(exc, NotFoundException)


def source_version(client: Any, uri: str) -> SourceVersion:
    """Resolve the source's ref to a commit and stat the object there (no data read).

    Raises:
        LakeFSError: naming the repository, ref or path that does not exist.
    """
    import lakefs

    loc = LakeFSPath.parse(uri)
    if not loc.path:
        raise LakeFSError(f"{uri}: the source must name an object, not a whole ref")
    try:
        commit = lakefs.Reference(loc.repo, loc.ref, client=client).get_commit()
    except Exception as exc:
        if not_found(exc):
            raise LakeFSError(f"{uri}: repository {loc.repo!r} or ref {loc.ref!r} does not "
                              "exist on the lakeFS server") from exc
        raise
    try:
        stat = lakefs.StoredObject(loc.repo, commit.id, loc.path, client=client).stat()
    except Exception as exc:
        if not_found(exc):
            raise LakeFSError(f"{uri}: no object {loc.path!r} at {loc.ref} (commit "
                              f"{commit.id[:12]}); commit it there or fix source.path") from exc
        raise
    return SourceVersion(loc, commit.id, stat.checksum, int(stat.size_bytes or 0))


def copy_source(client: Any, version: SourceVersion, out: BinaryIO,
                chunk: int = 8 * 1024 * 1024) -> int:
    """Copy the object at the version's commit into ``out``; returns the bytes copied.

    The MD5 of the bytes is checked against lakeFS's checksum when that checksum is a
    plain MD5 (it is for single-part uploads), so a short or altered read fails.
    """
    import lakefs

    loc = version.location
    md5 = hashlib.md5(usedforsecurity=False)
    copied = 0
    obj = lakefs.StoredObject(loc.repo, version.commit_id, loc.path, client=client)
    with obj.reader(mode="rb", pre_sign=False) as reader:
        while copied < version.size_bytes:
            data = reader.read(min(chunk, version.size_bytes - copied))
            if not data:
                break
            md5.update(data)
            out.write(data)
            copied += len(data)
    if copied != version.size_bytes:
        raise LakeFSError(f"{version.pinned_uri}: read {copied} bytes, lakeFS says "
                          f"{version.size_bytes}")
    if _MD5.match(version.checksum) and md5.hexdigest() != version.checksum:
        raise LakeFSError(f"{version.pinned_uri}: the bytes read do not match lakeFS's "
                          f"checksum {version.checksum}")
    return copied


# -- the store on a branch ---------------------------------------------------------------------
def commit_store(root: str, message: str, metadata: dict[str, str] | None = None,
                 client: Any = None) -> str | None:
    """Commit what the store's branch has staged; returns the commit id, None if nothing."""
    import lakefs
    from lakefs.exceptions import BadRequestException

    loc = LakeFSPath.parse(root)
    branch = lakefs.Branch(loc.repo, loc.ref, client=client or make_client())
    if next(iter(branch.uncommitted(max_amount=1)), None) is None:
        return None
    try:
        ref = branch.commit(message, metadata={k: str(v) for k, v in (metadata or {}).items()})
    except BadRequestException as exc:  # another writer committed the same changes first
        if "no changes" in str(exc).lower():
            return None
        raise
    return ref.id


def tag_name(model_name: str, version: int | str) -> str:
    """The lakeFS tag of a deployed model version (tags allow letters, digits, - and _)."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{model_name}-v{version}")


def tag_deployment(root: str, model_name: str, version: int | str, *,
                   metadata: dict[str, str] | None = None, client: Any = None) -> dict[str, str]:
    """Commit the store's branch and tag that commit as the deployed model version.

    An existing tag is left as it is (a redeploy of the same version keeps its tag).
    """
    import lakefs
    from lakefs.exceptions import ConflictException

    client = client or make_client()
    loc = LakeFSPath.parse(root)
    head = (commit_store(root, f"deploy {model_name} v{version}", metadata, client=client)
            or lakefs.Branch(loc.repo, loc.ref, client=client).head.id)
    name = tag_name(model_name, version)
    try:
        lakefs.Tag(loc.repo, name, client=client).create(head)
    except ConflictException:
        return {"tag": name, "commit": lakefs.Tag(loc.repo, name, client=client)
                .get_commit().id, "created": "no"}
    return {"tag": name, "commit": head, "created": "yes"}


def spooled_copy(stream: BinaryIO, hasher: Any, chunk: int) -> Any:
    """Copy a stream into a local spooled file while hashing it (for one-shot uploads)."""
    spool = tempfile.SpooledTemporaryFile(max_size=64 * 1024 * 1024)
    while data := stream.read(chunk):
        hasher.update(data)
        spool.write(data)
    spool.seek(0)
    return spool


def register_filesystem() -> None:
    """Make ``lakefs://`` URLs open with `LakeFSFileSystem` (called when one is used)."""
    import fsspec

    fsspec.register_implementation("lakefs", "pipelines.lakefs_fs.LakeFSFileSystem",
                                   clobber=True)
