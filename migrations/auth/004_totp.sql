-- pgsession auth: optional TOTP second factor (RFC 6238; ASVS 6.3.3). One row per user who has
-- started or finished enrolling. A user without a row (or with `enabled_at` NULL) logs in with
-- the password alone, exactly as before.
CREATE TABLE IF NOT EXISTS auth_totp (
  -- The secrets go when the account goes.
  user_id bigint PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
  -- The active shared secret (base32, or `enc1:` + AES-256-GCM when an encryption key is
  -- configured). NULL until an enrollment is confirmed with a valid code.
  secret text,
  -- NULL: not enabled. Set when the user proved, with a code, that their app holds the secret.
  enabled_at timestamptz,
  -- The last time step (unix time / 30 s) whose code was accepted: a code is only accepted for a
  -- later step, in one conditional UPDATE, so a code cannot be replayed, even by two requests
  -- racing on two app servers.
  last_step bigint,
  -- A secret being enrolled (shown to the user, not yet proven), and when that started.
  pending_secret text,
  pending_at timestamptz,
  updated_at timestamptz NOT NULL DEFAULT now(),
  CHECK ((secret IS NULL) = (enabled_at IS NULL))
);

-- Single-use recovery codes, for a lost phone. Only SHA-256 hashes are stored: the codes are 80
-- random bits each, so a slow password hash would add nothing against an offline search.
CREATE TABLE IF NOT EXISTS auth_totp_recovery_codes (
  user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  code_hash text NOT NULL,
  used_at timestamptz,
  PRIMARY KEY (user_id, code_hash)
);
