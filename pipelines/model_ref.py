"""``training.model`` parsed and located, without importing torch.

The spec validates the reference and the training stage's recipe key takes the code's
hash from here; building the network is `pipelines.architectures`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The built-in architectures (pipelines.architectures.BUILTIN), and the default one:
# picked by measurement (bench.models), an MLP over periodic numeric embeddings.
BUILTIN_NAMES = ("mlp", "plr_mlp", "plr_ensemble")
DEFAULT = "plr_mlp"


class ModelCodeError(ValueError):
    """``training.model`` cannot be loaded or built: one line naming the file and function."""


@dataclass(frozen=True)
class ModelRef:
    """``training.model`` parsed: a built-in name, or a file or module and a function."""

    text: str
    builtin: str | None = None
    file: str | None = None
    module: str | None = None
    function: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        if text in BUILTIN_NAMES:
            return cls(text, builtin=text)
        target, sep, function = text.rpartition(":")
        if not sep or not target or not function.isidentifier():
            raise ModelCodeError(
                f"training.model {text!r} is neither a built-in architecture "
                f"({', '.join(BUILTIN_NAMES)}) nor 'path/to/file.py:function' or "
                "'package.module:function'; fix training.model in the spec")
        if target.endswith(".py"):
            return cls(text, file=target, function=function)
        return cls(text, module=target, function=function)

    @property
    def where(self) -> str:
        return f"{self.file or self.module}, function {self.function}"


def search_paths() -> list[Path]:
    """Where a relative model file is looked for, in order.

    The project root (the folder above the specs' folder), then the working directory.
    """
    from pipelines.paths import datasets_dir

    return list(dict.fromkeys([datasets_dir().parent, Path.cwd()]))


def locate(ref: ModelRef) -> Path | None:
    """The source file of a user model (``None`` for a built-in)."""
    import importlib.util

    if ref.builtin:
        return None
    if ref.file:
        path = Path(ref.file)
        candidates = [path] if path.is_absolute() else [base / path for base in search_paths()]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            looked = ", ".join(str(p) for p in candidates)
            raise ModelCodeError(
                f"training.model {ref.text!r}: file {ref.file} not found (looked at {looked}); "
                "fix the path in training.model (relative to the project root)")
        return found.resolve()
    try:
        found_spec = importlib.util.find_spec(ref.module or "")
    except (ImportError, ValueError) as exc:
        found_spec, problem = None, f"{type(exc).__name__}: {exc}"
    else:
        problem = "no such module on the Python path"
    if found_spec is None or not found_spec.origin or not Path(found_spec.origin).is_file():
        raise ModelCodeError(
            f"training.model {ref.text!r}: cannot import module {ref.module} ({problem}); "
            "install the package or fix training.model")
    return Path(found_spec.origin).resolve()


def code_hash(text: str) -> str:
    """A hash of the model's code as it is now, so an edit to it re-keys training.

    The built-in name, or the user file's syntax (docstrings and comments do not count).
    """
    import ast
    import hashlib

    from pipelines.recipe import strip_docstrings

    ref = ModelRef.parse(text)
    path = locate(ref)
    if path is None:
        return f"builtin:{ref.builtin}"
    source = path.read_bytes()
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return hashlib.sha256(source).hexdigest()
    return hashlib.sha256(ast.dump(strip_docstrings(tree)).encode()).hexdigest()
