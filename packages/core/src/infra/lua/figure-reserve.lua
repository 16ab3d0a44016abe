-- Counts a figure's bytes against its session's cap and its key's budget in one step, or nothing.
-- KEYS: the session's figure bytes, the key's hash of session id -> figure bytes.
-- ARGV: bytes, session cap, key budget (< 0: none), session id, retention seconds.
-- Returns 'ok', 'session' or 'key'.
local bytes, sessionMax, keyMax = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local held = tonumber(redis.call('GET', KEYS[1]) or '0')
if held + bytes > sessionMax then return 'session' end
if keyMax >= 0 then
  local total = bytes
  for _, v in ipairs(redis.call('HVALS', KEYS[2])) do total = total + tonumber(v) end
  if total > keyMax then return 'key' end
  redis.call('HINCRBY', KEYS[2], ARGV[4], bytes)
  redis.call('EXPIRE', KEYS[2], ARGV[5])
end
redis.call('INCRBY', KEYS[1], bytes)
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 'ok'
