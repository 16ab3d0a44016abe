-- Takes a slot only while the owner is under its cap and its budgets (what each member holds is
-- in the resources hash, "memoryMb cpus"); the check and the add are one step. A cap < 0 is none.
local max, maxMem, maxCpus = tonumber(ARGV[1]), tonumber(ARGV[4]), tonumber(ARGV[5])
if max >= 0 and redis.call('ZCARD', KEYS[1]) >= max then return 'sessions' end
if maxMem >= 0 or maxCpus >= 0 then
  local mem, cpus = tonumber(ARGV[6]), tonumber(ARGV[7])
  for _, v in ipairs(redis.call('HVALS', KEYS[2])) do
    local m, c = string.match(v, '^(%S+) (%S+)$')
    mem = mem + tonumber(m)
    cpus = cpus + tonumber(c)
  end
  if maxMem >= 0 and mem > maxMem then return 'memory_mb' end
  if maxCpus >= 0 and cpus > maxCpus + 1e-9 then return 'cpus' end
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[6] .. ' ' .. ARGV[7])
return 'ok'
