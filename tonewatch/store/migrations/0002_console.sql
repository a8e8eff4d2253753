-- The analyst console's own tables (issue #31): what its users did, and their verdicts on incidents.

-- One row per console action (sign-in, sign-in refused, ack, relabel, verdict, sign-out): who, what, when,
-- on what, and the state before and after. Rows are only ever inserted.
CREATE TABLE audit (
    id       bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    username text        NOT NULL,           -- as typed on a refused sign-in: it may name no user
    action   text        NOT NULL,
    target   text,                           -- an incident or message id; the client address of a sign-in
    before   jsonb,
    after    jsonb
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_target ON audit (target, at);

-- An analyst's verdict on an incident, the latest one wins (the audit keeps the earlier ones);
-- tonewatch eval reads the detector's precision from it.
CREATE TABLE verdicts (
    incident_id text        PRIMARY KEY,
    verdict     text        NOT NULL CHECK (verdict IN ('true_alarm', 'false_alarm')),
    note        text,
    username    text        NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);

-- Grafana's read-only login (compose's grafana_reader) gets SELECT on every new table by default privileges;
-- who signed in from where is not dashboard material.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'grafana_reader') THEN
        REVOKE ALL ON audit FROM grafana_reader;
    END IF;
END
$$;

-- The console's own login (compose's tonewatch_console, deploy/postgres/20-console.sh) reads every table by
-- default privileges and writes only these two; the audit by INSERT alone, so no login but the owner rewrites it.
-- The identity needs no grant on its sequence: INSERT draws an identity value without one.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'tonewatch_console') THEN
        GRANT INSERT ON audit TO tonewatch_console;
        GRANT INSERT, UPDATE ON verdicts TO tonewatch_console;
    END IF;
END
$$;
