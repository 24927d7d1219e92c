# The one command surface: people and CI run the same targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint lint-deploy checkov typecheck unit integration validate bench bench-lambda bench-rebuild bench-capacity demo lambda-package \
	lock lock-base-image clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check cdcsync tests bench demo deploy
	$(BIN)/ruff format --check cdcsync tests bench demo deploy
	$(BIN)/hadolint Dockerfile

typecheck: $(STAMP)
	$(BIN)/mypy cdcsync

validate: $(STAMP)
	$(BIN)/cdcsync validate mappings

# kubernetes-validate checks the manifests against the schemas it ships (offline), for the oldest
# Kubernetes they are written for; it has none for CRDs (ServiceMonitor, PrometheusRule) and says so.
KUBERNETES_VERSION := 1.30.0
KUBERNETES_MANIFESTS := $(filter-out %/kustomization.yaml,$(wildcard deploy/kubernetes/*.yaml))

# Deploy files that can be linted here. checkov is a separate target: it pins old boto3 and
# packaging, so it lives in its own venv and does not slow `make test` down.
lint-deploy: $(STAMP)
	$(BIN)/cfn-lint deploy/lambda/template.yaml
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec deploy/compose/compose.yaml
	$(BIN)/yamllint -d "{extends: relaxed, rules: {line-length: {max: 130}}}" deploy
	$(BIN)/kubernetes-validate --strict --quiet -k $(KUBERNETES_VERSION) $(KUBERNETES_MANIFESTS)

.venv-checkov/bin/checkov:
	$(PYTHON) -m venv .venv-checkov && .venv-checkov/bin/pip install --quiet 'checkov==3.3.30'

checkov: .venv-checkov/bin/checkov
	.venv-checkov/bin/checkov --quiet --compact --skip-download --framework cloudformation -f deploy/lambda/template.yaml
	.venv-checkov/bin/checkov --quiet --compact --skip-download --framework serverless -d deploy/lambda
	.venv-checkov/bin/checkov --quiet --compact --skip-download --framework kubernetes -d deploy/kubernetes

# pytest exits 5 when it collected no test; that is a failure here, never a pass.
test: lint lint-deploy typecheck validate
	$(BIN)/pytest

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: $(STAMP)
	$(BIN)/pytest tests/integration

bench: $(STAMP)
	$(BIN)/python bench/transform.py

bench-lambda: $(STAMP)
	$(BIN)/python bench/lambda_e2e.py

# cdcsync beside naive consumers on a stand-in DynamoDB/OpenSearch that is never the bound (bench/rig/):
# worker records/s at 1, 8, 64 shards, backfill items/s, Lambda CPU per record, latency, convergence.
# CAPACITY_ARGS=--quick: under 3 minutes; --json: the result as JSON.
bench-capacity: $(STAMP)
	$(BIN)/python bench/capacity.py $(CAPACITY_ARGS)

# cdcsync rebuild of 10,000 items under a live Lambda writer: wall time, dual-write overhead ratio.
bench-rebuild: $(STAMP)
	$(BIN)/python bench/rebuild.py

# The Lambda deployment package for arm64 (Python 3.12), with the mapping files. Dependencies are
# exactly requirements.lock (hash-checked wheels); the cdcsync wheel is built with the hash-checked
# build backend of requirements-build.lock, in a throwaway venv. Left out:
# - what the function never imports: opensearch-py 3 requires opensearch-protobufs, and so grpcio
#   and protobuf (22 MB), for a gRPC transport opensearchpy never imports; prometheus-client (the
#   worker's /metrics; Lambda reports through EMF);
# - boto3, botocore, s3transfer (35 MB): the Lambda Python runtime provides them, kept up to date
#   by AWS, and the function uses only long-stable calls (GetItem, BatchGetItem, SQS SendMessage,
#   S3 PutObject, credentials for SigV4). LAMBDA_BOTO3=bundle pins the venv's versions instead.
# LAMBDA_PLATFORM=manylinux2014_x86_64 builds the same for an x86 function (or to run it here:
# bench/lambda_cold_start.py).
LAMBDA_PLATFORM ?= manylinux2014_aarch64
LAMBDA_BOTO3 ?= runtime
LAMBDA_OMIT := grpcio protobuf opensearch-protobufs prometheus-client \
	$(if $(filter bundle,$(LAMBDA_BOTO3)),,boto3 botocore s3transfer)
lambda-package: $(STAMP)
	rm -rf build/lambda build/tools build/cdcsync-lambda.zip dist && mkdir -p build/lambda
	$(PYTHON) -m venv build/tools && build/tools/bin/pip install -q --require-hashes --no-deps -r requirements-build.lock
	build/tools/bin/pip wheel -q --no-deps --no-build-isolation -w dist .
	$(BIN)/pip install -q --target build/lambda --platform $(LAMBDA_PLATFORM) --implementation cp \
		--python-version 3.12 --only-binary=:all: --require-hashes --no-deps -r requirements.lock && rm -rf build/lambda/bin
	$(BIN)/pip install -q --target build/lambda --no-deps dist/cdcsync-*.whl
	$(BIN)/python deploy/lambda/omit.py build/lambda $(LAMBDA_OMIT)
	cp -r mappings build/lambda/ && cd build/lambda && zip -qr ../cdcsync-lambda.zip .
	@du -sh build/lambda build/cdcsync-lambda.zip

# Supply chain: resolve the runtime dependencies (and the build backend) once, from PyPI, with the
# hash of every file of every pinned version (so the aarch64 Lambda wheels and the image's wheels are
# covered alike); the Dockerfile and lambda-package install exactly these with pip --require-hashes.
# Run after changing dependencies in pyproject.toml; it moves every pin to the newest allowed version.
LOCK_VENV := .venv-lock
UV := $(LOCK_VENV)/bin/uv
LOCK_FLAGS := --universal --python-version 3.12 --generate-hashes --upgrade --no-config --quiet \
	--custom-compile-command "make lock"
BASE_IMAGE := python:3.12-slim-bookworm

$(UV):
	$(PYTHON) -m venv $(LOCK_VENV) && $(LOCK_VENV)/bin/pip install --quiet 'uv==0.13.8'

lock: $(UV)
	$(UV) pip compile pyproject.toml $(LOCK_FLAGS) -o requirements.lock
	$(PYTHON) -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['build-system']['requires'], sep='\n')" \
		| $(UV) pip compile - $(LOCK_FLAGS) -o requirements-build.lock
	-$(MAKE) --no-print-directory lock-base-image

# Pin both FROM lines of the Dockerfile to the base image's multi-arch index digest, as the registry
# reports it (docker buildx or crane; never computed here, never typed in by hand).
lock-base-image:
	@digest=$$( (docker buildx imagetools inspect --format '{{json .Manifest.Digest}}' $(BASE_IMAGE) \
		|| crane digest $(BASE_IMAGE)) 2>/dev/null | tr -d '"' | grep -E '^sha256:[0-9a-f]{64}$$'); \
	if [ -z "$$digest" ]; then \
		echo "lock-base-image: could not resolve $(BASE_IMAGE) to a digest (no registry, or neither docker buildx" \
			"nor crane); the Dockerfile is left as it is. See docs/security.md, Supply chain." >&2; exit 1; fi; \
	sed -E -i "s#^FROM $(BASE_IMAGE)(@sha256:[0-9a-f]{64})?( AS build)?\$$#FROM $(BASE_IMAGE)@$$digest\2#; /^# UNPINNED:/d" Dockerfile; \
	echo "Dockerfile: FROM $(BASE_IMAGE)@$$digest"

# The product's main job on embedded local servers; DEMO_EXIT_AFTER=SECONDS stops it by itself.
demo: $(STAMP)
	$(BIN)/python -m demo.run

format: $(STAMP)
	$(BIN)/ruff format cdcsync tests bench demo deploy
	$(BIN)/ruff check --fix cdcsync tests bench demo deploy

clean:
	rm -rf $(VENV) .venv-checkov $(LOCK_VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis .demo build dist
