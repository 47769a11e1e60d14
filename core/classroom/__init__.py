"""Class mode: one server, a teacher and a class.

- `roster`: who is who: a student signs in with the class code and a display name (or through the school's
  login provider), keeps an unguessable token, and is the owner (core.access) of what they start
- `lesson`: the recipes a teacher pinned for everyone to run, and the seeds the class has taken of each
- `teacher`: what only a teacher does: remove a student with their runs, clear the class

May import: core.settings, core.plugins, core.access, core.data, core.datasets, core.models, core.config, core.engine,
core.methods, core.runs, core.views, core.jobs.
"""
