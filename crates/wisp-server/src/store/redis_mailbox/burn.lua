-- Deletes read messages from a recipient's mailbox; ids that are not there
-- are ignored. Returns, for each message deleted, its sender and its entry
-- in the sender's outbox (for the caller to release there).
local waiting = KEYS[1]        -- sorted set: waiting message ids, scored by id
local message_prefix = KEYS[2] -- "<mailbox>:m:", a message hash's key without its id
local pending_prefix = KEYS[3] -- "<mailbox>:p:", a sender's waiting-id set without the sender
local sizes = KEYS[4]          -- sorted set: "<id>:<bytes>" of every waiting message
local stored_bytes = KEYS[5]   -- string: the bytes of the members of `sizes`
-- ARGV: the message ids to burn.

local burned = {}
for _, id in ipairs(ARGV) do
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
    table.insert(burned, sender)
    table.insert(burned, fields[2] or '')
  end
end
return burned
