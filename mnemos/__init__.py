"""Mnemos: a memory operating system for AI agents. Entry points live in :mod:`mnemos.cli`."""
