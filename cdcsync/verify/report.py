"""What one verify run found and repaired, and how it is told to the operator (escaped: ``printable``)."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from cdcsync.printable import printable
from cdcsync.verify.compare import Drift

EXAMPLES = 5  # ids shown per kind of drift
PROBLEMS_SHOWN = 10
KINDS = ("missing", "stale", "extra", "kept")
DRIFT_KINDS = ("missing", "stale", "extra")  # kept: item gone, the mapping keeps the document by its rules
EXIT_CLEAN, EXIT_DRIFT = 0, 1


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


@dataclass
class VerifyReport:
    """Counts, the first few ids of each kind, problems, and repair outcomes. Thread-safe."""

    table: str
    sample: int | None = None
    repairing: bool = False
    checked: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    examples: dict[str, list[str]] = field(default_factory=lambda: {kind: [] for kind in KINDS})
    problems: list[str] = field(default_factory=list)  # the first PROBLEMS_SHOWN
    problem_count: int = 0
    notes: list[str] = field(default_factory=list)
    repair: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("written", "deleted", "superseded", "gone"), 0)
    )
    repair_failures: int = 0
    unrepairable: int = 0  # extras without proof their item is gone: reported, never deleted
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, drifts: Iterable[Drift]) -> None:
        with self._lock:
            for drift in drifts:
                self.counts[drift.kind] += 1
                if len(self.examples[drift.kind]) < EXAMPLES:
                    self.examples[drift.kind].append(drift.describe())

    def problem(self, message: str) -> None:
        with self._lock:
            self.problem_count += 1
            if len(self.problems) < PROBLEMS_SHOWN:
                self.problems.append(message)

    def failed(self, message: str) -> None:
        """A repair that did not happen (rejected or failed write, unplannable item)."""
        with self._lock:
            self.repair_failures += 1
        self.problem(message)

    def note(self, message: str) -> None:
        with self._lock:
            self.notes.append(message)

    @property
    def drift(self) -> int:
        return sum(self.counts[kind] for kind in DRIFT_KINDS)

    @property
    def exit_code(self) -> int:
        """1 on drift (without repair) or on anything repair could not fix; else 0."""
        if self.problem_count or self.unrepairable:
            return EXIT_DRIFT
        if self.repairing:
            return EXIT_CLEAN
        return EXIT_DRIFT if self.drift else EXIT_CLEAN

    def lines(self) -> list[str]:
        counts = self.counts
        if self.sample is None:
            head = (
                f"checked {_plural(self.checked, 'item')}: {counts['missing']} missing, "
                f"{counts['stale']} stale, {counts['extra']} extra"
                + (f", {counts['kept']} kept" if counts["kept"] else "")
            )
        else:
            head = (
                f"checked {_plural(self.checked, 'item')} (random sample; extra documents not looked for): "
                f"{counts['missing']} missing, {counts['stale']} stale"
            )
        lines = [head]
        for kind in KINDS:
            shown = self.examples[kind]
            if shown:
                more = counts[kind] - len(shown)
                lines.append(f"{kind}: {', '.join(shown)}" + (f" (and {more} more)" if more else ""))
        lines += [f"note: {note}" for note in self.notes]
        lines += [f"problem: {problem}" for problem in self.problems]
        if self.problem_count > len(self.problems):
            lines.append(f"problem: ... and {self.problem_count - len(self.problems)} more")
        if self.repairing:
            done = self.repair
            lines.append(
                f"repaired: {done['written']} written, {done['deleted']} deleted, "
                f"{done['superseded']} superseded by newer changes, {done['gone']} gone since the scan, "
                f"{self.repair_failures} failed, {self.unrepairable} extra not deletable"
            )
        # Ids, field names and values come from items and documents: no control character reaches
        # the terminal, and no line can pose as a line of the report.
        return [printable(line) for line in lines]
