// Versioned schema migrations for the SQLite store, applied in order. Never edit a
// migration that has shipped: add the next one. `schema_migrations` records each applied
// version; a database whose highest version is above the last one here was written by a
// newer hyokd and is refused (see sqlite-store.ts).
//
// Times are INTEGER milliseconds since the epoch; JSON columns are TEXT checked with
// json_valid. Rules that must hold whatever the caller does (retention range, sticky
// purge protection, fixed retention, state/date consistency) are constraints and
// triggers here, not only checks in TypeScript.

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'keys, versions, intents, domain',
    sql: `
CREATE TABLE keys (
  name TEXT PRIMARY KEY NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('aes-256', 'rsa-3072', 'ec-p256')),
  operations TEXT NOT NULL CHECK (json_valid(operations) AND json_type(operations) = 'array'),
  state TEXT NOT NULL CHECK (state IN ('enabled', 'disabled', 'soft-deleted')),
  state_before_delete TEXT CHECK (state_before_delete IN ('enabled', 'disabled')),
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  tags TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(tags) AND json_type(tags) = 'object'),
  retention_days INTEGER NOT NULL CHECK (retention_days BETWEEN 7 AND 90),
  purge_protection INTEGER NOT NULL DEFAULT 0 CHECK (purge_protection IN (0, 1)),
  deleted_at INTEGER,
  scheduled_purge_at INTEGER,
  rotation_period_days INTEGER CHECK (rotation_period_days > 0),
  expires_at INTEGER,
  notify_before_days INTEGER CHECK (notify_before_days > 0),
  primary_version INTEGER,
  origin TEXT NOT NULL CHECK (origin IN ('generated', 'adopted', 'imported', 'restored')),
  CHECK ((state = 'soft-deleted') = (deleted_at IS NOT NULL)),
  CHECK ((state = 'soft-deleted') = (scheduled_purge_at IS NOT NULL)),
  CHECK ((state = 'soft-deleted') = (state_before_delete IS NOT NULL))
) STRICT;

CREATE TRIGGER keys_purge_protection_sticky
BEFORE UPDATE OF purge_protection ON keys
WHEN OLD.purge_protection = 1 AND NEW.purge_protection = 0
BEGIN
  SELECT RAISE(ABORT, 'purge protection cannot be turned off');
END;

CREATE TRIGGER keys_retention_fixed
BEFORE UPDATE OF retention_days ON keys
WHEN NEW.retention_days <> OLD.retention_days
BEGIN
  SELECT RAISE(ABORT, 'retention is fixed at creation');
END;

CREATE TABLE key_versions (
  key_name TEXT NOT NULL REFERENCES keys(name) ON DELETE CASCADE,
  version INTEGER NOT NULL CHECK (version >= 1),
  cka_id TEXT NOT NULL UNIQUE
    CHECK (length(cka_id) BETWEEN 2 AND 256 AND length(cka_id) % 2 = 0 AND cka_id NOT GLOB '*[^0-9a-f]*'),
  hsm_label TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('enabled', 'disabled')),
  created_at INTEGER NOT NULL,
  public_key_spki BLOB,
  PRIMARY KEY (key_name, version)
) STRICT;

CREATE TABLE intents (
  id TEXT PRIMARY KEY NOT NULL,
  kind TEXT NOT NULL,
  key_name TEXT,
  payload TEXT NOT NULL CHECK (json_valid(payload)),
  created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE domain (
  singleton INTEGER PRIMARY KEY NOT NULL CHECK (singleton = 1),
  domain_id TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  metadata TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata) AND json_type(metadata) = 'object')
) STRICT;
`,
  },
  {
    version: 2,
    name: 'policy documents and the quorum seam',
    sql: `
CREATE TABLE policy_documents (
  revision INTEGER PRIMARY KEY AUTOINCREMENT,
  format TEXT NOT NULL CHECK (format IN ('yaml', 'json')),
  text TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  created_by TEXT NOT NULL
);

CREATE TABLE pending_requests (
  id TEXT PRIMARY KEY NOT NULL,
  op TEXT NOT NULL,
  key_name TEXT,
  requester TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  state TEXT NOT NULL
    CHECK (state IN ('pending', 'approved', 'rejected', 'expired', 'executed', 'cancelled')),
  approvals TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(approvals) AND json_type(approvals) = 'array'),
  payload TEXT NOT NULL DEFAULT 'null' CHECK (json_valid(payload))
) STRICT;

CREATE INDEX pending_requests_by_state ON pending_requests (state, created_at);
`,
  },
];

export const LATEST_SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;
