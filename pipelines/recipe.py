"""Recipe keys: what a materialization is computed from.

recipe key = H(asset name, code fingerprint, canonical config, input content hashes,
environment). The code fingerprint covers exactly the code that shapes a stage's output:
starting from the stage's ``pipelines`` modules (and the asset's own compute function),
it follows the names each top-level definition uses to the definitions they name, across
``pipelines`` modules, and hashes each reached definition's syntax tree with docstrings
dropped. Comments, docstrings and formatting never change a key, nor does code the stage
does not reach, nor storage and transport code (`TRANSPORT_MODULES`). The third-party
libraries the reached code imports are the libraries whose versions enter the key, so a
library upgrade re-keys only the stages that use it.

Nothing here imports a heavy library: the cache-hit path runs through it.
"""

from __future__ import annotations

import ast
import inspect
import os
import sys
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from pipelines.hashing import hash_json

PACKAGE = "pipelines"
PACKAGE_DIR = Path(__file__).resolve().parent

# Modules that move, store, record or publish bytes without shaping any stage's output.
# Their code never enters a key. Every other module under pipelines/ is KEYED_MODULES.
TRANSPORT_MODULES = frozenset({
    "pipelines.alerts", "pipelines.artifacts", "pipelines.demo_data", "pipelines.deploy",
    "pipelines.gc", "pipelines.lakefs", "pipelines.lakefs_fs", "pipelines.pg",
    "pipelines.recipe", "pipelines.records", "pipelines.repair", "pipelines.reproduce",
    "pipelines.store", "pipelines.targets", "pipelines.paths", "pipelines.catalog",
    "pipelines.tracking", "pipelines.verify", "pipelines.stages.deployment",
    "pipelines.resources", "pipelines.progress", "pipelines.telemetry", "pipelines.cost",
    "pipelines.audit", "pipelines.audit_verify", "pipelines.lineage", "pipelines.mlbom",
    "pipelines.signing",
})
KEYED_MODULES = frozenset({
    "pipelines.architectures", "pipelines.baselines", "pipelines.model_ref",
    "pipelines", "pipelines.devices", "pipelines.drift", "pipelines.evaluation",
    "pipelines.export", "pipelines.fairness", "pipelines.features", "pipelines.figures",
    "pipelines.gate",
    "pipelines.hashing", "pipelines.ingest", "pipelines.model_card", "pipelines.production",
    "pipelines.quantize", "pipelines.registry", "pipelines.spec", "pipelines.training",
    "pipelines.tuning", "pipelines.validation", "pipelines.stages", "pipelines.batch",
    "pipelines.stages.batch",
    "pipelines.stages.features", "pipelines.stages.model_card",
    "pipelines.stages.monitoring", "pipelines.stages.quantization", "pipelines.stages.raw",
    "pipelines.stages.training",
})

# Libraries whose versions enter every key: the numeric base all stages stand on.
BASE_LIBRARIES = ("numpy", "pandas", "pyarrow")
# Libraries that orchestrate or record a stage but never shape its bytes.
# (The spec's models and YAML are here: the parsed settings themselves enter the key.)
NON_SHAPING_LIBRARIES = frozenset({"dagster", "mlflow", "fsspec", "s3fs", "lakefs",
                                   "tenacity", "filelock", "pydantic", "yaml", "sqlalchemy",
                                   "blake3",
                                   PACKAGE})
# Import names whose distribution name differs (others are looked up in the metadata).
_DISTRIBUTIONS = {"sklearn": "scikit-learn", "yaml": "pyyaml", "great_expectations":
                  "great-expectations", "onnxruntime": "onnxruntime", "PIL": "pillow"}


def thread_count() -> int:
    """The pinned thread count for numeric libraries (torch results depend on it)."""
    return int(os.environ.get("TIDELINE_THREADS", "1"))


@dataclass(frozen=True)
class Fingerprint:
    """The code a stage runs: a hash of it and the third-party libraries it imports."""

    code: str
    libraries: tuple[str, ...]
    definitions: tuple[str, ...] = field(default=(), compare=False)  # for people: what counts


@dataclass(frozen=True)
class _Definition:
    tree: str  # the normalized syntax tree (ast.dump, docstrings dropped)
    names: frozenset[str]  # the names and dotted attribute chains it uses
    imports: tuple[tuple[str, str], ...]  # its own (function-local) imports: local -> target


