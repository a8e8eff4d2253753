-- The history store's tables (issue #30, docs/store.md). Column names are a contract: the dashboards and the
-- history commands (tonewatch/store/queries.py) read them. Each row also keeps its record whole (record/payload).

-- One row per closed window of one key; a newer record of the same window replaces the row.
-- The primary key serves "one ticker over time" (dimension, key, window_start range).
CREATE TABLE trends (
    dimension          text             NOT NULL,
    key                text             NOT NULL,
    window_start       timestamptz      NOT NULL,
    window_end         timestamptz      NOT NULL,
    count              integer          NOT NULL,
    negative           integer          NOT NULL,
    share              double precision NOT NULL,  -- the record's negative_share
    corrected_share    double precision,
    baseline           double precision,
    corrected_baseline double precision,
    z                  double precision,           -- trends records carry none today: NULL
    record             jsonb            NOT NULL,
    PRIMARY KEY (dimension, key, window_start)
);

-- One row per alert state change: an alert id fires once and resolves once.
CREATE TABLE alerts (
    alert_id     text        NOT NULL,          -- the payload's id
    status       text        NOT NULL,          -- firing or resolved
    dimension    text        NOT NULL,
    key          text        NOT NULL,
    severity     text        NOT NULL,
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    z            double precision,              -- the payload's score (the window's binomial z)
    reasons      text        NOT NULL,          -- the payload's reason: share, volume or both
    top_messages jsonb       NOT NULL,
    payload      jsonb       NOT NULL,
    PRIMARY KEY (alert_id, status)
);
CREATE INDEX alerts_window_start ON alerts (window_start);
CREATE INDEX alerts_key_window ON alerts (dimension, key, window_start);

-- One row per published version of an incident.
CREATE TABLE incidents (
    incident_id text        NOT NULL,           -- the record's id
    version     integer     NOT NULL,
    severity    text        NOT NULL,
    status      text        NOT NULL,           -- opened, updated or resolved
    tickers     text[]      NOT NULL,           -- its ticker children and the tickers their messages are about
    opened_at   timestamptz,                    -- the start of its earliest firing window
    payload     jsonb       NOT NULL,
    PRIMARY KEY (incident_id, version)
);
CREATE INDEX incidents_tickers ON incidents USING gin (tickers);

-- Scored messages, one partition per UTC day of event time: retention drops whole days (schema.drop_expired).
-- The writer creates the partitions a batch needs; there is no default partition, which would hold rows that
-- later block creating their day's partition.
CREATE TABLE messages (
    id             text        NOT NULL,
    ts             timestamptz NOT NULL,
    source         text        NOT NULL,
    text           text        NOT NULL,
    sentiment      text        NOT NULL,
    p_negative     double precision NOT NULL,   -- sentiment_probs' negative
    probs          jsonb       NOT NULL,        -- {"sentiment": sentiment_probs, "topic": topic_probs}
    topic          text        NOT NULL,
    tickers        text[]      NOT NULL,
    sectors        text[]      NOT NULL,
    model_versions jsonb       NOT NULL,
    PRIMARY KEY (ts, id)                        -- leads with ts: it serves time ranges, no second index needed
) PARTITION BY RANGE (ts);
CREATE INDEX messages_tickers ON messages USING gin (tickers);
CREATE INDEX messages_text ON messages USING gin (to_tsvector('english', text));

-- Model lifecycle events (loaded, canary, shadow, promoted, rolled_back, unloaded, drift).
CREATE TABLE model_events (
    event_key text        PRIMARY KEY,          -- a hash of the record's canonical JSON: records carry no id
    at        timestamptz,
    kind      text        NOT NULL,             -- the record's event
    model     text        NOT NULL,
    version   text,                             -- an int for lifecycle events; drift may carry a non-numeric one
    payload   jsonb       NOT NULL
);
CREATE INDEX model_events_model_at ON model_events (model, at);
