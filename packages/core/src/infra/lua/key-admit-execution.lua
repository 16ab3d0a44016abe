-- An execution enters the owner's in-flight set only while the owner has fewer than ARGV[3] of
-- them and, unless its session already has one in flight, fewer than ARGV[4] sessions with one.
local max, maxSessions = tonumber(ARGV[3]), tonumber(ARGV[4])
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
if max >= 0 and #members >= max then return 'queued' end
if maxSessions >= 0 then
  local sessions, n, mine = {}, 0, false
  for _, m in ipairs(members) do
    local sid = string.match(m, '^([^:]+):')
    if sid == ARGV[1] then mine = true end
    if not sessions[sid] then sessions[sid] = true n = n + 1 end
  end
  if (not mine) and n >= maxSessions then return 'running' end
end
redis.call('ZADD', KEYS[1], ARGV[5], ARGV[1] .. ':' .. ARGV[2])
return 'ok'