@dataclass(frozen=True)
class _Module:
    definitions: dict[str, _Definition]
    imports: dict[str, str]  # local name -> "pkg.module" or "pkg.module:name"


def strip_docstrings(tree: ast.AST) -> ast.AST:
    """Drop every bare string statement in ``tree`` (in place).

    That is the docstrings of the module, classes and functions, and the attribute
    docstrings under fields (the spec's field descriptions): text that changes no output.
    """
    def is_text(stmt: ast.stmt) -> bool:
        return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
                and isinstance(stmt.value.value, str))

    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            if any(is_text(stmt) for stmt in node.body):
                node.body = [stmt for stmt in node.body if not is_text(stmt)] or [ast.Pass()]
    return tree


def _import_targets(node: ast.AST) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if isinstance(node, ast.Import):
        for alias in node.names:
            local = alias.asname or alias.name.split(".")[0]
            out.append((local, alias.name if alias.asname else alias.name.split(".")[0]))
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        for alias in node.names:
            out.append((alias.asname or alias.name, f"{node.module}:{alias.name}"))
    return out


def _names(node: ast.AST) -> frozenset[str]:
    names: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            names.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            chain, base = [sub.attr], sub.value
            while isinstance(base, ast.Attribute):
                chain.append(base.attr)
                base = base.value
            if isinstance(base, ast.Name):
                names.add(".".join([base.id, *reversed(chain)]))
    return frozenset(names)


def _definition(node: ast.AST) -> _Definition:
    local = tuple(t for sub in ast.walk(node) for t in _import_targets(sub))
    return _Definition(ast.dump(strip_docstrings(node), include_attributes=False),
                       _names(node), local)


def _assigned_names(node: ast.Assign | ast.AnnAssign | ast.AugAssign) -> list[str]:
    """Names a top-level assignment binds (``X[k] = …`` and ``X.a = …`` change ``X``)."""
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    names = []
    for target in targets:
        while isinstance(target, (ast.Subscript, ast.Attribute)):
            target = target.value
        if isinstance(target, ast.Name):
            names.append(target.id)
        elif isinstance(target, (ast.Tuple, ast.List)):
            names += [e.id for e in target.elts if isinstance(e, ast.Name)]
    return names


def _parse(source: str) -> _Module:
    definitions: dict[str, _Definition] = {}
    imports: dict[str, str] = {}
    extra: dict[str, list[str]] = {}  # later statements that change a name (X[k] = …)

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                definitions[node.name] = _definition(node)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                for name in _assigned_names(node):
                    tree = _definition(node)
                    if name in definitions:
                        extra.setdefault(name, []).append(tree.tree)
                    else:
                        definitions[name] = tree
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                if isinstance(node, ast.ImportFrom) and (node.level or any(
                        a.name == "*" for a in node.names)):
                    raise ValueError("relative and star imports hide what a stage calls: "
                                     f"import names explicitly (line {node.lineno})")
                imports.update(_import_targets(node))
            elif isinstance(node, ast.If):  # e.g. `if TYPE_CHECKING:`; both branches count
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)

    visit(ast.parse(source).body)
    for name, trees in extra.items():
        first = definitions[name]
        definitions[name] = _Definition("\n".join([first.tree, *trees]), first.names,
                                        first.imports)
    return _Module(definitions, imports)


def _module_file(module: str, root: Path = PACKAGE_DIR) -> Path | None:
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = root.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@lru_cache(maxsize=256)
def _parsed(path: Path, mtime_ns: int) -> _Module:
    return _parse(path.read_text())


def _module(name: str, root: Path) -> _Module | None:
    path = _module_file(name, root) or _repo_module_file(name)
    return None if path is None else _parsed(path, path.stat().st_mtime_ns)


def _repo_module_file(name: str) -> Path | None:
    """The file of an imported module of this repository outside ``pipelines``.

    An asset module, say, whose compute function calls helpers defined beside it.
    """
    module = sys.modules.get(name)
    path = Path(getattr(module, "__file__", "") or "/").resolve()
    return path if path.is_file() and PACKAGE_DIR.parent in path.parents else None


