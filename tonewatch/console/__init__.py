"""The analyst console (issue #31): server-rendered pages where an analyst triages incidents, sees why they
fired and relabels messages for the next model. ``create_app`` (app.py) builds it from its collaborators."""
