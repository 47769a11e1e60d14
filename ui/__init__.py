"""Streamlit helpers shared by app.py and the pages: cached core objects, the sidebar, generic widgets.

They live outside pages/ because Streamlit treats every file in pages/ as a page of its own."""
