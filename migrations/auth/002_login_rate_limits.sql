-- Failed-login counters shared by every app server (rate-limiter-flexible's RateLimiterPostgres
-- layout: key, points, expire in epoch milliseconds). Keys hold hashes of emails, never emails.
CREATE TABLE IF NOT EXISTS auth_rate_limits (
  key varchar(255) PRIMARY KEY,
  points integer NOT NULL DEFAULT 0,
  expire bigint
);

CREATE INDEX IF NOT EXISTS auth_rate_limits_expire_idx ON auth_rate_limits (expire);
