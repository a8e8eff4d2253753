"""Model rollout into Triton: events, gates and the driver behind ``tonewatch models rollout``."""
