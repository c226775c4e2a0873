-- Appends Pub/Sub messages to the log, in order, after looking for each after the cursor (a
-- message another server already wrote is not written again).
--
-- One call for a whole batch: the entries after the cursor are read once (`XRANGE`, up to the
-- match window) and walked once for all the batch's messages, so a call's cost grows with the
-- batch and the lag added, not multiplied. After a message is written, nothing later in the
-- batch can match (every entry read is older), as in calls made one message at a time.
--
-- KEYS: log, last id. ARGV: max entries, max age (ms), source, cursor, match window, then the
-- messages' JSON. Returns `{id, written, id, written, …}`, ids as decimal strings, `written` 1
-- or 0.
local entries = redis.call('XRANGE', KEYS[1], '(' .. sid(tonumber(ARGV[4])), '+', 'COUNT', ARGV[5])
local pos = 1
local out = {}
for i = 6, #ARGV do
  local msg = ARGV[i]
  local h = redis.sha1hex(msg)
  local found = nil
  for j = pos, #entries do
    local f = entries[j][2]
    for k = 1, #f, 2 do
      if f[k] == 'h' and f[k + 1] == h then found = j end
    end
    if found then break end
  end
  if found then
    out[#out + 1] = string.format('%d', num(entries[found][1]))
    out[#out + 1] = 0
    pos = found + 1
  else
    local id = next_id(KEYS[1], KEYS[2])
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], sid(id), 'src', ARGV[3], 'h', h, 'msg', msg)
    out[#out + 1] = string.format('%d', id)
    out[#out + 1] = 1
    pos = #entries + 1
  end
end
if last then trimmed(KEYS[1], KEYS[2], ARGV[2]) end
return out
