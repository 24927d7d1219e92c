"""The ``wildcard`` matcher: its regular expression, and the complexity limit AWS puts on it."""

from __future__ import annotations

import re
from typing import Final

from cdcsync.errors import PatternError

Path = tuple[str | int, ...]

# AWS refuses a wildcard pattern it judges too complex ("Rule is too complex - try using fewer wildcard
# characters or fewer repeating character sequences after a wildcard character"). The measure is
# event-ruler's MachineComplexityEvaluator: the most wildcard-pattern prefixes one value can be matched
# by at once (its MachineComplexityEvaluatorTest cases are reproduced in our tests). AWS does not
# publish its limit; LocalStack's tests recorded on AWS bound it: "/Users/*/dir/dir/dir/dir/dir/doc.txt"
# (complexity 7) is accepted (content_wildcard_repeating), "*:*:*:*:*:event-bus/*" (11) is refused
# (content_wildcard_complex_EXC). We refuse from 11, so nothing AWS is known to accept is refused.
MAX_WILDCARD_COMPLEXITY: Final = 10
_STAR: Final = None  # a wildcard token that is "*"; any other token is one literal character


def _wildcard_tokens(text: str) -> list[str | None]:
    """A valid wildcard as tokens: characters, and ``_STAR`` for an unescaped ``*``."""
    tokens: list[str | None] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            tokens.append(text[index + 1])
            index += 2
        else:
            tokens.append(_STAR if char == "*" else char)
            index += 1
    return tokens


def wildcard_complexity(texts: list[str], limit: int = MAX_WILDCARD_COMPLEXITY) -> int:
    """event-ruler's complexity of the (valid) wildcards of one field, evaluated up to ``limit + 1``.

    A state is (wildcard, tokens matched); a star state loops on any character. The complexity is the
    largest set of states (the empty prefix aside) that one value reaches, over every value: the
    subsets are explored over the characters the wildcards name plus one standing for all others.
    """
    patterns = [_wildcard_tokens(text) for text in texts]
    alphabet: set[str | None] = {token for tokens in patterns for token in tokens} | {_STAR}

    def closed(states: set[tuple[int, int]]) -> frozenset[tuple[int, int]]:
        todo = list(states)
        while todo:
            which, done = todo.pop()
            tokens = patterns[which]
            if done < len(tokens) and tokens[done] is _STAR and (which, done + 1) not in states:
                states.add((which, done + 1))  # a star matches nothing too
                todo.append((which, done + 1))
        return frozenset(states)

    def size(states: frozenset[tuple[int, int]]) -> int:
        return sum(1 for _, done in states if done)

    start = closed({(which, 0) for which in range(len(patterns))})
    seen, todo, worst = {start}, [start], size(start)
    while todo and worst <= limit:
        states = todo.pop()
        for char in alphabet:
            following: set[tuple[int, int]] = set()
            for which, done in states:
                tokens = patterns[which]
                if done and tokens[done - 1] is _STAR:
                    following.add((which, done))  # inside a star: it takes any character
                if done < len(tokens) and tokens[done] is not _STAR and tokens[done] == char:
                    following.add((which, done + 1))
            reached = closed(following)
            if reached and reached not in seen:
                seen.add(reached)
                todo.append(reached)
                worst = max(worst, size(reached))
    return worst


def check_wildcard_complexity(texts: list[str], path: Path) -> None:
    """Refuse what AWS refuses as too complex: the wildcards of one matcher, evaluated together."""
    if wildcard_complexity(texts) > MAX_WILDCARD_COMPLEXITY:
        shown = max(texts, key=lambda text: wildcard_complexity([text]))
        raise PatternError(
            path,
            f'wildcard "{shown}" is too complex for AWS (complexity over {MAX_WILDCARD_COMPLEXITY}): '
            'use fewer "*", or fewer repeated characters after one',
        )


def wildcard_regex(text: str, path: Path) -> re.Pattern[str]:
    """``*`` is zero or more characters; ``\\*`` a literal star, ``\\\\`` a backslash (event-ruler rules)."""
    parts: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            escaped = text[index + 1 : index + 2]
            if escaped not in ("*", "\\"):
                raise PatternError(
                    path,
                    f'wildcard "{text}" has an invalid escape at position {index}; '
                    "only \\* and \\\\ may be escaped",
                )
            parts.append(re.escape(escaped))
            index += 2
            continue
        if char == "*":
            if text[index + 1 : index + 2] == "*":
                raise PatternError(
                    path, f'wildcard "{text}" has consecutive "*" at position {index}; use a single "*"'
                )
            parts.append(".*")
        else:
            parts.append(re.escape(char))
        index += 1
    return re.compile("".join(parts), re.DOTALL)
