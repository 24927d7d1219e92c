"""The Lambda templates' dead-letter stores: a customer-managed key, TLS only, read by the operator only.

Dead letters hold item keys and, unless ``CDCSYNC_DLQ_CONTENT=keys``, item values (issue 11, item 1).
Both ``template.yaml`` (SAM) and ``serverless.yml`` must keep the SQS queues and the S3 overflow bucket
encrypted with one customer-managed KMS key (a parameter, or one the stack creates), deny plain HTTP,
let only the operator role read and only the function and the operator role write, block public
access, and expire dead letters after one retention parameter. What these policies do on AWS is not
checked here (no account): only that the templates say it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from cdcsync.settings import S3Target, load_settings
from tests.unit.deploy.test_manifests import DEPLOY, _cloudformation

QUEUES = ["CdcsyncDeadLetters", "CdcsyncStreamFailures"]
BUCKET = "CdcsyncDeadLetterBucket"
OPERATOR = {"Ref": "OperatorRoleArn"}
KEY = {
    "Fn::If": [
        "CreateDeadLetterKey",
        {"Fn::GetAtt": ["CdcsyncDeadLetterKey", "Arn"]},
        {"Ref": "DeadLetterKmsKeyArn"},
    ]
}
USE_KEY = ["kms:Decrypt", "kms:GenerateDataKey"]


@dataclass(frozen=True, slots=True)
class Stack:
    """One template's CloudFormation sections, the function's role and its environment."""

    name: str
    document: dict[str, Any]
    sections: dict[str, Any]
    role: dict[str, Any]
    environment: dict[str, Any]
    # Every role whose functions write dead letters: the stream function's, and in template.yaml the
    # backfill state machine's functions' (issue 15)
    writers: tuple[dict[str, Any], ...] = ()

    @property
    def resources(self) -> dict[str, Any]:
        return dict(self.sections["Resources"])


def _sam() -> Stack:
    document = _cloudformation(DEPLOY / "lambda" / "template.yaml")
    function = document["Resources"]["CdcsyncFunction"]["Properties"]
    role = {"Fn::GetAtt": ["CdcsyncRole", "Arn"]}
    backfill = {"Fn::GetAtt": ["CdcsyncBackfillRole", "Arn"]}
    return Stack("sam", document, document, role, function["Environment"]["Variables"], (role, backfill))


def _serverless() -> Stack:
    document = _cloudformation(DEPLOY / "lambda" / "serverless.yml")
    role = {"Fn::GetAtt": ["IamRoleLambdaExecution", "Arn"]}
    environment = document["provider"]["environment"]
    return Stack("serverless", document, document["resources"], role, environment, (role,))


STACKS = [pytest.param(_sam, id="sam"), pytest.param(_serverless, id="serverless")]


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return sorted([action] if isinstance(action, str) else action)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _by_sid(policy: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {statement["Sid"]: statement for statement in policy["Statement"]}


def _bucket_objects(stack: Stack, suffix: str) -> dict[str, Any]:
    """``<bucket ARN><suffix>`` as each template spells it."""
    if stack.name == "sam":
        return {"Fn::Sub": "${" + BUCKET + ".Arn}" + suffix}
    return {"Fn::Join": ["", [{"Fn::GetAtt": [BUCKET, "Arn"]}, suffix]]}


@pytest.mark.parametrize("load", STACKS)
def test_lambda_dead_letter_stores_encrypted_with_customer_managed_key(load: Any) -> None:
    # GIVEN the template's dead-letter queues, overflow bucket and key
    stack: Stack = load()
    resources = stack.resources
    assert sorted(n for n, r in resources.items() if r["Type"] == "AWS::SQS::Queue") == QUEUES
    # THEN every queue uses the customer-managed key, not SQS's own
    for name in QUEUES:
        properties = resources[name]["Properties"]
        assert properties["KmsMasterKeyId"] == KEY, name
        assert "SqsManagedSseEnabled" not in properties, name
    # AND so does the bucket (SSE-KMS with an S3 bucket key)
    (rule,) = resources[BUCKET]["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule == {
        "ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": KEY},
        "BucketKeyEnabled": True,
    }
    # AND the key is the parameter, or, when it is empty, one the stack creates with rotation on
    assert stack.sections["Conditions"]["CreateDeadLetterKey"] == {
        "Fn::Equals": [{"Ref": "DeadLetterKmsKeyArn"}, ""]
    }
    assert stack.sections["Parameters"]["DeadLetterKmsKeyArn"]["Type"] == "String"
    key = resources["CdcsyncDeadLetterKey"]
    assert key["Condition"] == "CreateDeadLetterKey"
    assert key["Properties"]["EnableKeyRotation"] is True
    # AND only the function role and the operator role may use the created key, and only through SQS and S3
    statements = _by_sid(key["Properties"]["KeyPolicy"])
    assert set(statements) == {"Administer", "UseThroughSqsAndS3"}
    use = statements["UseThroughSqsAndS3"]
    assert use["Principal"] == {"AWS": [*stack.writers, OPERATOR]}
    assert _actions(use) == USE_KEY
    services = use["Condition"]["StringEquals"]["kms:ViaService"]
    spelled = [s if isinstance(s, str) else s["Fn::Sub"] for s in services]
    assert [s.split(".")[0] for s in spelled] == ["sqs", "s3"]
    assert all(
        s.split(".", 1)[1] in {"${AWS::Region}.amazonaws.com", "${aws:region}.amazonaws.com"} for s in spelled
    )
    # AND the account administers the key without being able to use it
    administer = _actions(statements["Administer"])
    assert not {"kms:*", "kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:ReEncrypt*"} & set(
        administer
    )
    assert "kms:PutKeyPolicy" not in administer  # covered by kms:Put*, listed as a pattern
    assert "kms:Put*" in administer


@pytest.mark.parametrize("load", STACKS)
def test_lambda_dead_letter_queue_policy_admits_tls_function_and_operator_only(load: Any) -> None:
    # GIVEN the queue policy
    stack: Stack = load()
    resources = stack.resources
    (policy,) = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::SQS::QueuePolicy"]
    assert policy["Queues"] == [{"Ref": name} for name in QUEUES]
    statements = _by_sid(policy["PolicyDocument"])
    arns = [{"Fn::GetAtt": [name, "Arn"]} for name in QUEUES]
    # THEN every statement is a Deny to everyone, on both queues
    assert set(statements) == {"TlsOnly", "ReadOnlyByOperator", "SendOnlyByFunctionOrOperator"}
    for sid, statement in statements.items():
        assert (statement["Effect"], statement["Principal"], statement["Resource"]) == ("Deny", "*", arns), (
            sid
        )
    # AND plain HTTP is refused for every action
    assert statements["TlsOnly"]["Action"] == "sqs:*"
    assert statements["TlsOnly"]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    # AND only the operator role reads, deletes or purges
    read = statements["ReadOnlyByOperator"]
    assert _actions(read) == [
        "sqs:ChangeMessageVisibility",
        "sqs:DeleteMessage",
        "sqs:PurgeQueue",
        "sqs:ReceiveMessage",
    ]
    assert read["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": OPERATOR}}
    # AND only the function and the operator role send (a forged dead letter would be redriven)
    send = statements["SendOnlyByFunctionOrOperator"]
    assert _actions(send) == ["sqs:SendMessage"]
    assert send["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": [*stack.writers, OPERATOR]}}


@pytest.mark.parametrize("load", STACKS)
def test_lambda_dead_letter_bucket_private_tls_only_and_read_by_operator_only(load: Any) -> None:
    # GIVEN the overflow bucket and its policy
    stack: Stack = load()
    resources = stack.resources
    bucket = resources[BUCKET]["Properties"]
    # THEN public access is blocked four ways and ACLs are off
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    (policy,) = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::S3::BucketPolicy" and r["Properties"]["Bucket"] == {"Ref": BUCKET}
    ]
    statements = _by_sid(policy["PolicyDocument"])
    everything = [{"Fn::GetAtt": [BUCKET, "Arn"]}, _bucket_objects(stack, "/*")]
    assert set(statements) == {"TlsOnly", "ReadOnlyByOperator", "WriteOnlyByFunctionOrOperator"}
    assert all(s["Effect"] == "Deny" and s["Principal"] == "*" for s in statements.values())
    # AND plain HTTP is refused for every action on the bucket and its objects
    assert (statements["TlsOnly"]["Action"], statements["TlsOnly"]["Resource"]) == ("s3:*", everything)
    assert statements["TlsOnly"]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    # AND only the operator role lists, reads or deletes
    read = statements["ReadOnlyByOperator"]
    assert read["Resource"] == everything
    assert {"s3:GetObject", "s3:DeleteObject", "s3:ListBucket"} <= set(_actions(read))
    assert read["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": OPERATOR}}
    # AND only the function and the operator role write
    write = statements["WriteOnlyByFunctionOrOperator"]
    assert (_actions(write), write["Resource"]) == (["s3:PutObject"], _bucket_objects(stack, "/*"))
    assert write["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": [*stack.writers, OPERATOR]}}


@pytest.mark.parametrize("load", STACKS)
def test_lambda_dead_letter_retention_one_parameter_for_queues_and_bucket(load: Any) -> None:
    # GIVEN the retention parameter, in days
    stack: Stack = load()
    parameter = stack.sections["Parameters"]["DeadLetterRetentionDays"]
    assert (parameter["Type"], parameter["MinValue"], parameter["MaxValue"]) == ("Number", 1, 14)
    # THEN the queues keep messages that many days (SQS counts seconds; CloudFormation cannot multiply)
    seconds = stack.sections["Mappings"]["RetentionSeconds"]
    assert seconds == {str(days): {"Seconds": days * 86_400} for days in range(1, 15)}
    retention = {"Fn::FindInMap": ["RetentionSeconds", {"Ref": "DeadLetterRetentionDays"}, "Seconds"]}
    for name in QUEUES:
        assert stack.resources[name]["Properties"]["MessageRetentionPeriod"] == retention, name
    # AND the bucket expires objects after the same days
    (rule,) = stack.resources[BUCKET]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert rule["ExpirationInDays"] == {"Ref": "DeadLetterRetentionDays"}
    assert rule["Status"] == "Enabled"


@pytest.mark.parametrize("load", STACKS)
def test_lambda_operator_role_is_a_required_role_arn_parameter(load: Any) -> None:
    stack: Stack = load()
    parameter = stack.sections["Parameters"]["OperatorRoleArn"]
    assert parameter["AllowedPattern"] == "arn:aws[a-z-]*:iam::[0-9]{12}:role/.+"
    if stack.name == "sam":
        assert "Default" not in parameter
    else:  # the framework's required param, passed on as the default
        assert parameter["Default"] == "${param:operatorRoleArn}"
        assert "operatorRoleArn" not in stack.document["params"]["default"]


@pytest.mark.parametrize("load", STACKS)
def test_lambda_function_writes_dead_letters_and_overflow_only(load: Any) -> None:
    # GIVEN the policy the function's role gets for dead letters
    stack: Stack = load()
    writes = stack.resources["CdcsyncDeadLetterWrites"]
    assert writes["Type"] == "AWS::IAM::RolePolicy"
    assert writes["Properties"]["RoleName"] == {"Ref": stack.role["Fn::GetAtt"][0]}
    statements = writes["Properties"]["PolicyDocument"]["Statement"]
    plain = [s for s in statements if "Fn::If" not in s]
    granted = {action: _as_list(s["Resource"]) for s in plain for action in _actions(s)}
    # THEN it sends to the queues (serverless: the framework grants the on-failure queue) and puts overflow
    sent = QUEUES if stack.name == "sam" else QUEUES[:1]
    assert granted == {
        "sqs:SendMessage": [{"Fn::GetAtt": [name, "Arn"]} for name in sent],
        "s3:PutObject": [_bucket_objects(stack, "/overflow/*")],
    }
    # AND a key of your own is granted through IAM, only when it is not the stack's own
    (conditional,) = [s["Fn::If"] for s in statements if "Fn::If" in s]
    assert conditional[:2] == ["CreateDeadLetterKey", {"Ref": "AWS::NoValue"}]
    assert (_actions(conditional[2]), conditional[2]["Resource"]) == (USE_KEY, {"Ref": "DeadLetterKmsKeyArn"})
    # AND the function starts only once the policy is in place
    if stack.name == "sam":
        assert stack.resources["CdcsyncFunction"]["DependsOn"] == "CdcsyncDeadLetterWrites"
    else:
        extended = stack.sections["extensions"]["OnUserObjectChangeLambdaFunction"]["DependsOn"]
        assert set(extended) == {"CdcsyncDeadLetterWrites", "CdcsyncStreamFailures"}
    # AND CDCSYNC_DLQ_OVERFLOW names the bucket's overflow/ prefix, which settings accept
    overflow = stack.environment["CDCSYNC_DLQ_OVERFLOW"]
    spelled = {"Fn::Sub": "s3://${" + BUCKET + "}/overflow"}
    if stack.name == "serverless":
        spelled = {"Fn::Join": ["", ["s3://", {"Ref": BUCKET}, "/overflow"]]}
    assert overflow == spelled
    target = load_settings(dlq="sqs://q", dlq_overflow="s3://bucket/overflow").dlq_overflow_target
    assert target == S3Target("bucket", "overflow")


def _references(node: Any) -> set[str]:
    """Logical IDs a CloudFormation fragment refers to (Ref, GetAtt, ${X} in Sub)."""
    if isinstance(node, dict):
        found = set()
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(value[0])
            found |= _references(value)
        return found
    if isinstance(node, list):
        return set().union(*map(_references, node)) if node else set()
    return set()


def test_serverless_role_names_no_dead_letter_resource() -> None:
    # GIVEN the framework's role statements and the on-failure destination it adds to them
    document = _cloudformation(DEPLOY / "lambda" / "serverless.yml")
    statements = document["provider"]["iam"]["role"]["statements"]
    (event,) = document["functions"]["onUserObjectChange"]["events"]
    destination = event["stream"]["destinations"]["onFailure"]["arn"]
    # THEN the role refers to no resource of the file: the key names the role, and the queues and
    # bucket name the key, so any such reference would be a dependency cycle CloudFormation refuses
    assert _references(statements) == set()
    # AND the on-failure queue is named by an ARN built from its fixed name
    queue_name = document["resources"]["Resources"]["CdcsyncStreamFailures"]["Properties"]["QueueName"]
    assert queue_name == "${self:service}-${sls:stage}-stream-failures"
    assert destination == f"arn:aws:sqs:${{aws:region}}:${{aws:accountId}}:{queue_name}"


def test_sam_role_names_no_dead_letter_resource() -> None:
    # GIVEN the function's role (its policies inline)
    role = _sam().resources["CdcsyncRole"]
    # THEN it refers to no key, queue or bucket (the key's policy names the role: a cycle otherwise)
    assert not _references(role) & {"CdcsyncDeadLetterKey", BUCKET, *QUEUES}


def test_sam_backfill_functions_write_dead_letters_as_the_stream_function_does() -> None:
    # GIVEN the dead-letter policies of the stream function's role and of the backfill functions' role
    resources = _sam().resources
    stream, backfill = resources["CdcsyncDeadLetterWrites"], resources["CdcsyncBackfillDeadLetterWrites"]
    # THEN they grant the same statements, each to its own role, and the backfill role itself names no
    # dead-letter resource (the key's policy names the role: a cycle otherwise)
    assert backfill["Properties"]["PolicyDocument"] == stream["Properties"]["PolicyDocument"]
    assert backfill["Properties"]["RoleName"] == {"Ref": "CdcsyncBackfillRole"}
    assert not _references(resources["CdcsyncBackfillRole"]) & {"CdcsyncDeadLetterKey", BUCKET, *QUEUES}
    # AND every backfill function waits for it and uses the stream function's dead-letter settings
    stream_env = resources["CdcsyncFunction"]["Properties"]["Environment"]["Variables"]
    for name in ("CdcsyncExportCheckFunction", "CdcsyncExportFunction", "CdcsyncVerifyFunction"):
        assert resources[name]["DependsOn"] == "CdcsyncBackfillDeadLetterWrites", name
        env = resources[name]["Properties"]["Environment"]["Variables"]
        assert (env["CDCSYNC_DLQ"], env["CDCSYNC_DLQ_OVERFLOW"]) == (
            stream_env["CDCSYNC_DLQ"],
            stream_env["CDCSYNC_DLQ_OVERFLOW"],
        ), name
