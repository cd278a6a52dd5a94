"""Write the dataset spec's JSON Schema and its reference (``make schema``).

Usage: ``python -m cli.schema [--check]``. Both files come from the models in
``pipelines/spec.py`` (their field docstrings are the descriptions):

- ``datasets/spec.schema.json``, which editors check specs against: a spec whose first
  line is ``# yaml-language-server: $schema=spec.schema.json`` gets completion, hover text
  and errors as it is typed (VS Code's YAML extension, any YAML language server client);
- ``docs/spec-reference.md``: every key path, its type, default and meaning.

``--check`` writes nothing and exits 1 when either file differs from what it would write.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import typing
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SCHEMA = Path("datasets/spec.schema.json")
REFERENCE = Path("docs/spec-reference.md")
# The first line of every spec in datasets/: the YAML language server's schema binding.
MODELINE = "# yaml-language-server: $schema=spec.schema.json"


def json_schema() -> dict[str, Any]:
    """``DatasetSpec``'s JSON Schema, with the defaults its factories make filled in."""
    from pydantic.json_schema import GenerateJsonSchema

    from pipelines.spec import DatasetSpec

    class WithFactoryDefaults(GenerateJsonSchema):
        # Pydantic leaves a default_factory's value out; an editor shows it like any other.
        def get_default_value(self, schema: Any) -> Any:
            factory = schema.get("default_factory")
            if factory is not None and not schema.get("default_factory_takes_data"):
                return factory()
            return super().get_default_value(schema)

    schema = DatasetSpec.model_json_schema(schema_generator=WithFactoryDefaults)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$comment": "Generated from pipelines/spec.py by `make schema`; do not edit.",
            **schema, "title": "Tideline dataset spec"}


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# --- the reference -----------------------------------------------------------------------

_SCALARS = {str: "text", int: "integer", float: "number", bool: "true/false"}


