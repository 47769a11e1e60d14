"""One file per method. Each defines a `core.method.Method` subclass; core/registry.py registers them."""
