"""Views: everything the pages show that is not Streamlit itself, as pure functions where possible.

- `charts`: Altair charts from tidy frames
- `tables`: saved runs as tables, the notebook's results table, Markdown
- `featuremap`: feature maps (t-SNE cached by content), label spreading replayed, the 10-NN score
- `stem`: the whitened stem shown: the patch spectrum, the filters, an image through them
- `notebook`: the practical session's steps, their experiments and its results

May import: core.settings, core.plugins, core.access, core.data, core.datasets, core.models, core.config, core.engine,
core.methods, core.runs.
"""
