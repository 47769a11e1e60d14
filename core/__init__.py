"""Small Data Lab core: everything the app does, importable and testable without Streamlit.

Its subpackages are layers, lowest first: `data`, `models`, `engine`, `methods`, `runs`, `views`, `jobs`;
a layer imports only the ones before it (tests/test_architecture.py checks it). At the root: `settings`
(every SMALLDATA_* variable), `plugins`, `config` (the run config), `cli` (`python -m core ...`).
Start at core.methods.registry (methods) and core.runs.train (fit).
"""
