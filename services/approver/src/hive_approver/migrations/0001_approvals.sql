-- Approvals, operator questions and the audit log. PostgreSQL decides every transition with a conditional UPDATE,
-- so concurrent decisions and approver replicas are safe.

CREATE TABLE approvals (
    id             bigserial PRIMARY KEY,
    agent          text NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('apply_commit', 'spawn', 'spawn_draft', 'spawn_commit', 'tool_permission')),
    commit_ref     text CHECK (commit_ref ~ '^[0-9a-f]{7,40}$'),
    frozen_sha     text,
    tag            text,
    diff           text,
    description    text NOT NULL DEFAULT '',
    tool           text,
    input          jsonb NOT NULL DEFAULT '{}',
    requested_by   text NOT NULL,
    requested_at   timestamptz NOT NULL DEFAULT now(),
    status         text NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'approved', 'denied', 'applying', 'deployed', 'failed', 'expired', 'cancelled')),
    resolved_at    timestamptz,
    resolved_by    text,
    note           text,
    deadline       timestamptz,
    default_action text CHECK (default_action IN ('approve', 'deny'))
);

-- One pending request per agent and kind (tool permissions excepted: a turn may ask for several in a row).
CREATE UNIQUE INDEX approvals_one_pending ON approvals (agent, kind)
    WHERE status = 'pending' AND kind <> 'tool_permission';
CREATE INDEX approvals_deadline ON approvals (deadline) WHERE status = 'pending' AND deadline IS NOT NULL;
CREATE INDEX approvals_status ON approvals (status, id);

CREATE TABLE questions (
    id          bigserial PRIMARY KEY,
    asker       text NOT NULL,
    question    text NOT NULL,
    options     jsonb NOT NULL DEFAULT '[]',
    multi       boolean NOT NULL DEFAULT false,
    asked_at    timestamptz NOT NULL DEFAULT now(),
    deadline    timestamptz NOT NULL,
    status      text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'answered', 'expired', 'cancelled')),
    answer      text,
    answered_at timestamptz,
    answered_by text
);
CREATE INDEX questions_deadline ON questions (deadline) WHERE status = 'pending';

CREATE TABLE audit (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text NOT NULL,
    action  text NOT NULL,
    target  text NOT NULL,
    outcome text NOT NULL,
    detail  jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_at ON audit (at);
