"""Control: model events in; which model version scores which message, and drift events out.

The routing fold, the worker's view of the model-events topic, and the drift windows and tracker.
"""
