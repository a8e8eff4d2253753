"""The PostgreSQL history store: trends, alerts, incidents, scored messages and model events, kept past the
topics' retention for queries over time (docs/store.md). Rows are upserted on natural keys, so replaying a
topic into it changes nothing."""
