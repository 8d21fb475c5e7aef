"""Tabs of the explorer that live in their own modules; :mod:`app.ui` builds and wires each with a few lines."""
