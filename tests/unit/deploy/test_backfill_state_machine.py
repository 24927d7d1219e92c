"""The backfill state machine of deploy/lambda/template.yaml (issue 15): its ASL definition, roles, functions.

cfn-lint does not look inside an ``AWS::Serverless::StateMachine`` definition, so it is checked here:
parsed from the template with its substitutions applied, every transition, the Distributed Map's
reader, processor and limits, and the retry rules; and its syntax by the ASL grammar moto ships
(LocalStack's). It is not executed: moto's interpreter has no JSONL item reader and runs Lambda
tasks in Docker, which is not available here; no real Step Functions is reachable either.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from typing import Any

import pytest

from cdcsync.backfill.export_file import REQUIRED_EVENT_FIELDS
from tests.support.state_machine import backfill_definition, select, states_of, template

LAMBDA_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
}
TERMINAL = {"Succeed", "Fail"}


def _transitions(state: dict[str, Any]) -> set[str]:
    targets = {choice["Next"] for choice in state.get("Choices", [])}
    targets |= {state[key] for key in ("Next", "Default") if key in state}
    return targets


@pytest.mark.parametrize("path", ["", "LoadFiles"])
def test_backfill_state_machine_every_state_is_reached_and_leads_somewhere(path: str) -> None:
    # GIVEN the definition, or the Map's item processor
    definition = backfill_definition()
    machine = definition["States"][path]["ItemProcessor"] if path else definition
    states = machine["States"]
    # THEN every transition names a state of the same machine
    for name, state in states.items():
        assert _transitions(state) <= set(states), name
        # AND a state ends the run only as a Succeed or Fail state; every other state goes on
        if state["Type"] in TERMINAL:
            assert not _transitions(state), name
        elif state["Type"] == "Choice":
            assert state["Choices"], name
            assert "Default" in state, name
        else:
            assert ("Next" in state) != state.get("End", False), name
    # AND every state is reachable from StartAt
    reached, todo = set(), [machine["StartAt"]]
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo.extend(_transitions(states[name]))
    assert reached == set(states)


def test_backfill_state_machine_checks_the_export_then_maps_its_files_then_verifies() -> None:
    # GIVEN the top-level states
    states = backfill_definition()["States"]
    # THEN the export is checked first (its age refusal stops the run before anything is written),
    # then its files are loaded, then a sample is verified, and drift fails the execution
    assert backfill_definition()["StartAt"] == "CheckExport"
    assert [states["CheckExport"]["Next"], states["LoadFiles"]["Next"], states["Verify"]["Next"]] == [
        "LoadFiles",
        "Verify",
        "Verified",
    ]
    (drift,) = states["Verified"]["Choices"]
    assert (drift["Variable"], drift["BooleanEquals"], drift["Next"]) == (
        "$.verify.report.drift",
        True,
        "Drift",
    )
    assert states["Drift"]["Type"] == "Fail"


def test_backfill_state_machine_map_reads_the_manifest_as_json_lines() -> None:
    # GIVEN the Distributed Map
    load = backfill_definition()["States"]["LoadFiles"]
    # THEN it reads manifest-files.json (JSON Lines) from where CheckExport found it
    assert load["ItemReader"] == {
        "Resource": "arn:aws:states:::s3:getObject",
        "ReaderConfig": {"InputType": "JSONL"},
        "Parameters": {"Bucket.$": "$.load.check.bucket", "Key.$": "$.load.check.manifestFilesS3Key"},
    }
    # AND runs each file in a standard child workflow (a file may take several 15-minute invocations)
    assert load["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    # AND a file that fails for good fails the execution
    assert load["ToleratedFailurePercentage"] == 0
    # AND the child results go to S3, not into the 256 KiB execution state
    assert load["ResultWriter"]["Resource"] == "arn:aws:states:::s3:putObject"


def test_backfill_state_machine_max_concurrency_is_the_template_parameter_as_a_number() -> None:
    # GIVEN the definition built with BackfillMaxConcurrency 25 and BackfillVerifySample 500
    definition = backfill_definition({"MaxConcurrency": "25", "VerifySample": "500"})
    states = definition["States"]
    # WHEN CheckExport's answer goes through its ResultSelector
    load = select(states["CheckExport"]["ResultSelector"], {"Payload": {"table": "Users"}})
    # THEN the Map's MaxConcurrencyPath and the verify sample find numbers, not text
    assert states["LoadFiles"]["MaxConcurrencyPath"] == "$.load.maxConcurrency"
    assert load == {"check": {"table": "Users"}, "maxConcurrency": 25, "verifySample": 500}
    # AND they are the template's parameters
    machine = template()["Resources"]["CdcsyncBackfill"]["Properties"]
    assert machine["DefinitionSubstitutions"]["MaxConcurrency"] == {"Ref": "BackfillMaxConcurrency"}
    assert template()["Parameters"]["BackfillMaxConcurrency"]["MinValue"] == 1


def test_backfill_state_machine_item_selector_builds_the_export_handler_event() -> None:
    # GIVEN a manifest-files.json line and what CheckExport answered
    load = backfill_definition()["States"]["LoadFiles"]
    line = {
        "itemCount": 7,
        "md5Checksum": "m",
        "etag": "e",
        "dataFileS3Key": "p/AWSDynamoDB/x/data/a.json.gz",
    }
    state = {"load": {"check": {"table": "Users", "bucket": "b", "exportTimeMs": 1_767_225_600_000}}}
    # WHEN the Map selects the item
    item = select(load["ItemSelector"], state, {"Map": {"Item": {"Index": 3, "Value": line}}})
    # THEN it is the event the export handler requires
    assert item == {
        "table": "Users",
        "bucket": "b",
        "exportTimeMs": 1_767_225_600_000,
        "dataFileS3Key": "p/AWSDynamoDB/x/data/a.json.gz",
        "unit": 3,
    }
    assert set(REQUIRED_EVENT_FIELDS) <= set(item)


def test_backfill_state_machine_file_loop_invokes_again_while_not_finished() -> None:
    # GIVEN the item processor
    processor = backfill_definition()["States"]["LoadFiles"]["ItemProcessor"]["States"]
    # THEN the handler's answer (its Payload) is the next input, and an unfinished file is loaded again
    assert processor["LoadFile"]["OutputPath"] == "$.Payload"
    assert processor["LoadFile"]["Parameters"]["Payload.$"] == "$"
    (again,) = processor["FileLoaded"]["Choices"]
    assert (again["Variable"], again["BooleanEquals"], again["Next"]) == ("$.finished", False, "LoadFile")
    assert processor[processor["FileLoaded"]["Default"]]["Type"] == "Succeed"


def test_backfill_state_machine_tasks_retry_lambda_and_transient_errors_with_backoff_only() -> None:
    # GIVEN every Task of the definition, the Map's included
    tasks = {name: s for name, s in states_of(backfill_definition()).items() if s["Type"] == "Task"}
    assert set(tasks) == {"CheckExport", "LoadFile", "Verify"}
    for name, task in tasks.items():
        assert task["Resource"] == "arn:aws:states:::lambda:invoke", name
        retried = {error for rule in task["Retry"] for error in rule["ErrorEquals"]}
        # THEN Lambda's own throttling and faults, and cdcsync's TransientError, are retried
        assert retried == LAMBDA_ERRORS | {"TransientError"}, name
        # AND never a configuration or fatal error (States.ALL and States.TaskFailed would include them)
        assert not retried & {"States.ALL", "States.TaskFailed", "ConfigError", "FatalError"}, name
        for rule in task["Retry"]:
            # AND with exponential backoff, capped, jittered
            assert rule["BackoffRate"] >= 2, name
            assert 1 <= rule["IntervalSeconds"] <= rule["MaxDelaySeconds"] <= 300, name
            assert rule["MaxAttempts"] >= 8, name
            assert rule["JitterStrategy"] == "FULL", name


def test_backfill_state_machine_definition_parses_with_the_asl_grammar() -> None:
    # GIVEN the ASL grammar moto ships (LocalStack's)
    antlr4 = pytest.importorskip("antlr4")
    lexer = pytest.importorskip("moto.stepfunctions.parser.asl.antlr.runtime.ASLLexer")
    parser = pytest.importorskip("moto.stepfunctions.parser.asl.antlr.runtime.ASLParser")
    listener = pytest.importorskip("moto.stepfunctions.parser.asl.parse.asl_parser")

    def errors(definition: dict[str, Any]) -> list[str]:
        text = json.dumps(definition)
        # Its grammar takes ToleratedFailurePercentage as a decimal only; AWS takes 0 (its own examples)
        text = text.replace('"ToleratedFailurePercentage": 0', '"ToleratedFailurePercentage": 0.0')
        found = listener.SyntaxErrorListener()
        tokens = antlr4.CommonTokenStream(lexer.ASLLexer(antlr4.InputStream(text)))
        asl = parser.ASLParser(tokens)
        asl.removeErrorListeners()
        asl.addErrorListener(found)
        asl.state_machine()
        return list(found.errors)

    # WHEN it parses the definition THEN it finds no syntax error
    definition = backfill_definition()
    assert errors(definition) == []
    # AND it is a check that can fail: a misspelled field is an error
    definition["States"]["LoadFiles"]["MaxConcurencyPath"] = definition["States"]["LoadFiles"].pop(
        "MaxConcurrencyPath"
    )
    assert errors(definition)


def _statements(role: str) -> list[dict[str, Any]]:
    properties = template()["Resources"][role]["Properties"]
    return [s for policy in properties["Policies"] for s in policy["PolicyDocument"]["Statement"]]


@pytest.mark.parametrize("role", ["CdcsyncBackfillRole", "CdcsyncBackfillStateMachineRole"])
def test_backfill_roles_allow_named_actions_on_named_resources_only(role: str) -> None:
    # GIVEN the role's statements
    for statement in _statements(role):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        # THEN each allows named actions on named resources, never "*"
        assert statement["Effect"] == "Allow", statement["Sid"]
        assert all("*" not in action for action in actions), statement["Sid"]
        assert statement["Resource"] != "*", statement["Sid"]


def test_backfill_roles_read_the_export_prefix_only() -> None:
    # GIVEN the statements on the export bucket
    export = "arn:${AWS::Partition}:s3:::${ExportBucketName}"
    functions = {s["Sid"]: s for s in _statements("CdcsyncBackfillRole")}
    machine = {s["Sid"]: s for s in _statements("CdcsyncBackfillStateMachineRole")}
    # THEN objects are read only under the exports' prefix, and listed only there
    for statement in (functions["ReadExport"], machine["ReadManifest"]):
        assert (statement["Action"], statement["Resource"]) == (
            "s3:GetObject",
            {"Fn::Sub": f"{export}/${{ExportPrefix}}*"},
        )
    assert functions["FindExport"]["Condition"] == {
        "StringLike": {"s3:prefix": {"Fn::Sub": "${ExportPrefix}*"}}
    }
    # AND nothing of the export is written or deleted
    writes = [s for s in _statements("CdcsyncBackfillRole") if "s3:PutObject" in str(s["Action"])]
    assert writes == []


def test_backfill_state_machine_role_invokes_exactly_the_three_functions() -> None:
    # GIVEN the state machine's role
    statements = {s["Sid"]: s for s in _statements("CdcsyncBackfillStateMachineRole")}
    # THEN it invokes the three backfill functions and nothing else (not the stream function)
    assert statements["InvokeBackfillFunctions"]["Resource"] == [
        {"Fn::GetAtt": [name, "Arn"]}
        for name in ("CdcsyncExportCheckFunction", "CdcsyncExportFunction", "CdcsyncVerifyFunction")
    ]
    # AND starts child executions only of itself, by its fixed name
    machine = template()["Resources"]["CdcsyncBackfill"]["Properties"]
    assert statements["RunMapChildExecutions"]["Resource"]["Fn::Sub"].endswith(
        f":stateMachine:{machine['Name']}"
    )


@pytest.mark.parametrize(
    ("function", "handler"),
    [
        ("CdcsyncExportCheckFunction", "cdcsync.aws_lambda.export_check_handler"),
        ("CdcsyncExportFunction", "cdcsync.aws_lambda.export_handler"),
        ("CdcsyncVerifyFunction", "cdcsync.aws_lambda.verify_handler"),
    ],
)
def test_backfill_functions_run_contract_handlers_that_exist(function: str, handler: str) -> None:
    # GIVEN the function definition
    properties = template()["Resources"][function]["Properties"]
    # THEN it runs the named handler, which cdcsync.aws_lambda provides, on Python 3.12 arm64
    assert properties["Handler"] == handler
    module, _, name = handler.rpartition(".")
    assert callable(getattr(importlib.import_module(module), name))
    assert (properties["Runtime"], properties["Architectures"]) == ("python3.12", ["arm64"])
    assert properties["Role"] == {"Fn::GetAtt": ["CdcsyncBackfillRole", "Arn"]}
    # AND it stays within Lambda's 15 minutes
    assert properties["Timeout"] <= 900


def test_stream_handler_cold_start_imports_no_backfill_handler() -> None:
    # WHEN a fresh interpreter resolves the stream handler as Lambda does
    code = (
        "import sys, cdcsync.aws_lambda as m; m.handler; "
        "print('cdcsync.entrypoints.export_lambda' in sys.modules, 'cdcsync.verify.run' in sys.modules)"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    # THEN the backfill handlers' module (and verify) are not imported
    assert found.stdout.split() == ["False", "False"]
