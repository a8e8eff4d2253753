-- "Most negative first" for one ticker (queries.search_messages; the Ticker dashboard's most negative messages).
-- Without it a busy ticker's whole range is read and sorted: 3.0 s p95 on 10 million messages, against 83 ms
-- with it (benchmarks/store_queries.py), as a LIMIT then walks each day's index in order and stops at the
-- first matches. Quiet tickers still go through messages_tickers; the planner picks per ticker.
CREATE INDEX messages_p_negative ON messages (p_negative DESC, ts DESC, id);
