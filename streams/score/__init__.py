"""The score stage: news and chat records in; scored records, trend partials and dead letters out.

stage.py wires it: reader.py reads and sizes batches, aligner.py cuts them in event time, scorer.py scores
them on Triton, publisher.py builds and produces the outputs, committer.py commits offsets in read order.
"""
