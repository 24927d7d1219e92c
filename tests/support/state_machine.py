"""The backfill state machine of deploy/lambda/template.yaml, as Step Functions would read it.

``backfill_definition()`` is the ASL document with its ``DefinitionSubstitutions`` applied (function
ARNs, the results bucket, the two numbers), the way CloudFormation hands it to Step Functions.
``select`` evaluates a JSONPath payload template (``"name.$": "$.a.b"``, ``$$.Map.Item.Value.x``,
``States.StringToJson('10')``) over a state's input, as Step Functions does for ``Parameters``,
``ItemSelector`` and ``ResultSelector``: only the forms the definition uses, anything else fails.
Neither runs a state machine: no real Step Functions is reachable here, and moto's cannot run this
one (its ItemReader has no JSONL and its Lambda tasks need Docker).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.unit.deploy.test_manifests import DEPLOY, _cloudformation

TEMPLATE = DEPLOY / "lambda" / "template.yaml"
STATE_MACHINE = "CdcsyncBackfill"
SUBSTITUTED = {
    "ExportCheckFunction": "arn:aws:lambda:eu-west-1:123456789012:function:cdcsync-users-export-check",
    "ExportFunction": "arn:aws:lambda:eu-west-1:123456789012:function:cdcsync-users-export",
    "VerifyFunction": "arn:aws:lambda:eu-west-1:123456789012:function:cdcsync-users-verify",
    "ResultsBucket": "cdcsync-backfill-results",
}
_STRING_TO_JSON = re.compile(r"States\.StringToJson\('([^']*)'\)")


def template(path: Path = TEMPLATE) -> dict[str, Any]:
    document: dict[str, Any] = _cloudformation(path)
    return document


def backfill_definition(numbers: dict[str, str] | None = None) -> dict[str, Any]:
    """The ASL definition with its substitutions applied; ``numbers``: the template parameters' values
    (default: their defaults)."""
    document = template()
    machine = document["Resources"][STATE_MACHINE]["Properties"]
    parameters = document["Parameters"]
    values = dict(SUBSTITUTED)
    for name, value in machine["DefinitionSubstitutions"].items():
        if name not in values:
            (parameter,) = value.values()  # {"Ref": Parameter}
            values[name] = (numbers or {}).get(name, str(parameters[parameter]["Default"]))
    text = json.dumps(machine["Definition"])
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    assert "${" not in text, text
    definition: dict[str, Any] = json.loads(text)
    return definition


def resolve(path: str, data: Any, context: dict[str, Any]) -> Any:
    """``$.a.b`` over ``data``, ``$$.a.b`` over the context object."""
    if (match := _STRING_TO_JSON.fullmatch(path)) is not None:
        return json.loads(match.group(1))
    root, rest = (context, path[2:]) if path.startswith("$$") else (data, path[1:])
    assert rest == "" or rest.startswith("."), path
    value = root
    for part in filter(None, rest.split(".")):
        value = value[part]
    return value


def select(template: Any, data: Any, context: dict[str, Any] | None = None) -> Any:
    """A payload template (``Parameters``, ``ItemSelector``, ``ResultSelector``) applied to ``data``."""
    if isinstance(template, dict):
        out = {}
        for key, value in template.items():
            if key.endswith(".$"):
                out[key[:-2]] = resolve(value, data, context or {})
            else:
                out[key] = select(value, data, context)
        return out
    return template


def states_of(machine: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every state of ``machine`` and of the Map's item processors, by name."""
    found: dict[str, dict[str, Any]] = {}
    for name, state in machine["States"].items():
        found[name] = state
        if "ItemProcessor" in state:
            found.update(states_of(state["ItemProcessor"]))
    return found
