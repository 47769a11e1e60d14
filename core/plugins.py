"""Plugins: modules named in $SMALLDATA_PLUGINS, imported by the app and by every worker."""

from __future__ import annotations

import importlib

from core import settings


def load_plugins() -> None:
    """Modules named in $SMALLDATA_PLUGINS (comma-separated) are imported: they may register models
    and methods, which a worker must know as well as the app that queued the job."""
    for name in settings.current().plugins:
        importlib.import_module(name)
