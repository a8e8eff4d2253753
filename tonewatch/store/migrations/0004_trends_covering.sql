-- "One ticker over time" (queries.ticker_trend, the Ticker dashboard's share panel) from the primary key alone:
-- its windows are one per heap page (written in time order among every key's), so the busiest ticker's month
-- read 35,000 pages and sorted them, 150 ms in PostgreSQL; an index-only scan reads a few hundred pages, in order
-- (benchmarks/store_queries.py, docs/store.md). The key stays the natural key the upserts conflict on.
ALTER TABLE trends DROP CONSTRAINT trends_pkey,
    ADD CONSTRAINT trends_pkey PRIMARY KEY (dimension, key, window_start)
        INCLUDE (window_end, count, negative, share, corrected_share, baseline, corrected_baseline, z);
