"""deploy/lambda/omit.py: leaving distributions out of a `pip install --target` folder (no sockets)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[3]
OMIT = ROOT / "deploy" / "lambda" / "omit.py"


def _install(folder: Path, dist: str, files: dict[str, str]) -> None:
    """A distribution as pip --target leaves it: its files and a dist-info whose RECORD lists them."""
    info = folder / f"{dist}-1.0.dist-info"
    info.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    record = [f"{name},sha256=x,{len(text)}" for name, text in files.items()]
    (info / "RECORD").write_text("\n".join([*record, f"{info.name}/RECORD,,", "../../bin/tool,,"]) + "\n")


def _omit(folder: Path, *names: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(OMIT), str(folder), *names], capture_output=True, text=True, check=False
    )


def test_lambda_omit_named_distribution_removes_its_files_only(tmp_path: Path) -> None:
    # GIVEN two distributions sharing a namespace folder (as protobuf and googleapis share google/)
    _install(tmp_path, "protobuf", {"google/protobuf/__init__.py": "x" * 1000, "google/protobuf/a.py": "a"})
    _install(tmp_path, "other_dist", {"google/other/__init__.py": "", "other.py": ""})
    # WHEN one is left out, named as pip spells it
    done = _omit(tmp_path, "Protobuf")
    # THEN its files, dist-info and emptied folders are gone; the other's stay
    assert done.returncode == 0, done.stderr
    assert done.stdout == "left out Protobuf (0.0 MB)\n"
    remaining = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert remaining == ["google/other/__init__.py", "other.py", "other_dist-1.0.dist-info/RECORD"]


def test_lambda_omit_name_not_installed_fails_naming_it(tmp_path: Path) -> None:
    # GIVEN a folder without grpcio (a dependency that went away)
    _install(tmp_path, "protobuf", {"google/protobuf/__init__.py": ""})
    # WHEN it is to be left out THEN the build stops, saying the list must change
    done = _omit(tmp_path, "grpcio")
    assert done.returncode == 1
    assert done.stderr == f"omit.py: grpcio is not installed in {tmp_path} (found 0); fix LAMBDA_OMIT\n"
