-- Deletes read messages from a recipient's mailbox; ids that are not there
-- are ignored. Returns how many messages were deleted.
local waiting = KEYS[1]        -- sorted set: waiting message ids, scored by id
local message_prefix = KEYS[2] -- "<mailbox>:m:", a message hash's key without its id
local pending_prefix = KEYS[3] -- "<mailbox>:p:", a sender's waiting-id set without the sender
-- ARGV: the message ids to burn.

local burned = 0
for _, id in ipairs(ARGV) do
  local message = message_prefix .. id
  local sender = redis.call('HGET', message, 's')
  redis.call('ZREM', waiting, id)
  if sender then
    redis.call('DEL', message)
    redis.call('ZREM', pending_prefix .. sender, id)
    burned = burned + 1
  end
end
return burned
