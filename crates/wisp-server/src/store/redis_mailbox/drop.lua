-- Deletes every message one sender has waiting in a recipient's mailbox and
-- closes the conversation to that sender's puts for a while. Returns each
-- deleted message's entry in the sender's outbox (for the caller to release
-- there).
local pending = KEYS[1]        -- sorted set: the sender's waiting ids, scored by expiry
local waiting = KEYS[2]        -- sorted set: all waiting message ids, scored by id
local message_prefix = KEYS[3] -- "<mailbox>:m:", a message hash's key without its id
local closed = KEYS[4]         -- string: present while the conversation is closed
local sizes = KEYS[5]          -- sorted set: "<id>:<bytes>" of every waiting message
local stored_bytes = KEYS[6]   -- string: the bytes of the members of `sizes`
local closed_for_ms = ARGV[1]  -- how long it stays closed unless reopened

local dropped = {}
for _, id in ipairs(redis.call('ZRANGE', pending, 0, -1)) do
  local message = message_prefix .. id
  redis.call('ZREM', waiting, id)
  local entry = redis.call('HGET', message, 'o')
  if entry then
    local size = redis.call('HSTRLEN', message, 'c')
    if redis.call('ZREM', sizes, id .. ':' .. size) == 1 then
      redis.call('DECRBY', stored_bytes, size)
    end
    redis.call('DEL', message)
    table.insert(dropped, entry)
  end
end
redis.call('DEL', pending)
redis.call('SET', closed, '1', 'PX', closed_for_ms)
return dropped
