-- A friend request may name any id, registered or not, so that its answer
-- never tells who exists: `to_user` no longer references `accounts`.
-- Requests expire (see FRIEND_REQUEST_LIFETIME); the reaper deletes them by
-- age.
CREATE TABLE friend_requests_v4 (
    from_user  BLOB NOT NULL REFERENCES accounts(user_id),
    to_user    BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (from_user, to_user)
) STRICT, WITHOUT ROWID;
INSERT INTO friend_requests_v4 (from_user, to_user, created_ms)
    SELECT from_user, to_user, created_ms FROM friend_requests;
DROP TABLE friend_requests;
ALTER TABLE friend_requests_v4 RENAME TO friend_requests;
CREATE INDEX friend_requests_by_recipient ON friend_requests (to_user, from_user);
CREATE INDEX friend_requests_by_age ON friend_requests (created_ms);
