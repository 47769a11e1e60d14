"""Jobs: work that runs outside the server.

- `queue`: the job queue, SQLite in WAL mode beside the runs; it also reaps the jobs of dead workers
- `worker`: a process that takes jobs from the queue and runs them
- `supervisor`: the app's supervisor, which starts workers and ends those that ignore Stop
- `launcher`: forks workers from a process that has imported torch once
- `ray_tasks`: jobs as Ray tasks on a cluster
- `progress`: a job's progress bar, text and ETA

May import: core.settings, core.plugins, core.access, core.data, core.datasets, core.models, core.config, core.engine,
core.methods, core.runs, core.views.
"""
