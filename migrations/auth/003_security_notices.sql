-- pgsession auth: security notices (ASVS 6.3.5, 6.3.7). One row per thing the account owner
-- should hear about: a sign-in from an unfamiliar device, repeated wrong passwords, a lockout,
-- a password or email change. `details` holds where and when (address, user agent, time) and
-- counts; never a password, a session id or a cookie.
CREATE TABLE IF NOT EXISTS auth_security_notices (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  -- Notices go when the account goes.
  user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  kind text NOT NULL CHECK (kind IN ('new-sign-in', 'failed-sign-ins', 'locked', 'password-changed', 'email-changed')),
  created_at timestamptz NOT NULL DEFAULT now(),
  read_at timestamptz,
  details jsonb NOT NULL DEFAULT '{}'::jsonb
);

-- A user's notices, newest first (the notices page); the unread count (the dashboard, every visit).
CREATE INDEX IF NOT EXISTS auth_security_notices_user_idx ON auth_security_notices (user_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS auth_security_notices_unread_idx ON auth_security_notices (user_id) WHERE read_at IS NULL;

-- Devices an account has signed in from, so that only an unfamiliar one raises a notice. The
-- device is a hash of browser family, OS family and client network: nothing here identifies a
-- session or can be shown back, and the table stays one small row per device the user really
-- uses (sessions cannot serve: they are deleted at logout and expiry, which would make every
-- sign-in after a logout look new).
CREATE TABLE IF NOT EXISTS auth_known_devices (
  user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  device text NOT NULL,
  first_seen_at timestamptz NOT NULL,
  last_seen_at timestamptz NOT NULL,
  PRIMARY KEY (user_id, device)
);
