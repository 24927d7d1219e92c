"""Remove installed distributions from a ``pip install --target`` folder: ``omit.py DIR NAME...``.

``make lambda-package`` installs cdcsync with every dependency, then leaves out what the function
never imports or the Lambda runtime provides. pip cannot uninstall from a ``--target`` folder, so
this removes each distribution's files as its ``*.dist-info/RECORD`` lists them (nothing outside
DIR), then the folders left empty. A name not installed there is an error: the list in the
Makefile must stay true when a dependency changes.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path


def normalized(name: str) -> str:
    """``opensearch-protobufs`` -> ``opensearch_protobufs``, as dist-info folders spell it."""
    return re.sub(r"[-_.]+", "_", name).lower()


def omit(folder: Path, name: str) -> int:
    """Remove one distribution; the bytes freed."""
    found = [p for p in folder.glob("*.dist-info") if normalized(p.name.split("-", 1)[0]) == normalized(name)]
    if len(found) != 1:
        raise SystemExit(
            f"omit.py: {name} is not installed in {folder} (found {len(found)}); fix LAMBDA_OMIT"
        )
    root = folder.resolve()
    freed = 0
    parents: set[Path] = set()
    for line in (found[0] / "RECORD").read_text().splitlines():
        path = (folder / line.split(",", 1)[0]).resolve()
        if root not in path.parents or not path.is_file():
            continue  # scripts installed beside the folder, or already gone
        freed += path.stat().st_size
        path.unlink()
        parents.update(p for p in path.parents if root in p.parents)
    shutil.rmtree(found[0], ignore_errors=True)
    for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        pycache = parent / "__pycache__"
        if pycache.is_dir() and not any(p.suffix != ".pyc" for p in pycache.iterdir()):
            shutil.rmtree(pycache)
        if parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
    return freed


def main(argv: list[str]) -> None:
    folder, names = Path(argv[0]), argv[1:]
    for name in names:
        print(f"left out {name} ({omit(folder, name) / 1e6:.1f} MB)")


if __name__ == "__main__":
    main(sys.argv[1:])
