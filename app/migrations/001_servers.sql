-- The demo app's "servers" (the seed's dashboard rows), owned by users.
CREATE TABLE IF NOT EXISTS servers (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  name text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS servers_user_id_idx ON servers (user_id);
