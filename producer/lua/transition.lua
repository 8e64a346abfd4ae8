-- Move one job to another state in one atomic step, keeping the per-state indexes in step.
-- Illegal moves are refused (a final job never becomes live again through this script), and a
-- worker whose run token is no longer the record's (its job was recovered by another worker) is
-- fenced out.
--
-- KEYS[1] predq:job:{id}   KEYS[2..7] predq:state:{state} in JobState order   KEYS[8] the arq queue
-- KEYS[9] arq:job:{id}     KEYS[10] predq:outputs:expiry (the jobs whose output files expire)
-- KEYS[11] predq:events:{id}   KEYS[12] predq:callbacks (the outbox of completion callbacks)
-- ARGV[1] allowed current states, space separated   ARGV[2] target state   ARGV[3] now (ms)
-- ARGV[4] retention (s): the record's TTL once final; live records never expire
-- ARGV[5] expected run token ("" = any)
-- ARGV[6] start: "" or the new run token; then attempts is incremented, except when the job was
--         already running (a recovery: recoveries is incremented) or was handed over by a worker
--         shutting down (field "resume": the same attempt goes on); started_at is set once
-- ARGV[7] ISO time for started_at (with a start)   ARGV[8] error JSON to append to errors ("" = none)
-- ARGV[9] "1" to return the whole record
-- ARGV[10] "" or a time (ms) at which the job's arq queue entry becomes due again (re-added if
--          arq already removed it: the record, not arq, decides that a live job stays queued)
-- ARGV[11] operation id: a replay of an applied call (redis-py resends a script whose reply was
--          lost) answers ok without applying it twice
-- ARGV[12] the arq payload, written back with ARGV[10] if arq deleted it
-- ARGV[13] "1": the job has output files, which expire with the record (KEYS[10], scored by when)
-- ARGV[14] the state event's data (appended to KEYS[11])   ARGV[15] the event stream's length
-- ARGV[16] the channel a final state is announced on (the job id)
-- ARGV[17..] field/value pairs; an empty value deletes
-- Returns {status, current state, field, value, ...}; status is ok, missing, illegal or stale
local states = {'queued', 'running', 'retrying', 'succeeded', 'failed', 'canceled'}
local final = {succeeded = true, failed = true, canceled = true}
local job = KEYS[1]
local current = redis.call('HGET', job, 'state')
if not current then
  return {'missing', ''}
end
local function reply(status)
  if ARGV[9] == '1' then
    return {status, current, unpack(redis.call('HGETALL', job))}
  end
  return {status, current}
end
if redis.call('HGET', job, 'op') == ARGV[11] then
  return reply('ok')
end
local allowed = false
for state in string.gmatch(ARGV[1], '%S+') do
  if state == current then allowed = true end
end
if not allowed then
  return reply('illegal')
end
if ARGV[5] ~= '' and redis.call('HGET', job, 'run') ~= ARGV[5] then
  return reply('stale')
end

local target = ARGV[2]
local now = tonumber(ARGV[3])
if ARGV[6] ~= '' then
  if current == 'running' then
    redis.call('HINCRBY', job, 'recoveries', 1)
    -- The dead worker may have created a prediction without recording it: look before creating.
    local since = redis.call('HGET', job, 'run_started_at')
    if since and redis.call('HEXISTS', job, 'prediction_id') == 0 then
      redis.call('HSETNX', job, 'create_unconfirmed_at', since)
    end
  elseif redis.call('HDEL', job, 'resume') == 0 then
    redis.call('HINCRBY', job, 'attempts', 1)
  end
  redis.call('HSET', job, 'run', ARGV[6], 'run_started_at', ARGV[7])
  redis.call('HSETNX', job, 'started_at', ARGV[7])
end
if ARGV[8] ~= '' then
  local errors = redis.call('HGET', job, 'errors')
  if not errors or errors == '[]' then
    errors = '[' .. ARGV[8] .. ']'
  else
    errors = string.sub(errors, 1, -2) .. ',' .. ARGV[8] .. ']'
  end
  redis.call('HSET', job, 'errors', errors, 'error', ARGV[8])
end
for i = 17, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', job, ARGV[i])
  else
    redis.call('HSET', job, ARGV[i], ARGV[i + 1])
  end
end
redis.call('HSET', job, 'state', target, 'op', ARGV[11])

local id = redis.call('HGET', job, 'id')
for i, state in ipairs(states) do
  if state == current and current ~= target then
    redis.call('ZREM', KEYS[i + 1], id)
  end
  if state == target then
    redis.call('ZADD', KEYS[i + 1], now, id)
    if final[target] then
      redis.call('ZREMRANGEBYSCORE', KEYS[i + 1], '-inf', now - tonumber(ARGV[4]) * 1000)
    end
  end
end
if ARGV[10] ~= '' then
  redis.call('ZADD', KEYS[8], ARGV[10], id)
  redis.call('SET', KEYS[9], ARGV[12], 'NX')
end
redis.call('XADD', KEYS[11], 'MAXLEN', '~', ARGV[15], '*', 't', 'state', 'd', ARGV[14])
if final[target] then
  redis.call('EXPIRE', job, ARGV[4])
  redis.call('EXPIRE', KEYS[11], ARGV[4])
  if ARGV[13] == '1' then
    redis.call('ZADD', KEYS[10], now + tonumber(ARGV[4]) * 1000, id)
  end
  redis.call('PUBLISH', ARGV[16], id)
  if redis.call('HEXISTS', job, 'callback_url') == 1 then
    redis.call('ZADD', KEYS[12], now, id)
    redis.call('HSET', job, 'callback', '{"status":"pending"}')
  end
else
  redis.call('PERSIST', job)
end
return reply('ok')
