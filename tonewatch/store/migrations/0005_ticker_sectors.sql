-- Ticker -> sector, from the knowledge file the score stage uses (streams/knowledge.py), replaced by each sink
-- at start (schema.sync_ticker_sectors). A message lists its tickers and sectors apart, so the pairs cannot be
-- read back from messages; the Ticker dashboard's sector variable, which the Risk overview's sectors link to,
-- lists a sector's tickers from here.
CREATE TABLE ticker_sectors (
    ticker text PRIMARY KEY,
    sector text NOT NULL
);
CREATE INDEX ticker_sectors_sector ON ticker_sectors (sector);
