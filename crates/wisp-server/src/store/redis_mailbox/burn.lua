-- Deletes read messages from a recipient's mailbox; ids that are not there
-- are ignored (sent after outbox_lib.lua). Returns, for each message
-- deleted, its sender and its entry in the sender's outbox, for the caller
-- to release there; on one Redis server (an outbox prefix given) the script
-- releases it itself and returns '' for the entry.
local waiting = KEYS[1]        -- sorted set: waiting message ids, scored by id
local message_prefix = KEYS[2] -- "<mailbox>:m:", a message hash's key without its id
local pending_prefix = KEYS[3] -- "<mailbox>:p:", a sender's waiting-id set without the sender
local sizes = KEYS[4]          -- sorted set: "<id>:<bytes>" of every waiting message
local stored_bytes = KEYS[5]   -- string: the bytes of the members of `sizes`
local outbox_prefix = ARGV[1]  -- "<prefix>:ob:" on one Redis server, '' on a Cluster
local now_ms = ARGV[2]         -- the server's time (Unix ms), for the outboxes
-- ARGV[3] on: the message ids to burn.

local burned = {}
for _, id in ipairs({unpack(ARGV, 3)}) do
  local message = message_prefix .. id
  local fields = redis.call('HMGET', message, 's', 'o')
  local sender = fields[1]
  redis.call('ZREM', waiting, id)
  if sender then
    local size = redis.call('HSTRLEN', message, 'c')
    redis.call('DEL', message)
    redis.call('ZREM', pending_prefix .. sender, id)
    if redis.call('ZREM', sizes, id .. ':' .. size) == 1 then
      redis.call('DECRBY', stored_bytes, size)
    end
    local entry = fields[2] or ''
    if outbox_prefix ~= '' and entry ~= '' then
      local outbox = outbox_prefix .. '{' .. sender .. '}'
      outbox_release(outbox .. ':e', outbox .. ':b', now_ms, {entry})
      entry = ''
    end
    table.insert(burned, sender)
    table.insert(burned, entry)
  end
end
return burned
