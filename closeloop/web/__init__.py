"""The dashboard: server-rendered pages (Jinja2 + htmx, Vega-Lite charts), each with a JSON twin
and CSV tables, behind a login or an API token. See ``closeloop/web/README.md``.

It goes through ``closeloop.services``, ``schemas`` and ``present`` only (DESIGN §8).
"""