@lru_cache(maxsize=1)
def _repo_packages() -> frozenset[str]:
    """Top-level names of this repository's own packages and modules (never libraries)."""
    return frozenset(p.stem for p in PACKAGE_DIR.parent.iterdir()
                     if p.suffix == ".py" or (p / "__init__.py").is_file())


def _is_module(name: str, root: Path) -> bool:
    return _module_file(name, root) is not None


class _Walker:
    """Follows names from definitions to definitions across ``pipelines`` modules."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.trees: dict[str, str] = {}  # "module:name" -> normalized tree
        self.libraries: set[str] = set(BASE_LIBRARIES)
        self.pending: list[tuple[str, str]] = []

    def add(self, module: str, name: str) -> None:
        if module in TRANSPORT_MODULES or f"{module}:{name}" in self.trees:
            return
        if _is_module(f"{module}.{name}", self.root):  # `from pipelines import deploy`
            return
        self.pending.append((module, name))

    def walk(self) -> None:
        while self.pending:
            module, name = self.pending.pop()
            key = f"{module}:{name}"
            parsed = _module(module, self.root)
            if key in self.trees or parsed is None:
                continue
            if name not in parsed.definitions:
                if name in parsed.imports:  # a re-export: follow it to its definition
                    self.resolve(parsed.imports[name], [])
                continue
            definition = parsed.definitions[name]
            self.trees[key] = definition.tree
            self.follow(module, parsed, definition)

    def follow(self, module: str, parsed: _Module, definition: _Definition) -> None:
        imports = {**parsed.imports, **dict(definition.imports)}
        for used in definition.names:
            head, *rest = used.split(".")
            if head in parsed.definitions and head not in dict(definition.imports):
                self.add(module, head)
                continue
            target = imports.get(head)
            if target is not None:
                self.resolve(target, rest)

    def resolve(self, target: str, rest: list[str]) -> None:
        """Follow an import target (``pkg.module`` or ``pkg.module:name``) and attributes."""
        if ":" in target:
            source, imported = target.split(":", 1)
            if _is_module(f"{source}.{imported}", self.root):  # a module imported by name
                self.module_attribute(f"{source}.{imported}", rest)
            elif source.split(".")[0] == PACKAGE:
                self.add(source, imported)
            elif source.split(".")[0] not in _repo_packages():
                self.libraries.add(source.split(".")[0])
        elif target.split(".")[0] == PACKAGE:
            self.module_attribute(target, rest)
        elif target.split(".")[0] not in _repo_packages():
            self.libraries.add(target.split(".")[0])

    def module_attribute(self, module: str, attrs: list[str]) -> None:
        path = module.split(".")
        for attr in attrs:  # `pipelines.stages.training.build` -> the deepest module
            if _is_module(".".join([*path, attr]), self.root):
                path.append(attr)
                continue
            self.add(".".join(path), attr)
            return


def _all_definitions(module: str, root: Path) -> list[str]:
    parsed = _module(module, root)
    if parsed is None:
        raise ValueError(f"{module} is not a module under {PACKAGE}/")
    return list(parsed.definitions)


def _function_definition(function: Callable[..., Any]) -> tuple[str, _Module, _Definition]:
    """A function's own definition and its module (whose helpers it may call)."""
    name = function.__module__
    path = _repo_module_file(name)
    module = _parsed(path, path.stat().st_mtime_ns) if path else _Module({}, {})
    node: ast.AST
    code = function.__code__
    try:
        source = textwrap.dedent(inspect.getsource(function))
    except OSError:  # no source (built at run time): its compiled code stands in
        return name, module, _Definition(repr(_code_shape(code)), frozenset(code.co_names), ())
    if function.__name__ == "<lambda>" and path is not None:
        # Its source lines hold more than the lambda; the lambda itself is what counts.
        node = next(n for n in ast.walk(ast.parse(path.read_text()))
                    if isinstance(n, ast.Lambda) and n.lineno == code.co_firstlineno)
    else:
        node = ast.parse(source).body[0]
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        node.name = "compute"  # the logic counts, not what the function is called
    return name, module, _definition(node)


def _code_shape(code: Any) -> tuple[Any, ...]:
    """A code object's instructions, names and constants, nested code objects included."""
    consts = tuple(_code_shape(c) if hasattr(c, "co_code") else c for c in code.co_consts)
    return (code.co_code, code.co_names, consts)


