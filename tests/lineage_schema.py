"""OpenLineage RunEvents checked offline against the spec as the client's classes model it.

No package found on PyPI or npm ships the OpenLineage JSON Schema (``spec/OpenLineage.json``
and the facet schemas): openlineage-python, -integration-common, -sql, -dbt, -airflow and
-dagster ship none (nor their source distributions), and apache-airflow-providers-openlineage
ships only its own Airflow facets. The classes in
``openlineage.client.generated`` are generated from those schema files, each class naming the
schema URL it came from, so the tests check events against them, not against a hand-written
schema. An event passes when

- its ``schemaURL`` is the RunEvent of the spec version the client models, and every facet
  whose ``_schemaURL`` the client knows is checked as that facet's class and sits where its
  kind goes (a run facet under ``run.facets``, a dataset facet under a dataset's ``facets``);
- each field has the JSON type of its annotation (string, integer, number, boolean, one of an
  enum's values, a list, a map, an object); null is no value of any of them;
- the fields the classes give no default, and the base fields every event and facet must carry
  (``producer``/``schemaURL``, ``_producer``/``_schemaURL``), are present;
- the fields the schema gives a ``date-time``, ``uri`` or ``uuid`` format (known from the
  validators the client's generator wrote for exactly those) hold it as RFC 3339, RFC 3986
  (an absolute URI) and RFC 4122 (the hyphenated form) write it;
- the client's own validators accept the objects built from it.

Not checked, for want of the schema files: what the generator does not carry into the classes
(string patterns, numeric ranges and the like), and facets in a version or
of a kind the client does not generate (checked as base facets only). The spec lets events and
facets carry keys it does not define: :func:`unmodelled_fields` lists them (Tideline writes none).
"""

from __future__ import annotations

import enum
import functools
import re
import types
import typing
from typing import Any

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_ABSOLUTE_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]+$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")
_FORMATS = {"date-time": _RFC3339, "uri": _ABSOLUTE_URI, "uuid": _UUID}
# What the validator the client's generator writes for each format calls.
_FORMAT_CALLS = {"isoparse": "date-time", "urlparse": "uri", "UUID": "uuid"}
_JSON_TYPES: dict[type, tuple[type, ...]] = {str: (str,), int: (int,), float: (int, float),
                                             bool: (bool,)}
_INVALID = object()  # a value that broke a rule (its error is recorded)


@functools.cache
def _facet_classes() -> dict[str, type]:
    """Every facet class the client generates, by the schema URL it follows."""
    import importlib
    import pkgutil

    import attr
    import openlineage.client.generated as generated
    from openlineage.client.generated.base import BaseFacet

    found: dict[str, type] = {}
    for info in pkgutil.iter_modules(generated.__path__):
        module = importlib.import_module(f"{generated.__name__}.{info.name}")
        for obj in vars(module).values():
            if (isinstance(obj, type) and attr.has(obj) and issubclass(obj, BaseFacet)
                    and obj.__module__ == module.__name__):
                found[obj._get_schema()] = obj
    return found


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@functools.cache
def _base_fields(cls: type) -> frozenset[str]:
    """The fields every event (or facet) must carry, which the client fills in itself."""
    import attr
    from openlineage.client.generated.base import BaseEvent, BaseFacet

    return frozenset(f.name for base in (BaseEvent, BaseFacet) if issubclass(cls, base)
                     for f in attr.fields(base))


def _format(field: Any) -> str | None:
    """The schema's format for a field, from the validator generated for it (None: none)."""
    code = getattr(field.validator, "__code__", None)
    names = set(code.co_names) if code is not None else set()
    return next((fmt for call, fmt in _FORMAT_CALLS.items() if call in names), None)


