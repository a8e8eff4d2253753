#!/usr/bin/env bash
# Grafana's login to the history store: SELECT only. The official postgres image runs this once, when its data
# volume is first initialised, as the owner (POSTGRES_USER, the sink's login). The tables do not exist yet (the
# sink's migrations create them), so the grants are default privileges on what the owner creates later.
# Grafana runs whatever SQL a dashboard editor types, hence read-only transactions and a statement timeout too.
# A new password later: ALTER ROLE grafana_reader PASSWORD '...' as the owner (docs/security.md).
set -euo pipefail

psql --no-psqlrc -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  --set owner="$POSTGRES_USER" --set db="$POSTGRES_DB" \
  --set reader_password="${POSTGRES_GRAFANA_PASSWORD:?set POSTGRES_GRAFANA_PASSWORD}" <<'SQL'
CREATE ROLE grafana_reader LOGIN PASSWORD :'reader_password'
  NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION CONNECTION LIMIT 20;
ALTER ROLE grafana_reader SET default_transaction_read_only = on;
ALTER ROLE grafana_reader SET statement_timeout = '30s';
-- no CONNECT or TEMP for PUBLIC: only the owner and the reader use this database
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"db" TO grafana_reader;
GRANT USAGE ON SCHEMA public TO grafana_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO grafana_reader;
-- whatever the owner creates later, in any schema: the sink's tables, views and daily partitions
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" GRANT USAGE ON SCHEMAS TO grafana_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" GRANT SELECT ON TABLES TO grafana_reader;
SQL