# Libraries another one calls on to shape bytes (torch's ONNX exporter runs onnxscript).
_IMPLIED = {"torch": ("onnxscript",)}


def _third_party(names: Iterable[str]) -> tuple[str, ...]:
    found = set(names)
    found |= {implied for n in list(found) for implied in _IMPLIED.get(n, ())}
    return tuple(sorted(n for n in found if n not in sys.stdlib_module_names
                        and n not in NON_SHAPING_LIBRARIES and not n.startswith("_")))


def _source_state(root: Path) -> tuple[tuple[str, int], ...]:
    """Every ``pipelines`` file with its modification time (a cache key for parsed code)."""
    return tuple(sorted((str(p), p.stat().st_mtime_ns) for p in root.rglob("*.py")))


@lru_cache(maxsize=64)
def _fingerprint(modules: tuple[str, ...], root: Path,
                 state: tuple[tuple[str, int], ...]) -> Fingerprint:
    walker = _Walker(root)
    for module in modules:
        for name in _all_definitions(module, root):
            walker.add(module, name)
    walker.walk()
    return Fingerprint(code=hash_json({"definitions": walker.trees}),
                       libraries=_third_party(walker.libraries),
                       definitions=tuple(sorted(walker.trees)))


def code_fingerprint(*modules: str, functions: Iterable[Callable[..., Any]] = (),
                     root: Path = PACKAGE_DIR) -> Fingerprint:
    """The code that shapes a stage's output, as a hash and the libraries it imports.

    Args:
        modules: The stage's ``pipelines`` modules (every top-level definition counts).
        functions: Code outside ``pipelines`` that feeds the output, e.g. the asset's
            compute function; what it uses from ``pipelines`` is followed too.
        root: Where the ``pipelines`` package is (tests point it at a copy).

    Returns:
        A `Fingerprint` that changes when any reached definition's syntax tree changes.
    """
    extra: list[str] = []
    walker = _Walker(root)
    for function in functions:
        module, parsed, definition = _function_definition(function)
        extra.append(definition.tree)
        walker.follow(module, parsed, definition)
    base = _fingerprint(tuple(modules), root, _source_state(root))
    if not extra:
        return base
    walker.walk()
    return Fingerprint(code=hash_json({"stage": base.code, "functions": extra,
                                       "definitions": walker.trees}),
                       libraries=_third_party([*base.libraries, *walker.libraries]),
                       definitions=tuple(sorted(set(base.definitions) | set(walker.trees))))


def _distribution(import_name: str) -> str | None:
    if import_name in _DISTRIBUTIONS:
        return _DISTRIBUTIONS[import_name]
    try:
        metadata.version(import_name)
        return import_name
    except metadata.PackageNotFoundError:
        names = _packages().get(import_name)  # a full scan of the installed metadata: slow
        return names[0] if names else None


@lru_cache(maxsize=1)
def _packages() -> dict[str, list[str]]:
    return dict(metadata.packages_distributions())


@lru_cache(maxsize=64)
def library_versions(import_names: tuple[str, ...] = BASE_LIBRARIES) -> dict[str, str]:
    """Installed versions of third-party libraries (by import name), read without importing.

    Standard-library modules are left out; they change with the Python version, which
    enters every key through `environment`.
    """
    versions = {}
    for name in _third_party(import_names):
        dist = _distribution(name)
        if dist is None:
            continue
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "absent"
    return versions


def environment(fingerprint: Fingerprint | None = None) -> dict[str, Any]:
    """The environment that shapes a stage's bytes: its libraries' versions, threads, Python."""
    names = fingerprint.libraries if fingerprint is not None else BASE_LIBRARIES
    return {"libraries": library_versions(tuple(names)), "threads": thread_count(),
            "python": f"{sys.version_info.major}.{sys.version_info.minor}"}


def recipe_key(
    asset: str,
    code: Fingerprint | str,
    config: dict[str, Any],
    inputs: dict[str, str],
    env: dict[str, Any] | None = None,
) -> str:
    """Combine everything a result depends on into one key."""
    fingerprint = code if isinstance(code, Fingerprint) else None
    return hash_json(
        {
            "asset": asset,
            "code": fingerprint.code if fingerprint else code,
            "config": config,
            "inputs": inputs,
            "env": environment(fingerprint) if env is None else env,
        }
    )
