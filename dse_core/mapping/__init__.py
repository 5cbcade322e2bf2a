"""Mapping and evaluation of one design point: every layer mapped on an array, then charged
by an energy model (the unit a search calls per trial)."""
