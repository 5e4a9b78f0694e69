"""Ingest: HTTP routes of each source, translated into scoring.Event at the edge."""
