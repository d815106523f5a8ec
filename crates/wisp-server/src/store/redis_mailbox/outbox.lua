-- A sender's outbox: the bytes it has waiting in every mailbox, under the
-- sender's own hash tag (mailboxes live on other slots, so this is a
-- script of its own). Reserves room for one message, or releases entries.
local entries = KEYS[1]      -- sorted set: "<recipient>:<client id>:<bytes>", scored by expiry
local total = KEYS[2]        -- string: the bytes of the members of `entries`
local now_ms = ARGV[1]       -- the server's time (Unix ms): what expired by then is gone
local action = ARGV[2]       -- 'reserve' or 'release'
local entry = ARGV[3]         -- reserve: the entry; release: the first of the entries to drop
local expires_ms = ARGV[4]   -- reserve: the entry's expiry (Unix ms)
local cap = tonumber(ARGV[5]) -- reserve: the outbox's cap in bytes
-- Replies: reserve, 2 reserved, 1 already held, 0 full; release, how many
-- of the entries were held.

local function size_of(entry)
  return tonumber(string.match(entry, ':(%d+)$'))
end
local bytes = tonumber(redis.call('GET', total) or '0')
for _, entry in ipairs(redis.call('ZRANGEBYSCORE', entries, '-inf', now_ms)) do
  bytes = bytes - size_of(entry)
end
redis.call('ZREMRANGEBYSCORE', entries, '-inf', now_ms)
if bytes < 0 then bytes = 0 end
local reply = 0
if action == 'reserve' then
  if redis.call('ZSCORE', entries, entry) then
    reply = 1
  elseif bytes + size_of(entry) <= cap then
    redis.call('ZADD', entries, expires_ms, entry)
    bytes = bytes + size_of(entry)
    reply = 2
  end
else
  for _, dropped in ipairs({unpack(ARGV, 3)}) do
    if redis.call('ZREM', entries, dropped) == 1 then
      bytes = bytes - size_of(dropped)
      reply = reply + 1
    end
  end
end
if bytes < 0 then bytes = 0 end
-- Both keys go when the last entry expires.
local last = redis.call('ZRANGE', entries, -1, -1, 'WITHSCORES')
if #last == 2 then
  redis.call('SET', total, string.format('%d', bytes), 'PXAT', last[2])
  redis.call('PEXPIREAT', entries, last[2])
else
  redis.call('DEL', total)
end
return reply
