-- What both log scripts share: the id arithmetic, and the next id for a new entry.
--
-- `next_id` reads Redis's clock and the id counter once per call, then hands out
-- `max(now_ms * 1000, last + 1)`: increasing, and following Redis's clock.
local function num(sid)
  local dash = string.find(sid, '-', 1, true)
  return tonumber(string.sub(sid, 1, dash - 1)) * 1000 + tonumber(string.sub(sid, dash + 1))
end
local function sid(n)
  return string.format('%d-%d', math.floor(n / 1000), n % 1000)
end
local now, last
local function clock()
  if not now then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return now
end
local function next_id(log, counter)
  if not last then
    clock()
    last = tonumber(redis.call('GET', counter) or '0')
    -- Also past anything written to the log by other means, so XADD never refuses the id.
    local tail = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)
    if #tail > 0 then last = math.max(last, num(tail[1][1])) end
  end
  last = math.max(now * 1000, last + 1)
  return last
end
local function trimmed(log, counter, max_age)
  redis.call('SET', counter, string.format('%d', last))
  redis.call('XTRIM', log, 'MINID', '~', sid(math.max(0, now - tonumber(max_age)) * 1000))
end
