"""Who may change what, and what of the server a student may see.

One concept, the owner: every job (core.jobs.queue) and every run (core.runs.record) names the person it
belongs to. Everyone sees everyone's runs, since comparing is the point, but only the owner or a teacher may
stop, delete, evaluate or export them. The queue and the run store check it (`check`) on every call that
changes something, whoever calls: a page, the CLI or a worker. A button that is hidden is a courtesy; this
is the rule.

Single-user mode (no class code, no identity provider) has one owner, "local", who is also the teacher:
everything is allowed, as before owners existed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

LOCAL = "local"  # the owner of single-user mode, and of every run saved before owners existed
NAME = re.compile(r"^[\w][\w .'-]{0,39}$")  # letters (any script), digits, space, . ' - _; at most 40


class PermissionDenied(ValueError):
    """A call for another owner's job or run; the message says whose it is and who may."""


@dataclass(frozen=True)
class Actor:
    """Who is asking: a student changes only their own; a teacher changes everyone's."""

    name: str
    teacher: bool = False

    @property
    def role(self) -> str:
        return "teacher" if self.teacher else "student"

    def may_change(self, owner: str) -> bool:
        return self.teacher or owner == self.name


SINGLE_USER = Actor(LOCAL, teacher=True)


def check(actor: Actor, owner: str, action: str, what: str) -> None:
    """Raises PermissionDenied unless `actor` may `action` (stop, delete, ...) `what`, which `owner` owns."""
    if not actor.may_change(owner):
        raise PermissionDenied(f"{what} belongs to {owner}: only {owner} or a teacher can {action} it")


def check_name(name: str) -> str:
    """A display name, stripped; ValueError says what a name may hold."""
    name = " ".join(str(name).split())
    if not NAME.match(name) or name.lower() == LOCAL:
        raise ValueError(
            f"the name {name!r} cannot be used: 1 to 40 letters, digits, spaces or . ' - _, starting with a letter "
            f"or digit (and not {LOCAL!r})"
        )
    return name


# ---- nothing of the server leaks


def redact(text: str, paths: Iterable[Path | str]) -> str:
    """`text` with every absolute spelling of the server paths among `paths` (and so anything below them)
    replaced by its last part in angle brackets: "<runs>/x.json" instead of "/srv/lab/runs/x.json". Longer
    paths go first, so a path inside another is named by its own last part."""
    spellings: dict[str, str] = {}
    for p in paths:
        p = Path(p)
        label = f"<{p.name or 'server'}>"
        for spelling in {str(p), str(p.absolute()), os.path.realpath(p)}:
            if spelling.startswith("/") and len(spelling) > 1:  # a relative "runs" would eat every word "runs"
                spellings[spelling] = label
    for spelling in sorted(spellings, key=len, reverse=True):
        text = text.replace(spelling, spellings[spelling])
    return text
