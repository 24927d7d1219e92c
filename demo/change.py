"""Change the demo's Users table while `make demo` runs, and watch the index follow.

.venv/bin/python -m demo.change put 42 ada ada@example.com
.venv/bin/python -m demo.change update 42 --email ada@lovelace.dev
.venv/bin/python -m demo.change ban 42
.venv/bin/python -m demo.change delete 42
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import boto3

STATE = Path(".demo/state.json")


def client() -> object:
    if not STATE.exists():
        raise SystemExit("no demo running here (start it with `make demo`)")
    state = json.loads(STATE.read_text())
    return boto3.client(
        "dynamodb",
        endpoint_url=state["dynamodb"],
        region_name="us-east-1",
        aws_access_key_id="demo",
        aws_secret_access_key="demo",  # noqa: S106 - moto's throwaway credentials
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["put", "update", "ban", "delete"])
    parser.add_argument("user_id", type=int)
    parser.add_argument("username", nargs="?")
    parser.add_argument("email", nargs="?")
    parser.add_argument("--email", dest="new_email")
    args = parser.parse_args()
    dynamodb = client()
    key = {"UserId": {"N": str(args.user_id)}}
    if args.action == "put":
        item = {**key, "Username": {"S": args.username or f"user{args.user_id}"}}
        item["Email"] = {"S": args.email or f"user{args.user_id}@example.com"}
        dynamodb.put_item(TableName="Users", Item=item)  # type: ignore[attr-defined]
    elif args.action == "update":
        dynamodb.update_item(  # type: ignore[attr-defined]
            TableName="Users",
            Key=key,
            UpdateExpression="SET Email = :e",
            ExpressionAttributeValues={":e": {"S": args.new_email or "changed@example.com"}},
        )
    elif args.action == "ban":
        dynamodb.update_item(  # type: ignore[attr-defined]
            TableName="Users",
            Key=key,
            UpdateExpression="SET #s = :b",
            ExpressionAttributeNames={"#s": "Status"},
            ExpressionAttributeValues={":b": {"S": "banned"}},
        )
    else:
        dynamodb.delete_item(TableName="Users", Key=key)  # type: ignore[attr-defined]
    print(f"{args.action} {args.user_id}: done (pid {os.getpid()})")


if __name__ == "__main__":
    main()
