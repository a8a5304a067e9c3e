-- The dashboard's operator sessions, login attempts and audit log. A session row is the only thing a cookie opens:
-- its token is stored hashed (sha256), so a read of this table gives no working cookie.

CREATE TABLE dashboard_sessions (
    token_hash  text PRIMARY KEY,
    account     text NOT NULL,
    csrf        text NOT NULL,
    password_id text NOT NULL,  -- which password hash it was opened under: a new password ends it
    created_at  timestamptz NOT NULL DEFAULT now(),
    seen_at     timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    client      text NOT NULL DEFAULT ''
);
CREATE INDEX dashboard_sessions_live ON dashboard_sessions (expires_at) WHERE revoked_at IS NULL;

CREATE TABLE dashboard_logins (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    client  text NOT NULL,
    account text NOT NULL,
    ok      boolean NOT NULL
);
CREATE INDEX dashboard_logins_recent ON dashboard_logins (client, at) WHERE NOT ok;

-- Every action the dashboard takes, with the operator account (and session) that took it.
CREATE TABLE dashboard_audit (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    account text NOT NULL,
    session text NOT NULL DEFAULT '',  -- the first 12 characters of the session's token hash
    action  text NOT NULL,
    target  text NOT NULL DEFAULT '',
    outcome text NOT NULL,
    detail  jsonb NOT NULL DEFAULT '{}',
    client  text NOT NULL DEFAULT ''
);
CREATE INDEX dashboard_audit_at ON dashboard_audit (at);
