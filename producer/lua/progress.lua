-- Record how a running attempt is getting on (phase, progress, logs' tail) on its job's record:
-- one small write, applied only while the attempt still owns the job.
--
-- KEYS[1] predq:job:{id}   KEYS[2] predq:events:{id}
-- ARGV[1] run token   ARGV[2] a progress event's data ("" = none)   ARGV[3] the stream's length
-- ARGV[4..] field/value pairs; an empty value deletes the field
-- Returns ok, missing, illegal (the job is no longer running) or stale (another run owns it).
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state ~= 'running' then return 'illegal' end
if redis.call('HGET', KEYS[1], 'run') ~= ARGV[1] then return 'stale' end
for i = 4, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[1], ARGV[i])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
if ARGV[2] ~= '' then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 't', 'progress', 'd', ARGV[2])
end
return 'ok'
