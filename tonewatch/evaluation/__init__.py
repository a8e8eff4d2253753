"""Offline evaluations of the surge detector: NAB-format series and injected-surge scenarios (#5)."""
