"""The dashboard (server-rendered) will live here; it goes through ``closeloop.services`` only.

Not built yet: the architecture test already holds it to the layering rules of DESIGN §8.
"""
