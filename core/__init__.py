"""Small Data Lab core: data, augmentations, models, methods, training, run store. Importable without
Streamlit; the app's pages only call into it. Start at core.registry (methods) and core.train (fit)."""
