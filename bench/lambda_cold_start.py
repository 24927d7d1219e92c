"""Cold start of a Lambda deployment package: import + first event, in fresh interpreters.

    .venv/bin/python bench/lambda_cold_start.py PACKAGE_DIR [--runtime DIR] [--python python3.12] [--runs 9]

PACKAGE_DIR is an unzipped package (``build/lambda`` of ``make lambda-package``, or the same built
for this machine's architecture: ``make lambda-package LAMBDA_PLATFORM=manylinux2014_x86_64``, since
an arm64 package cannot run on x86). ``--runtime DIR`` stands for what the Lambda runtime provides
on ``sys.path`` after the package (its boto3 and botocore), as ``/var/runtime`` does.

Each run is a fresh interpreter (``-s``: no user site-packages) with the package first on
``sys.path``, as Lambda puts ``LAMBDA_TASK_ROOT`` there, and the settings of a Lambda function
syncing the Users mapping into a local osmem-server. It times ``import cdcsync.aws_lambda`` and
the first ``handler(event)`` (one INSERT: settings, mappings, clients, the bulk request), after
one unmeasured run that writes the bytecode a deployed package ships. Reported: the median and
range of each over ``--runs``, the package size, and the top-level modules the function loaded
that the package holds, and those it holds but never loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]  # tests.support is not installed: run from a checkout

from tests.support.servers import osmem_server  # noqa: E402

EVENT = REPO / "tests" / "fixtures" / "events" / "insert.json"
CHILD = """
import json, sys, time
event = {"Records": [json.load(open(sys.argv[1]))]}
started = time.perf_counter()
import cdcsync.aws_lambda
imported = time.perf_counter()
result = cdcsync.aws_lambda.handler(event, None)
done = time.perf_counter()
assert result == {"batchItemFailures": []}, result
print(json.dumps({"import": imported - started, "first_event": done - imported,
                  "modules": sorted({name.split(".")[0] for name in sys.modules})}))
"""


def package_names(package: Path) -> set[str]:
    """Top-level importable names in the package folder."""
    names = set()
    for entry in package.iterdir():
        if entry.name.endswith((".dist-info", ".data")) or entry.name in {"bin", "__pycache__", "mappings"}:
            continue
        names.add(entry.name.split(".", 1)[0] if entry.is_file() else entry.name)
    return names


def size_mb(package: Path) -> float:
    return sum(f.stat().st_size for f in package.rglob("*") if f.is_file()) / 1e6


def run_once(python: str, path: list[Path], env: dict[str, str]) -> dict[str, object]:
    command = [python, "-s", "-c", CHILD, str(EVENT)]
    child_env = {**env, "PYTHONPATH": os.pathsep.join(str(p) for p in path)}
    done = subprocess.run(command, env=child_env, capture_output=True, text=True, check=False)  # noqa: S603 - fixed code
    if done.returncode != 0:
        raise SystemExit(f"the function failed:\n{done.stderr[-3000:]}")
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", type=Path)
    parser.add_argument("--runtime", type=Path, help="what the Lambda runtime adds to sys.path (its boto3)")
    parser.add_argument("--python", default="python3.12")
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    package = args.package.resolve()
    path = [package] + ([args.runtime.resolve()] if args.runtime else [])
    with osmem_server() as opensearch_url, tempfile.TemporaryDirectory() as tmp:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "LAMBDA_TASK_ROOT": str(package),
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "CDCSYNC_MAPPINGS": str(package / "mappings" / "users.yaml"),
            "CDCSYNC_OPENSEARCH_URL": opensearch_url,
            "CDCSYNC_DLQ": f"file://{tmp}/dlq.jsonl",
            "CDCSYNC_LOG_LEVEL": "WARNING",
        }
        run_once(args.python, path, env)  # bytecode written, files cached: as a deployed package
        runs = [run_once(args.python, path, env) for _ in range(args.runs)]
    loaded = set(runs[0]["modules"])  # type: ignore[arg-type]
    held = package_names(package)
    for key in ("import", "first_event"):
        values = [float(run[key]) * 1000 for run in runs]  # type: ignore[arg-type]
        middle = statistics.median(values)
        print(f"{key:<12} median {middle:6.0f} ms  (min {min(values):.0f}, max {max(values):.0f})")
    print(f"package      {size_mb(package):6.1f} MB unzipped")
    print(f"loaded from the package: {' '.join(sorted(held & loaded))}")
    print(f"held, never loaded:      {' '.join(sorted(held - loaded)) or '-'}")
    if args.runtime:
        print(f"loaded from the runtime: {' '.join(sorted(package_names(args.runtime.resolve()) & loaded))}")


if __name__ == "__main__":
    main()
