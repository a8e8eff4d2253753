"""Alert delivery (issue #5): the ``tonewatch notifier`` process and its pure building blocks.

Slow I/O with long retries, so it runs apart from the worker, with a delivery ledger toward each receiver
(docs/decisions/2026-12-07-separate-notifier.md).
"""
