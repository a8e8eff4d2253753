"""Alert delivery (issue #5): the ``tonewatch notifier`` process and its pure building blocks.

Delivery is slow I/O with long retries, so it runs apart from the Faust worker: one kafka-python
consumer on the alerts topic, per-subscription queues, a delivery ledger for exactly-once toward
each receiver, and a dead-letter topic for what cannot be delivered.
"""
