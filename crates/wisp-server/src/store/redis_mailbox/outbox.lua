-- A sender's outbox on its own (sent after outbox_lib.lua, which holds the
-- logic): under the sender's own hash tag, so on a Redis Cluster, where
-- mailboxes live on other slots, this is a script of its own. Reserves room
-- for one message, or releases entries.
local entries = KEYS[1]      -- sorted set: "<recipient>:<client id>:<bytes>", scored by expiry
local total = KEYS[2]        -- string: the bytes of the members of `entries`
local now_ms = ARGV[1]       -- the server's time (Unix ms): what expired by then is gone
local action = ARGV[2]       -- 'reserve' or 'release'
local entry = ARGV[3]         -- reserve: the entry; release: the first of the entries to drop
local expires_ms = ARGV[4]   -- reserve: the entry's expiry (Unix ms)
local cap = tonumber(ARGV[5]) -- reserve: the outbox's cap in bytes
-- Replies: reserve, 2 reserved, 1 already held, 0 full; release, how many
-- of the entries were held.

if action == 'reserve' then
  return outbox_reserve(entries, total, now_ms, entry, expires_ms, cap)
end
return outbox_release(entries, total, now_ms, {unpack(ARGV, 3)})
