-- A friend request may name any id, registered or not, so that its answer
-- never tells who exists: `to_user` no longer references `accounts`.
-- Requests expire (see FRIEND_REQUEST_LIFETIME); the reaper deletes them by
-- age.
ALTER TABLE friend_requests DROP CONSTRAINT friend_requests_to_user_fkey;
CREATE INDEX friend_requests_by_age ON friend_requests (created_ms);
