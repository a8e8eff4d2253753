-- Messages per ticker, minute and source: the Ticker dashboard's volume panel. Counting a busy ticker's
-- messages took 7 s for 30 days (benchmarks/store_queries.py); its rollup rows are a few per minute. The sink
-- adds the messages each batch newly inserts, in the batch's transaction (writer.py), so a redelivery counts
-- nothing; retention deletes the days it drops from messages (schema.drop_expired). Existing messages are
-- counted here once.
CREATE TABLE ticker_volume (
    ticker   text        NOT NULL,
    minute   timestamptz NOT NULL,
    source   text        NOT NULL,
    messages integer     NOT NULL,
    PRIMARY KEY (ticker, minute, source) INCLUDE (messages)  -- the panel reads the index alone (as 0004)
);
INSERT INTO ticker_volume (ticker, minute, source, messages)
SELECT t, date_trunc('minute', m.ts), m.source, count(*)
FROM messages m, unnest(m.tickers) AS t
GROUP BY 1, 2, 3;
