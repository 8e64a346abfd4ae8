-- Record the Replicate prediction a running attempt is waiting on, and claim it for this job, so
-- that no other job can adopt it (see the reconciliation of lost create responses).
--
-- KEYS[1] predq:job:{id}   KEYS[2] predq:prediction:{prediction id}   KEYS[3] predq:events:{id}
-- ARGV[1] run token   ARGV[2] job id   ARGV[3] prediction id   ARGV[4] claim TTL (s)
-- ARGV[5] now (ISO)   ARGV[6] a progress event's data ("" = none)   ARGV[7] the stream's length
-- ARGV[8..] more field/value pairs to set with it (the phase)
-- Returns ok, missing, illegal (the job is no longer running), stale (another run owns it) or
-- claimed (another job owns this prediction).
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state ~= 'running' then return 'illegal' end
if redis.call('HGET', KEYS[1], 'run') ~= ARGV[1] then return 'stale' end
local owner = redis.call('GET', KEYS[2])
if owner and owner ~= ARGV[2] then return 'claimed' end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[4])
redis.call('HSET', KEYS[1], 'prediction_id', ARGV[3], 'updated_at', ARGV[5])
if #ARGV > 7 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 8))
end
if ARGV[6] ~= '' then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*', 't', 'progress', 'd', ARGV[6])
end
redis.call('HDEL', KEYS[1], 'create_unconfirmed_at')
return 'ok'
