"""The core every layer stands on: settings, Kafka I/O and the error hierarchy. It imports nothing else of ours."""
