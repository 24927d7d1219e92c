"""Supply chain (issue 11, item 7): one hash-locked resolution, installed the same everywhere.

``requirements.lock`` (runtime) and ``requirements-build.lock`` (the build backend) come from
``make lock``; the Dockerfile and ``make lambda-package`` install exactly them with
``pip --require-hashes``; the final image holds no installer; the base image is pinned by digest or
carries the UNPINNED marker, never an invented digest. Not checked here (no network, no Docker
engine): that every hash matches PyPI's files and that the image builds. ``make lambda-package``
does the former for the aarch64 wheels.
"""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.unit.deploy.test_manifests import ROOT

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+) \\$")
_HASH = re.compile(r"^    --hash=sha256:[0-9a-f]{64}( \\)?$")
# sha256 of zero bytes: what hashing an empty answer gives, never an image's digest.
_EMPTY_DIGEST = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def _locked(name: str) -> dict[str, tuple[Version, int]]:
    """``{canonical name: (version, number of hashes)}`` of a lock file."""
    pins: dict[str, tuple[Version, int]] = {}
    current = ""
    for line in (ROOT / name).read_text().splitlines():
        if match := _PIN.match(line):
            current = canonicalize_name(match[1])
            assert current not in pins, line
            pins[current] = (Version(match[2]), 0)
        elif line.startswith("    --hash="):
            assert _HASH.match(line), line
            version, hashes = pins[current]
            pins[current] = (version, hashes + 1)
        else:
            assert not line or line.lstrip().startswith("#"), f"{name}: unexpected line {line!r}"
    return pins


def _pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_requirements_lock_pins_every_runtime_dependency_with_hashes() -> None:
    # GIVEN the runtime dependencies of pyproject.toml and the lock file
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    locked = _locked("requirements.lock")
    # THEN each is pinned to a version its specifier allows, and every pin carries hashes
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        version, _ = locked[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(version, prereleases=True), (spec, version)
    assert all(hashes > 0 for _, hashes in locked.values()), locked
    # AND the binary packages have several files hashed (one per platform, aarch64 included)
    for binary in ("pydantic-core", "orjson", "pyyaml"):
        assert locked[binary][1] > 10, (binary, locked[binary])
    # AND the file says how to refresh it
    assert "#    make lock" in (ROOT / "requirements.lock").read_text()


def test_requirements_build_lock_pins_the_build_backend() -> None:
    # GIVEN the build backend pyproject.toml names
    build = _pyproject()["build-system"]
    assert isinstance(build, dict)
    locked = _locked("requirements-build.lock")
    # THEN each is pinned with hashes, within its specifier
    for spec in build["requires"]:
        requirement = Requirement(spec)
        version, hashes = locked[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(version), (spec, version)
        assert hashes > 0


def _stages() -> list[list[str]]:
    """The Dockerfile's instructions per stage, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    stages: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("FROM "):
            stages.append([])
        if stages and line and not line.startswith("#"):
            stages[-1].append(" ".join(line.split()))
    return stages


def test_dockerfile_base_image_pinned_by_digest_or_marked_unpinned() -> None:
    # GIVEN the FROM lines
    text = (ROOT / "Dockerfile").read_text()
    images = [stage[0].split()[1] for stage in _stages()]
    # THEN both stages use the same base image
    assert len(images) == 2
    assert len(set(images)) == 1, images
    image = images[0]
    match = re.fullmatch(r"python:3\.12-slim-bookworm(@sha256:([0-9a-f]{64}))?", image)
    assert match, image
    if match[2]:
        # AND a digest is a real one (not the hash of an empty answer) and the marker is gone
        assert match[2] != _EMPTY_DIGEST
        assert "UNPINNED" not in text
    else:
        # AND without one, the file says so and how to pin it
        assert "# UNPINNED: run `make lock-base-image`" in text


def test_dockerfile_installs_the_locks_and_ships_no_installer() -> None:
    build, final = _stages()
    build_runs = " && ".join(line for line in build if line.startswith("RUN "))
    # THEN the build stage installs exactly the locked files, hash-checked, into a venv without pip
    assert "pip install --require-hashes --no-deps -r requirements-build.lock" in build_runs
    assert "python -m venv --without-pip /opt/venv" in build_runs
    assert (
        "pip --python /opt/venv/bin/python install --require-hashes --no-deps --no-compile "
        "-r requirements.lock" in build_runs
    )
    assert "--no-build-isolation" in build_runs
    # AND the final stage takes only that venv, and removes pip and ensurepip's wheels
    copies = [line for line in final if line.startswith("COPY --from")]
    assert copies == ["COPY --from=build /opt/venv /opt/venv"]
    final_runs = " ".join(line for line in final if line.startswith("RUN "))
    assert "python -m pip uninstall --yes --quiet setuptools wheel pip" in final_runs
    assert "rm -rf /usr/local/lib/python3.12/ensurepip/_bundled" in final_runs
    assert not re.search(r"pip install", final_runs)


def test_makefile_lambda_package_installs_the_lock_for_arm64() -> None:
    # GIVEN the lambda-package recipe
    makefile = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    recipe = makefile.split("\nlambda-package:", 1)[1].split("\n\n", 1)[0]
    recipe = " ".join(recipe.split())
    # THEN the dependencies are the lock's, hash-checked, as aarch64 wheels; the backend is locked too
    assert re.search(
        r"--platform (manylinux2014_aarch64|\$\(LAMBDA_PLATFORM\)) --implementation cp "
        r"--python-version 3\.12 --only-binary=:all: --require-hashes --no-deps -r requirements\.lock",
        recipe,
    ), recipe
    assert "--require-hashes --no-deps -r requirements-build.lock" in recipe
    assert "--no-build-isolation" in recipe
    # AND `make lock` writes both lock files
    lock = makefile.split("\nlock:", 1)[1].split("\n\n", 1)[0]
    assert "-o requirements.lock" in lock
    assert "-o requirements-build.lock" in lock
    assert "--generate-hashes" in makefile
