"""Mnemos services: each subfolder is one independently deployable consumer or gateway."""
