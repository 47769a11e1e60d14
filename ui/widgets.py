"""One generic widget per config field, built from the field's own spec (core.config.FieldSpec):
its label, help, bounds and choices are the ones `validate` checks, so the form can never offer a
value that validation refuses."""

from __future__ import annotations

from typing import Any

import streamlit as st

from core.config import FIELD_SPECS, FIELD_TYPES, TrainConfig, is_used

DEFAULTS = TrainConfig()


def widget_bounds(name: str, cap: float | None = None) -> tuple[float | None, float | None]:
    """The widget's (min, max): the spec's range, narrowed to `cap` (what the dataset holds)."""
    s = FIELD_SPECS[name]
    high = s.high if cap is None or s.high is None else min(s.high, cap)
    return s.low, high


def field_input(name: str, default: Any, *, key: str, where: Any = st, cap: float | None = None) -> Any:
    """The widget of one config field, in `where` (st, a column or the sidebar); returns its value."""
    s, kind = FIELD_SPECS[name], FIELD_TYPES[name]
    help_text = s.help or None
    if kind == "bool":
        return where.checkbox(s.label, bool(default), key=key, help=help_text)
    if s.choices:
        return where.selectbox(s.label, s.choices, index=s.choices.index(default), key=key, help=help_text)
    if s.low is None:
        return where.text_input(s.label, str(default), key=key, help=help_text)
    low, high = widget_bounds(name, cap)
    if kind == "int":
        value = int(min(max(default, low), high))
        return where.number_input(s.label, int(low), int(high), value, step=int(s.step or 1), key=key, help=help_text)
    fine = (s.step or 0.01) < 0.01 or s.high < 1  # small numbers need more decimals
    return where.number_input(
        s.label, float(low), float(high), float(min(max(default, low), high)), step=float(s.step or 0.01),
        format="%.5f" if fine else "%.3f", key=key, help=help_text,
    )  # fmt: skip


def field_inputs(
    names: list[str] | tuple[str, ...],
    base: TrainConfig,
    values: dict[str, Any],
    *,
    key: str,
    columns: int = 4,
    caps: dict[str, float] | None = None,
) -> None:
    """Widgets for the fields of `names` that matter (their "used when" rule), in rows of `columns`;
    their values go into `values`. Choices come first, each shown only if the choices before it leave it
    a use (What trains before Classifier): they decide which of the other fields matter."""
    caps = caps or {}
    names = [n for n in names if n not in values]
    choices = [n for n in names if FIELD_SPECS[n].choices]
    shown = _row(choices, base, values, key, columns, caps)
    shown += _row([n for n in names if n not in choices], base, values, key, columns, caps)
    # A hidden field takes its default rather than the preset's value: the run's config then says what it did
    # (whiten_stem=True from a preset, say, would be refused once another architecture is chosen).
    values.update({n: getattr(DEFAULTS, n) for n in names if n not in shown})


def _row(names: list[str], base: TrainConfig, values: dict[str, Any], key: str, columns: int, caps: dict) -> list:
    """The widgets of the fields that are used, given the values chosen so far, `columns` to a row; their names."""
    shown: list[str] = []
    for name in names:
        if not is_used(name, base.with_(**{k: v for k, v in values.items() if k in FIELD_TYPES})):
            continue
        if len(shown) % columns == 0:
            cols = st.columns(columns)
        where = cols[len(shown) % columns]
        values[name] = field_input(name, getattr(base, name), key=f"{name}_{key}", where=where, cap=caps.get(name))
        shown.append(name)
    return shown
