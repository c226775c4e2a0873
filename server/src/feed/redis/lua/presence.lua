-- Reports this server's subscriber counts and returns the feed's (see `feed/presence.rs`).
--
-- KEYS: the set of the servers' count keys, this server's count key. ARGV: expiry (ms), then
-- channel, count pairs. This server's hash is replaced and expires unless the next report
-- refreshes it; the set's keys that have expired (their servers stopped reporting) leave it.
-- Returns `{channel, total, …}` over every live server. The servers' keys share the prefix's
-- hash tag, so a Cluster keeps them in one slot.
redis.call('DEL', KEYS[2])
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
if #ARGV > 1 then
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
  redis.call('SADD', KEYS[1], KEYS[2])
end
local totals, order = {}, {}
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local f = redis.call('HGETALL', key)
  if #f == 0 then redis.call('SREM', KEYS[1], key) end
  for i = 1, #f, 2 do
    if not totals[f[i]] then
      order[#order + 1] = f[i]
      totals[f[i]] = 0
    end
    totals[f[i]] = totals[f[i]] + tonumber(f[i + 1])
  end
end
local out = {}
for _, name in ipairs(order) do
  out[#out + 1] = name
  out[#out + 1] = string.format('%d', totals[name])
end
return out
