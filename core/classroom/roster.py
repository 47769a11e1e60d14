"""Who is who in a class: an SQLite table beside the runs (RUNS_DIR/class.sqlite), shared by every server
process and the CLI, as the job queue is.

With a class code (SMALLDATA_CLASS_CODE) a student enters the code and a display name and gets a token:
24 random bytes, kept by their browser (a cookie) and stored here only as its SHA-256, so the names are
public but a name cannot be taken over. Names are unique in a class, whatever their case. A teacher signs in
the same way with the teacher code (SMALLDATA_TEACHER_CODE). With a login provider (OpenID Connect, the
app's `st.login`) the account's e-mail is the key, its name the display name, and SMALLDATA_TEACHERS lists
the teachers' e-mails.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.access import LOCAL, Actor, PermissionDenied, check_name
from core.settings import Settings

SCHEMA = """
CREATE TABLE IF NOT EXISTS members (
    name TEXT PRIMARY KEY COLLATE NOCASE,
    key TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    joined REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS lesson (position INTEGER PRIMARY KEY, label TEXT NOT NULL, config TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS seeds (recipe TEXT NOT NULL, seed INTEGER NOT NULL, owner TEXT NOT NULL,
                                  PRIMARY KEY (recipe, seed));
"""


class ClassError(PermissionDenied):
    """A sign-in that cannot be taken: wrong code, a name in use; the message says what to do."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Roster:
    def __init__(self, runs_dir: Path) -> None:
        self.path = Path(runs_dir) / "class.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as db:
            db.executescript(SCHEMA)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.row_factory = sqlite3.Row
            yield db
        finally:
            db.close()

    # ---- signing in

    def join(self, code: str, name: str, settings: Settings) -> tuple[Actor, str]:
        """A new member from the code they typed and the name they chose: (who they are, their token)."""
        code = code.strip()
        if settings.teacher_code and hmac.compare_digest(code, settings.teacher_code):
            role = "teacher"
        elif settings.class_code and hmac.compare_digest(code, settings.class_code):
            role = "student"
        else:
            raise ClassError("that is not this class's code: ask your teacher for it (it is case-sensitive)")
        try:
            name = check_name(name)
        except ValueError as err:
            raise ClassError(str(err)) from None
        token = secrets.token_urlsafe(24)
        self._add(name, _digest(token), role)
        return Actor(name, teacher=role == "teacher"), token

    def _add(self, name: str, key: str, role: str) -> None:
        with self.connect() as db:
            try:
                db.execute("INSERT INTO members VALUES (?, ?, ?, ?)", (name, key, role, time.time()))
            except sqlite3.IntegrityError:
                raise ClassError(
                    f"the name {name!r} is taken in this class: choose another one (add your initial, say)"
                ) from None

    def resolve(self, token: str | None) -> Actor | None:
        """Who holds this token, or None (never issued, or the teacher cleared the class)."""
        if not isinstance(token, str) or not token:
            return None
        with self.connect() as db:
            row = db.execute("SELECT name, role FROM members WHERE key = ?", (_digest(token),)).fetchone()
        return Actor(row["name"], teacher=row["role"] == "teacher") if row else None

    def account(self, email: str, display: str, settings: Settings) -> Actor:
        """The member of a login-provider account, added the first time with a free display name."""
        key = "account:" + _digest(email.strip().lower())
        teacher = email.strip().lower() in {t.lower() for t in settings.teachers}
        with self.connect() as db:
            row = db.execute("SELECT name FROM members WHERE key = ?", (key,)).fetchone()
        if row is not None:
            return Actor(row["name"], teacher=teacher)
        base = check_name(display or email.split("@")[0])
        for n in range(1, 100):
            name = base if n == 1 else f"{base} {n}"
            try:
                self._add(name, key, "teacher" if teacher else "student")
                return Actor(name, teacher=teacher)
            except ClassError:
                continue
        raise ClassError(f"no free display name for {display!r}")

    def named(self, name: str, settings: Settings) -> Actor:
        """The member called `name`, for the CLI's --owner: a teacher if the roster or SMALLDATA_TEACHERS says so."""
        if name == LOCAL:
            return Actor(LOCAL, teacher=True)
        with self.connect() as db:
            row = db.execute("SELECT name, role FROM members WHERE name = ?", (name,)).fetchone()
        teacher = (row is not None and row["role"] == "teacher") or name in settings.teachers
        return Actor(row["name"] if row else name, teacher=teacher)

    # ---- what the teacher sees and changes

    def members(self) -> list[dict]:
        with self.connect() as db:
            rows = db.execute("SELECT name, role, joined FROM members ORDER BY joined").fetchall()
        return [dict(r) for r in rows]

    def remove(self, name: str, *, by: Actor) -> bool:
        """Forgets a member (their token stops working; the name is free again)."""
        if not by.teacher:
            raise PermissionDenied(f"{by.name} is not a teacher: only a teacher can remove a member of the class")
        with self.connect() as db:
            return db.execute("DELETE FROM members WHERE name = ?", (name,)).rowcount == 1

    def clear(self, *, by: Actor, free_names: bool) -> None:
        """Signs every student out (their tokens stop working) and forgets the seeds they took; the teachers and
        the lesson stay. free_names: the names can be taken again; only once their runs are gone, or a newcomer
        of the same name would own an old student's runs."""
        if not by.teacher:
            raise PermissionDenied(f"{by.name} is not a teacher: only a teacher can clear the class")
        with self.connect() as db:
            if free_names:
                db.execute("DELETE FROM members WHERE role != 'teacher'")
            else:
                for (name,) in db.execute("SELECT name FROM members WHERE role != 'teacher'").fetchall():
                    db.execute("UPDATE members SET key = ? WHERE name = ?", ("retired:" + secrets.token_hex(16), name))
            db.execute("DELETE FROM seeds")
