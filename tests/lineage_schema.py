"""A JSON Schema for the core of an OpenLineage RunEvent, written for the tests.

No OpenLineage JSON Schema ships with the installed packages (openlineage-python holds
generated classes that only link to https://openlineage.io/spec/…), and the tests run
offline. This schema states the RunEvent rules of the spec (2-0-2) that Tideline's events
depend on: the required fields and their types, the event types, UUID run ids, timestamps
with a time zone, datasets named by namespace and name, and facets that say who produced
them and which schema they follow. Event-specific facet contents are not checked here.
"""

from __future__ import annotations

from typing import Any

_UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
_URI = r"^[a-zA-Z][a-zA-Z0-9+.-]*:\S+$"

_FACET = {"type": "object", "required": ["_producer", "_schemaURL"],
          "properties": {"_producer": {"type": "string", "pattern": _URI},
                         "_schemaURL": {"type": "string", "pattern": _URI}}}
_FACETS = {"type": "object", "additionalProperties": _FACET}
_DATASET = {"type": "object", "required": ["namespace", "name"],
            "properties": {"namespace": {"type": "string", "minLength": 1},
                           "name": {"type": "string", "minLength": 1},
                           "facets": _FACETS}}

RUN_EVENT: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["eventTime", "producer", "schemaURL", "run", "job"],
    "properties": {
        "eventTime": {"type": "string", "pattern": _TIME},
        "producer": {"type": "string", "pattern": _URI},
        "schemaURL": {"type": "string", "pattern": r"^https://openlineage\.io/spec/.*RunEvent$"},
        "eventType": {"enum": ["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"]},
        "run": {"type": "object", "required": ["runId"],
                "properties": {"runId": {"type": "string", "pattern": _UUID},
                               "facets": _FACETS}},
        "job": {"type": "object", "required": ["namespace", "name"],
                "properties": {"namespace": {"type": "string", "minLength": 1},
                               "name": {"type": "string", "minLength": 1},
                               "facets": _FACETS}},
        "inputs": {"type": "array", "items": _DATASET},
        "outputs": {"type": "array", "items": _DATASET},
    },
}


def run_event_errors(event: dict[str, Any]) -> list[str]:
    """Every way an event breaks the schema above (empty when it follows it)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(RUN_EVENT)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(event)]
