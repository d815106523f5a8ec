-- A sender's outbox, as functions: the bytes it has waiting in every
-- mailbox (entries "<recipient>:<client id>:<bytes>" scored by expiry, and
-- their sum). outbox.lua runs them on their own (a Redis Cluster keeps the
-- outbox on another slot than the mailbox); on one Redis server, put.lua
-- and burn.lua run them in the same script (one round trip, not two).

local function outbox_size(entry)
  return tonumber(string.match(entry, ':(%d+)$'))
end

-- The outbox's bytes at `now_ms`, what expired by then dropped (removed
-- only when there is any: most calls find nothing expired).
local function outbox_open(entries, total, now_ms)
  local bytes = tonumber(redis.call('GET', total) or '0')
  local expired = redis.call('ZRANGEBYSCORE', entries, '-inf', now_ms)
  for _, entry in ipairs(expired) do
    bytes = bytes - outbox_size(entry)
  end
  if #expired > 0 then redis.call('ZREMRANGEBYSCORE', entries, '-inf', now_ms) end
  if bytes < 0 then bytes = 0 end
  return bytes
end

-- Keeps `bytes` as the sum; both keys go when the last entry expires.
local function outbox_close(entries, total, bytes)
  if bytes < 0 then bytes = 0 end
  local last = redis.call('ZRANGE', entries, -1, -1, 'WITHSCORES')
  if #last == 2 then
    redis.call('SET', total, string.format('%d', bytes), 'PXAT', last[2])
    redis.call('PEXPIREAT', entries, last[2])
  else
    redis.call('DEL', total)
  end
end

-- Room for `entry` until `expires_ms`, within `cap` bytes: 2 reserved now,
-- 1 held already (a retry), 0 full.
local function outbox_reserve(entries, total, now_ms, entry, expires_ms, cap)
  local bytes = outbox_open(entries, total, now_ms)
  local reply = 0
  if redis.call('ZSCORE', entries, entry) then
    reply = 1
  elseif bytes + outbox_size(entry) <= cap then
    redis.call('ZADD', entries, expires_ms, entry)
    bytes = bytes + outbox_size(entry)
    reply = 2
  end
  outbox_close(entries, total, bytes)
  return reply
end

-- Drops the `dropped` entries; returns how many were held.
local function outbox_release(entries, total, now_ms, dropped)
  local bytes = outbox_open(entries, total, now_ms)
  local reply = 0
  for _, entry in ipairs(dropped) do
    if redis.call('ZREM', entries, entry) == 1 then
      bytes = bytes - outbox_size(entry)
      reply = reply + 1
    end
  end
  outbox_close(entries, total, bytes)
  return reply
end