class _Check:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.unmodelled: list[str] = []

    def fail(self, path: str, message: str) -> object:
        self.errors.append(f"{path or '/'}: {message}")
        return _INVALID

    def value(self, data: Any, hint: Any, path: str) -> Any:
        """``data`` as a value of the annotation ``hint`` (``_INVALID`` when it is none)."""
        import attr
        from openlineage.client.generated.base import BaseFacet

        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if hint is Any:
            return data
        if origin in (typing.Union, types.UnionType):
            return self.union(data, [a for a in args if a is not type(None)], path)
        if data is None:
            return self.fail(path, "null is not allowed: the spec gives this field a type "
                                   "(leave an absent value out)")
        if origin is typing.Literal:
            return data if data in args else self.fail(path, f"{data!r} is not one of {args}")
        if origin is list:
            if not isinstance(data, list):
                return self.fail(path, f"expected an array, got {type(data).__name__}")
            items = [self.value(item, args[0], f"{path}/{i}") for i, item in enumerate(data)]
            return _INVALID if _INVALID in items else items
        if origin is dict:
            if not isinstance(data, dict):
                return self.fail(path, f"expected an object, got {type(data).__name__}")
            kind = args[1]
            facet = isinstance(kind, type) and issubclass(kind, BaseFacet)
            entries = {key: (self.facet(item, kind, f"{path}/{key}") if facet
                             else self.value(item, kind, f"{path}/{key}"))
                       for key, item in data.items()}
            return _INVALID if _INVALID in entries.values() else entries
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            values = [m.value for m in hint]
            return hint(data) if data in values else self.fail(
                path, f"{data!r} is not one of {values}")
        if isinstance(hint, type) and attr.has(hint):
            return self.obj(data, hint, path)
        if hint in _JSON_TYPES:
            if isinstance(data, _JSON_TYPES[hint]) and (hint is bool
                                                        or not isinstance(data, bool)):
                return data
            return self.fail(path, f"expected {hint.__name__}, got {type(data).__name__}")
        raise TypeError(f"tests/lineage_schema.py: no rule for the annotation {hint!r} at "
                        f"{path}; add one for this openlineage-python version")

    def union(self, data: Any, options: list[Any], path: str) -> Any:
        if len(options) == 1:
            return self.value(data, options[0], path)
        for option in options:
            trial = _Check()
            built = trial.value(data, option, path)
            if not trial.errors:
                self.unmodelled += trial.unmodelled
                return built
        return self.fail(path, f"matches none of {options}")

    def facet(self, data: Any, kind: type, path: str) -> Any:
        """A facet: as the class its ``_schemaURL`` names, else as a facet of ``kind``."""
        if not isinstance(data, dict):
            return self.fail(path, f"a facet is an object, got {type(data).__name__}")
        cls = _facet_classes().get(data.get("_schemaURL"))  # type: ignore[arg-type]
        if cls is None:
            self.unmodelled.append(f"{path}: a facet the client does not model "
                                   f"({data.get('_schemaURL')!r}), checked as a base facet")
            return self.obj(data, kind, path, known=False)
        if not issubclass(cls, kind):
            return self.fail(path, f"a {cls.__name__} is no {kind.__name__}: it goes elsewhere")
        return self.obj(data, cls, path)

    def obj(self, data: Any, cls: type, path: str, known: bool = True) -> Any:
        """An object of the generated class ``cls``, built to run the client's validators."""
        import attr

        if not isinstance(data, dict):
            return self.fail(path, f"expected an object ({cls.__name__}), "
                                   f"got {type(data).__name__}")
        fields = attr.fields(cls)
        names = {f.name for f in fields}
        if known:
            self.unmodelled += [f"{path}/{key}: not in the client's {cls.__name__}"
                                for key in data if key not in names]
        kwargs: dict[str, Any] = {}
        before = len(self.errors)
        for field in fields:
            where = f"{path}/{field.name}"
            if field.name not in data:
                if field.default is attr.NOTHING or field.name in _base_fields(cls):
                    self.fail(where, f"required by {cls.__name__} but missing")
                continue
            value = self.value(data[field.name], _hints(cls)[field.name], where)
            fmt = _format(field)
            if isinstance(value, str) and fmt and not _FORMATS[fmt].match(value):
                self.fail(where, f"{value!r} is not a {fmt} as the schema's format asks")
            elif value is not _INVALID and field.validator is not None:
                try:  # the generated validators look at the value alone
                    field.validator(None, field, value)
                except (TypeError, ValueError, OverflowError) as exc:
                    self.fail(where, f"the client's {cls.__name__} rejects it: {exc}")
            if not field.init:  # the schema URL the class writes itself
                if known and value != cls._get_schema():  # type: ignore[attr-defined]
                    self.fail(where, f"{value!r} is not the {cls.__name__} schema the client "
                                     f"models ({cls._get_schema()})")  # type: ignore[attr-defined]
                continue
            kwargs[field.alias] = value
        if len(self.errors) > before:
            return _INVALID
        try:
            return cls(**kwargs)
        except (TypeError, ValueError, OverflowError) as exc:
            return self.fail(path, f"the client's {cls.__name__} rejects it: {exc}")


def check_run_event(event: Any) -> tuple[list[str], list[str]]:
    """The ways ``event`` breaks the spec, and the keys in it the client's classes do not model."""
    from openlineage.client.generated.base import RunEvent

    check = _Check()
    check.value(event, RunEvent, "")
    return check.errors, check.unmodelled


def run_event_errors(event: Any) -> list[str]:
    """Every way an event breaks the spec as the client models it (empty when it follows it)."""
    return check_run_event(event)[0]


def unmodelled_fields(event: Any) -> list[str]:
    """Keys of an event the spec allows but the client's classes do not define."""
    return check_run_event(event)[1]
