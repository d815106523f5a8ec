-- Accounts, friendships and keys: the relational half of the cluster
-- backend. Public keys only; mailboxes live in Redis.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE accounts (
    user_id            BYTEA PRIMARY KEY,        -- 20 bytes, hash of ed25519_key
    ed25519_key        BYTEA NOT NULL UNIQUE,    -- 32 bytes
    curve25519_key     BYTEA NOT NULL,           -- 32 bytes
    identity_signature BYTEA NOT NULL,           -- 64 bytes
    created_ms         BIGINT NOT NULL
);

CREATE TABLE friends (
    owner    BYTEA NOT NULL REFERENCES accounts (user_id),
    friend   BYTEA NOT NULL REFERENCES accounts (user_id),
    since_ms BIGINT NOT NULL,
    PRIMARY KEY (owner, friend)
);

CREATE TABLE friend_requests (
    from_user  BYTEA NOT NULL REFERENCES accounts (user_id),
    to_user    BYTEA NOT NULL REFERENCES accounts (user_id),
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (from_user, to_user)
);
CREATE INDEX friend_requests_by_recipient ON friend_requests (to_user, from_user);

CREATE TABLE blocks (
    owner      BYTEA NOT NULL REFERENCES accounts (user_id),
    blocked    BYTEA NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (owner, blocked)
);

CREATE TABLE one_time_keys (
    id         BIGSERIAL PRIMARY KEY,
    owner      BYTEA NOT NULL REFERENCES accounts (user_id),
    public_key BYTEA NOT NULL,
    signature  BYTEA NOT NULL,
    UNIQUE (owner, public_key)
);
CREATE INDEX one_time_keys_by_owner ON one_time_keys (owner, id);

CREATE TABLE fallback_keys (
    owner      BYTEA PRIMARY KEY REFERENCES accounts (user_id),
    public_key BYTEA NOT NULL,
    signature  BYTEA NOT NULL
);