def _flow(value: Any) -> str:
    """A value in YAML flow style, as a spec would write it."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        plain = value and value.strip() == value and not any(c in value for c in ":#,[]{}'\"")
        return value if plain else json.dumps(value)
    return str(value)


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _bounds(metadata: list[Any]) -> str:
    """The bounds pydantic checks (``ge=0, le=1``) as `` in [0, 1]``, `` > 0``, ..."""
    from pydantic.fields import FieldInfo

    # ``Annotated[int, Field(ge=1)]`` holds a FieldInfo whose metadata holds the bounds.
    metadata = [n for m in metadata for n in (m.metadata if isinstance(m, FieldInfo) else [m])]
    found = {name: getattr(m, name) for m in metadata
             for name in ("ge", "gt", "le", "lt", "min_length", "max_length", "pattern")
             if getattr(m, name, None) is not None}
    low = ("[", found["ge"]) if "ge" in found else ("(", found["gt"]) if "gt" in found else None
    high = ("]", found["le"]) if "le" in found else (")", found["lt"]) if "lt" in found else None
    text = ""
    if low and high:
        text = f" in {low[0]}{_number(low[1])}, {_number(high[1])}{high[0]}"
    elif low:
        text = f" {'≥' if low[0] == '[' else '>'} {_number(low[1])}"
    elif high:
        text = f" {'≤' if high[0] == ']' else '<'} {_number(high[1])}"
    if found.get("min_length") == found.get("max_length") == 1:
        text += ", one character"
    elif found.get("min_length") == 1:
        text += ", not empty"
    if "pattern" in found:
        text += f" matching `{found['pattern']}`"
    return text


def _inner(annotation: Any) -> str:
    """A type inside a list or mapping, in parentheses when it is a choice of types."""
    text = _type(annotation)
    return f"({text})" if " or " in text else text


def _type(annotation: Any, key: str = "") -> str:
    """A type as the reference names it: ``list of integer ≥ 1``, ``csv`` / ``parquet``."""
    import types

    from pydantic import BaseModel, ByteSize

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type(args[0]) + _bounds(list(args[1:]))
    if origin in (typing.Union, types.UnionType):
        named = [_type(a) for a in args if a is not type(None)]
        return " or ".join(named + (["null"] if type(None) in args else []))
    if origin is typing.Literal:
        return " / ".join(f"`{a}`" for a in args)
    if origin is list:
        return f"list of {_inner(args[0])}"
    if origin is dict:
        names = f" ({', '.join(map(str, typing.get_args(args[0])))})" if typing.get_origin(
            args[0]) is typing.Literal else ""
        return f"mapping `{key}`{names} → {_inner(args[1])}"
    if annotation is ByteSize:
        return "size (`4GB`, `512MiB`) or bytes"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "block"
    return _SCALARS[annotation]


def _field_type(field: Any) -> str:
    from pydantic import ByteSize

    from pipelines.spec import key_placeholder

    text = _type(field.annotation, key_placeholder(field.path))
    if field.info is None or ByteSize in typing.get_args(field.annotation):
        return text
    bounds = _bounds(field.info.metadata)
    if text.endswith(" or null"):
        return text.removesuffix(" or null") + bounds + " or null"
    return text + bounds


def _default(field: Any) -> str:
    from pydantic import BaseModel

    if field.info is None:
        return "—"
    if field.info.is_required():
        return "required"
    value = field.info.get_default(call_default_factory=True, validated_data={})
    if isinstance(value, BaseModel):
        try:
            if value == type(value)():
                return "its fields' defaults"
        except ValueError:  # a block with required fields: its default sets them
            pass
        value = value.model_dump(mode="json")
    return f"`{_flow(value)}`"


def _doc(model: type) -> str:
    from pipelines.spec import one_line

    return one_line(inspect.cleandoc(model.__doc__ or ""))


def _meaning(field: Any) -> str:
    from pipelines.spec import one_line

    if field.info is None:
        return _doc(field.block).split(". ")[0].removesuffix(".") + "."
    if not field.info.description:
        raise ValueError(f"{field.dotted} has no description: give the field a docstring in "
                         "pipelines/spec.py")
    return one_line(field.info.description)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _table(fields: list[Any]) -> list[str]:
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    rows += [f"| `{f.dotted}` | {_cell(_field_type(f))} | {_cell(_default(f))} | "
             f"{_cell(_meaning(f))} |" for f in fields]
    return rows


def reference_text() -> str:
    """docs/spec-reference.md: every key path of a spec, its type, default and meaning."""
    from pipelines.spec import ENV_FIELDS, DatasetSpec, spec_fields

    fields = spec_fields()
    sections = [f for f in fields if len(f.path) == 1 and (
        f.block is not None or any(g.path[:1] == f.path and len(g.path) > 1 for g in fields))]
    top = [f for f in fields if len(f.path) == 1 and f not in sections]
    env = ", ".join(f"`{f}`" for f in ENV_FIELDS)
    lines = [
        "# Dataset spec reference",
        "",
        "<!-- Generated from pipelines/spec.py by `make schema`; edit the field docstrings "
        "there, not this file. -->",
        "",
        f"{_doc(DatasetSpec)} Every key a spec may set is below, with its type, its default "
        "and what it does. A `<column>`, `<metric>`, `<param>` or `<priority>` part of a key "
        "is a key you choose: a column's name, one of the metrics listed, a parameter's name, "
        "a request priority.",
        "",
        "A key not listed here is refused when the spec loads, as is a value of another type "
        "or outside the bounds shown; rules across keys (`min` below `max`, the target not "
        "among the columns, sensitive columns among them, the split fractions leaving rows "
        "to train on) are checked then too, each failure one line naming the file and the "
        f"key. `${{VAR}}` and `${{VAR:-default}}` are expanded in {env} only.",
        "",
        "`datasets/spec.schema.json` is the same rules as a JSON Schema: with a YAML "
        "language server (VS Code's YAML extension, for one) a spec whose first line is "
        f"`{MODELINE}` is checked as you type, keys are completed and each key's meaning "
        "shows on hover.",
        "",
        "## Top level",
        "",
        *_table(top),
    ]
    for section in sections:
        inside = [f for f in fields if f.path[:1] == section.path]
        lines += ["", f"## `{section.dotted}`", ""]
        if section.block is not None and section.block.__doc__:
            lines += [_doc(section.block), ""]
        lines += _table(inside)
        notes = [f for f in inside[1:] if f.block is not None and f.block.__doc__
                 and f.block not in {g.block for g in inside[:inside.index(f)]}]
        if notes:
            lines += [""] + [f"- `{f.dotted}`: {_doc(f.block)}" for f in notes]
    return "\n".join(lines) + "\n"


def outputs() -> dict[Path, str]:
    """What ``make schema`` writes, by path relative to the repository."""
    return {SCHEMA: schema_text(), REFERENCE: reference_text()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.schema")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when a file is stale")
    args = parser.parse_args(argv)
    stale = []
    for relative, text in outputs().items():
        path = REPO / relative
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(str(relative))
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if args.check:
        print(f"stale: {', '.join(stale)}; run `make schema`" if stale else "up to date")
        return 1 if stale else 0
    print(f"wrote {', '.join(stale)}" if stale else "up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
