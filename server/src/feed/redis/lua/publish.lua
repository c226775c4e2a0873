-- Appends one message published directly (`POST /messages`, `ringback publish`, the demo), at
-- most once per idempotency key and window.
--
-- KEYS: log, last id, the keys (a hash: key → `id:digest`), their expiries (a sorted set: key
-- → Unix ms). ARGV: max entries, max age (ms), source, message JSON, then the idempotency key
-- ('' for none), the message's digest, the window (ms), the most keys kept. Returns `{id,
-- outcome, forgotten}`: outcome 1 written, 2 an earlier publish with the key and message (its
-- id; nothing written), 3 the key was used for another message; `forgotten`: keys dropped early
-- to stay within the most kept. Expired keys are dropped a few per call (and by the bound).
local key = ARGV[5]
if key ~= '' then
  local expired = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', clock(), 'LIMIT', 0, 64)
  if #expired > 0 then
    redis.call('HDEL', KEYS[3], unpack(expired))
    redis.call('ZREM', KEYS[4], unpack(expired))
  end
  local prior = redis.call('HGET', KEYS[3], key)
  if prior then
    local sep = string.find(prior, ':', 1, true)
    local outcome = 3
    if string.sub(prior, sep + 1) == ARGV[6] then outcome = 2 end
    return {string.sub(prior, 1, sep - 1), outcome, 0}
  end
end
local id = next_id(KEYS[1], KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], sid(id), 'src', ARGV[3], 'h', '', 'msg', ARGV[4])
trimmed(KEYS[1], KEYS[2], ARGV[2])
local forgotten = 0
if key ~= '' then
  redis.call('HSET', KEYS[3], key, string.format('%d', id) .. ':' .. ARGV[6])
  redis.call('ZADD', KEYS[4], now + tonumber(ARGV[7]), key)
  local over = redis.call('ZCARD', KEYS[4]) - tonumber(ARGV[8])
  if over > 0 then
    local oldest = redis.call('ZRANGE', KEYS[4], 0, over - 1)
    redis.call('HDEL', KEYS[3], unpack(oldest))
    redis.call('ZREM', KEYS[4], unpack(oldest))
    forgotten = #oldest
  end
end
return {string.format('%d', id), 1, forgotten}
