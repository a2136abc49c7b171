"""Versioned SQL migrations of the projector read models (applied at projector start)."""
