#!/usr/bin/env bash
# The analyst console's login to the history store, tonewatch_console: it reads what the owner creates, like
# Grafana's reader, and writes only its own tables. The image runs this once, as the owner, when the data volume
# is first initialised; the tables do not exist yet, so SELECT is a default privilege here and migration 0002
# grants INSERT on audit and INSERT, UPDATE on verdicts when it creates them (nothing may DELETE or UPDATE audit).
# A new password later: ALTER ROLE tonewatch_console PASSWORD '...' as the owner (docs/security.md).
set -euo pipefail

psql --no-psqlrc -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  --set owner="$POSTGRES_USER" --set db="$POSTGRES_DB" \
  --set console_password="${POSTGRES_CONSOLE_PASSWORD:?set POSTGRES_CONSOLE_PASSWORD}" <<'SQL'
CREATE ROLE tonewatch_console LOGIN PASSWORD :'console_password'
  NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION CONNECTION LIMIT 20;
-- a page's query that runs away must not hold a connection the sink needs
ALTER ROLE tonewatch_console SET statement_timeout = '30s';
GRANT CONNECT ON DATABASE :"db" TO tonewatch_console;
GRANT USAGE ON SCHEMA public TO tonewatch_console;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO tonewatch_console;
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" GRANT USAGE ON SCHEMAS TO tonewatch_console;
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" GRANT SELECT ON TABLES TO tonewatch_console;
SQL
