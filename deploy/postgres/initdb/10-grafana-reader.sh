#!/bin/sh
# Runs once, when the PostgreSQL data volume is first initialised (docker-entrypoint-initdb.d):
# a read-only role for Grafana's PostgreSQL datasource. SELECT on every table of the public schema,
# now and later (the setup service's migrations create the tables afterwards, as postgres).
# On an existing volume run it by hand: see docs/deployment.md ("Grafana's read-only role").
set -eu
: "${GRAFANA_PG_PASSWORD:?GRAFANA_PG_PASSWORD is not set (deploy/postgres.env)}"
psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-bybit_pipeline}" \
  -v pw="$GRAFANA_PG_PASSWORD" -v owner="${POSTGRES_USER:-postgres}" <<'SQL'
SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'grafana_reader') AS create_role \gset
\if :create_role
CREATE ROLE grafana_reader LOGIN;
\endif
ALTER ROLE grafana_reader WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'pw';
ALTER ROLE grafana_reader SET default_transaction_read_only = on;
ALTER ROLE grafana_reader SET statement_timeout = '10s';
GRANT CONNECT ON DATABASE :"DBNAME" TO grafana_reader;
GRANT USAGE ON SCHEMA public TO grafana_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO grafana_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT SELECT ON TABLES TO grafana_reader;
SQL
