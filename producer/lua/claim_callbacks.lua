-- Claim the completion callbacks that are due: each is moved ARGV[2] ms into the future (if the
-- claiming worker dies, another one takes it then) and returned.
--
-- KEYS[1] predq:callbacks
-- ARGV[1] now (ms)   ARGV[2] how long a claim lasts (ms)   ARGV[3] at most this many
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, id in ipairs(due) do
  redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), id)
end
return due
