"""Tonewatch: streaming financial-sentiment risk monitor."""

__version__ = "0.1.0"
