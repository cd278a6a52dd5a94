"""Recipe keys: what a materialization is computed from.

recipe key = H(asset name, code fingerprint, canonical config, input content hashes,
environment). The code fingerprint is derived from the source of the ``pipelines``
modules a stage calls, followed through their imports inside ``pipelines``, so editing a
stage's code invalidates that stage and its downstream without a hand-bumped version.
Nothing here imports a heavy library: the cache-hit path runs through it.
"""

from __future__ import annotations

import ast
import os
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from pipelines.hashing import hash_bytes, hash_json

PACKAGE = "pipelines"
PACKAGE_DIR = Path(__file__).resolve().parent

# Libraries whose versions shape the bytes of an artifact.
BYTE_SHAPING_LIBRARIES = ("torch", "numpy", "pandas", "pyarrow", "onnx", "onnxruntime")


def thread_count() -> int:
    """The pinned thread count for numeric libraries (torch results depend on it)."""
    return int(os.environ.get("TIDELINE_THREADS", "1"))


@lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    """Installed versions of the byte-shaping libraries, read without importing them."""
    versions = {}
    for name in BYTE_SHAPING_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def environment() -> dict[str, Any]:
    """The part of the environment that enters every recipe key."""
    return {"libraries": library_versions(), "threads": thread_count()}


def _module_file(module: str) -> Path | None:
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@lru_cache(maxsize=256)
def _source_and_imports(path: Path, mtime_ns: int) -> tuple[bytes, tuple[str, ...]]:
    source = path.read_bytes()
    imports: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imports.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imports.append(node.module)
            imports.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return source, tuple(sorted(set(i for i in imports if i.split(".")[0] == PACKAGE)))


def code_fingerprint(*modules: str) -> str:
    """Hash the source of ``pipelines`` modules and everything they import from it.

    Args:
        modules: Dotted module names, e.g. ``"pipelines.training"``.

    Returns:
        A hash that changes whenever any of that source changes.
    """
    seen: dict[str, bytes] = {}
    pending = list(modules)
    while pending:
        module = pending.pop()
        path = _module_file(module)
        if path is None or str(path) in seen:
            continue
        source, imports = _source_and_imports(path, path.stat().st_mtime_ns)
        seen[str(path)] = source
        pending.extend(imports)
    if not seen:
        raise ValueError(f"no pipelines module found among {modules}")
    rel = {str(Path(p).relative_to(PACKAGE_DIR)): hash_bytes(src) for p, src in seen.items()}
    return hash_json(rel)


def recipe_key(
    asset: str,
    code: str,
    config: dict[str, Any],
    inputs: dict[str, str],
    env: dict[str, Any] | None = None,
) -> str:
    """Combine everything a result depends on into one key."""
    return hash_json(
        {
            "asset": asset,
            "code": code,
            "config": config,
            "inputs": inputs,
            "env": environment() if env is None else env,
        }
    )
