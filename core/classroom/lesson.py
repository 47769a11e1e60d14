"""A lesson: a few recipes a teacher pins (the notebook's four, say) that every student runs with a seed of
their own, so that the class board (core.views.board) pools one recipe over many seeds.

Seeds are handed out by the roster's database in one transaction each: two students who press the same
button at the same moment get different seeds, and a student who runs a recipe again gets a new one.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.access import Actor, PermissionDenied
from core.classroom.roster import Roster
from core.config import TrainConfig
from core.views.board import recipe_key
from core.views.notebook import experiments

MAX_PINNED = 8


@dataclass(frozen=True)
class Pinned:
    label: str
    cfg: TrainConfig


def pinned(roster: Roster) -> list[Pinned]:
    with roster.connect() as db:
        rows = db.execute("SELECT label, config FROM lesson ORDER BY position").fetchall()
    out = []
    for r in rows:
        try:
            out.append(Pinned(r["label"], TrainConfig.from_json(r["config"])))
        except ValueError:  # a method of a plug-in that is not loaded now
            continue
    return out


def set_lesson(roster: Roster, recipes: list[Pinned], *, by: Actor) -> None:
    """Replaces the lesson with `recipes` (at most MAX_PINNED)."""
    if not by.teacher:
        raise PermissionDenied(f"{by.name} is not a teacher: only a teacher can pin a lesson")
    if len(recipes) > MAX_PINNED:
        raise ValueError(f"a lesson holds at most {MAX_PINNED} recipes, not {len(recipes)}: unpin some")
    with roster.connect() as db:
        db.execute("BEGIN IMMEDIATE")
        db.execute("DELETE FROM lesson")
        for i, p in enumerate(recipes):
            db.execute("INSERT INTO lesson VALUES (?, ?, ?)", (i, p.label, p.cfg.with_(seed=0).to_json()))
        db.execute("COMMIT")


def notebook_lesson(arch: str, weights: str, n_labeled: int = 100) -> list[Pinned]:
    """The practical session's four experiments (core.views.notebook) as a lesson."""
    labels = {"scratch": "Scratch (notebook)", "transfer": "Transfer (notebook)",
              "augment": "Scratch + flip and crop", "semi": "Label spreading"}  # fmt: skip
    return [Pinned(labels[k], cfg) for k, cfg in experiments(arch, weights, n_labeled).items()]


def take_seed(roster: Roster, cfg: TrainConfig, fingerprint: str, owner: str, used: set[int] = frozenset()) -> int:
    """The smallest seed of this recipe that nobody in the class has taken (nor in `used`: seeds of runs saved
    before), now `owner`'s."""
    recipe = recipe_key(cfg, fingerprint)
    with roster.connect() as db:
        db.execute("BEGIN IMMEDIATE")
        taken = {r[0] for r in db.execute("SELECT seed FROM seeds WHERE recipe = ?", (recipe,))} | set(used)
        seed = next(s for s in range(len(taken) + 1) if s not in taken)
        db.execute("INSERT INTO seeds VALUES (?, ?, ?)", (recipe, seed, owner))
        db.execute("COMMIT")
    return seed


def lesson_recipes(roster: Roster, arch: str, weights: str, n_labeled: int = 100) -> dict[str, TrainConfig]:
    """What a lesson runs: the recipes the teacher pinned, or the notebook's four when none is."""
    return {p.label: p.cfg for p in pinned(roster) or notebook_lesson(arch, weights, n_labeled)}
