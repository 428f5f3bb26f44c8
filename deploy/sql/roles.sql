-- One LOGIN role per Guestloop service, owning only its own schema.
--
-- Run as a superuser (or a role with CREATEROLE that owns the database), connected to the
-- application database:
--     psql -v ON_ERROR_STOP=1 -d guestloop -f deploy/sql/roles.sql
-- The script is idempotent: run it again after adding a service or to repair drifted rights.
-- It sets no passwords; set them with ALTER ROLE ... PASSWORD, or let CloudNativePG's managed
-- roles do it (deploy/k8s/base/postgres.yaml).
--
-- Role names are <prefix><service>. The prefix defaults to 'guestloop_'; a session may choose
-- another with SET guestloop.role_prefix = 'staging_' (roles are cluster-wide, so several
-- environments or test runs sharing one PostgreSQL server keep theirs apart).
--
-- What each role gets:
--   * LOGIN, nothing else (no SUPERUSER, CREATEDB, CREATEROLE, REPLICATION, BYPASSRLS);
--   * CONNECT on this database, and ownership of its schema and of everything in it, so it can
--     run its own migrations (`guestloop migrate <service>`), including `_sqlx_migrations`;
--   * no CREATE on the database (it cannot make new schemas), no TEMP, no CREATE on `public`,
--     and no USAGE on any other service's schema: it cannot read or write another's tables.

DO $roles$
DECLARE
    prefix   text := coalesce(nullif(current_setting('guestloop.role_prefix', true), ''), 'guestloop_');
    service  text;
    role     text;
    object   record;
BEGIN
    IF prefix !~ '^[a-z_][a-z0-9_]*$' THEN
        RAISE EXCEPTION 'guestloop.role_prefix must be lowercase letters, digits and underscores, got %', prefix;
    END IF;

    -- Nobody gets rights on this database or on `public` merely by existing.
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
    REVOKE CREATE ON SCHEMA public FROM PUBLIC;

    FOREACH service IN ARRAY ARRAY['complaints', 'crm', 'facilities', 'audit', 'gateway'] LOOP
        role := prefix || service;

        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role) THEN
            EXECUTE format('CREATE ROLE %I LOGIN', role);
        END IF;
        EXECUTE format(
            'ALTER ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT',
            role);
        EXECUTE format('ALTER ROLE %I SET search_path = %I', role, service);
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), role);

        -- The schema belongs to the role; the service finds it and never needs CREATE itself.
        EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION %I', service, role);
        EXECUTE format('ALTER SCHEMA %I OWNER TO %I', service, role);
        EXECUTE format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', service);

        -- A schema migrated earlier by another role (say, the superuser) is handed over whole.
        -- Sequences owned by a table follow their table.
        FOR object IN
            SELECT c.relname, c.relkind
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = service
              AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
              AND pg_get_userbyid(c.relowner) <> role
              AND NOT EXISTS (
                  SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                    AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i'))
        LOOP
            EXECUTE format('ALTER %s %I.%I OWNER TO %I',
                CASE object.relkind
                    WHEN 'S' THEN 'SEQUENCE'
                    WHEN 'v' THEN 'VIEW'
                    WHEN 'm' THEN 'MATERIALIZED VIEW'
                    WHEN 'f' THEN 'FOREIGN TABLE'
                    ELSE 'TABLE'
                END,
                service, object.relname, role);
        END LOOP;
        FOR object IN
            SELECT p.oid::regprocedure AS signature, p.prokind
            FROM pg_proc p
            JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = service AND pg_get_userbyid(p.proowner) <> role
        LOOP
            EXECUTE format('ALTER %s %s OWNER TO %I',
                CASE object.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END,
                object.signature, role);
        END LOOP;
        FOR object IN
            SELECT t.typname, t.typtype
            FROM pg_type t
            JOIN pg_namespace n ON n.oid = t.typnamespace
            LEFT JOIN pg_class c ON c.oid = t.typrelid
            WHERE n.nspname = service
              AND (t.typtype IN ('e', 'r', 'd') OR c.relkind = 'c')
              AND pg_get_userbyid(t.typowner) <> role
        LOOP
            EXECUTE format('ALTER %s %I.%I OWNER TO %I',
                CASE object.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
                service, object.typname, role);
        END LOOP;
    END LOOP;
END
$roles$;
