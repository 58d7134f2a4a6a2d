-- pgsession auth: a security notice for a wrong two-factor code after the right password
-- (ASVS 6.3.5): whoever typed it knows the password, which the owner must hear about.
ALTER TABLE auth_security_notices DROP CONSTRAINT IF EXISTS auth_security_notices_kind_check;
ALTER TABLE auth_security_notices ADD CONSTRAINT auth_security_notices_kind_check CHECK (
  kind IN ('new-sign-in', 'failed-sign-ins', 'locked', 'password-changed', 'email-changed', 'second-factor-failed')
);
