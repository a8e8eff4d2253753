"""The score stage: news and chat records in; scored records, trend partials and dead letters out.

Reading and sizing batches, aligning them in event time, scoring on Triton, producing the outbox and committing offsets.
"""
