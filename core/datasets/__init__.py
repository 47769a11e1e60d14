"""Datasets users bring from the browser: an upload read and checked before anything is written (`upload`),
any image a phone or a web page gives made small and square (`images`), and the folders they are kept in,
labelled, shared and exported (`library`). A dataset kept here is read by core.data.folder like any other.

May import: core.settings, core.plugins, core.access, core.data.
"""
