"""Libraries shared by every Mnemos process."""
