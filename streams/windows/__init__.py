"""Windows and the detector: trend partials in; closed windows, trend records and alerts out.

Pure event-time math (fold, baselines, rolling views, detector) plus the trend and alert record builders.
"""
