-- Move one job to another state in one atomic step, keeping the per-state indexes in step.
-- Illegal moves are refused (a final job never becomes live again through this script), and a
-- worker whose run token is no longer the record's (its job was recovered by another worker) is
-- fenced out.
--
-- KEYS[1] predq:job:{id}   KEYS[2..7] predq:state:{state} in JobState order   KEYS[8] the arq queue
-- KEYS[9] arq:job:{id}     KEYS[10] predq:outputs:expiry (the jobs whose output files expire)
-- KEYS[11] predq:events:{id}   KEYS[12] predq:callbacks (the outbox of completion callbacks)
-- KEYS[13] arq:in-progress:{id} (arq's claim of the job)   KEYS[14] arq:retry:{id} (arq's try count)
-- ARGV[1] allowed current states, space separated   ARGV[2] target state   ARGV[3] now (ms)
-- ARGV[4] retention (s): the record's TTL once final; live records never expire
-- ARGV[5] expected run token ("" = any); a move to a final state with one is the running attempt's
--         own end: arq's entries for the job (queue entry, payload, try count, and its claim if
--         the claim is that worker's: worker/claim.py) go with it, and that worker skips arq's
--         own finish (worker/arq_patches.py)
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
-- ARGV[17] "" or, with a start, the lease (ms): arq's long claim (KEYS[13]) is shortened to it and
--          the job's queue entry made due when it runs out (ARGV[18], the score), as the
--          worker's lease renewals then keep doing
-- ARGV[19..] field/value pairs; an empty value deletes
-- Returns {status, current state, field, value, ...}; status is ok, missing, illegal or stale
local states = {'queued', 'running', 'retrying', 'succeeded', 'failed', 'canceled'}
local final = {succeeded = true, failed = true, canceled = true}
local job = KEYS[1]
-- Everything this call reads, in one command (each redis.call costs Redis time of its own).
local f = redis.call('HMGET', job, 'state', 'op', 'run', 'id', 'resume', 'prediction_id',
  'run_started_at', 'attempts', 'recoveries', 'started_at', 'errors', 'callback_url',
  'create_unconfirmed_at', 'worker')
local current = f[1]
if not current then
  return {'missing', ''}
end
local function reply(status)
  if ARGV[9] == '1' then
    return {status, current, unpack(redis.call('HGETALL', job))}
  end
  return {status, current}
end
if f[2] == ARGV[11] then
  return reply('ok')
end
local allowed = false
for state in string.gmatch(ARGV[1], '%S+') do
  if state == current then allowed = true end
end
if not allowed then
  return reply('illegal')
end
if ARGV[5] ~= '' and f[3] ~= ARGV[5] then
  return reply('stale')
end

local target = ARGV[2]
local now = tonumber(ARGV[3])
-- The record's changes, written at the end with one HSET and one HDEL (false: delete); a later
-- change of a field wins, as the separate writes did.
local changes = {}
local order = {}
local function change(field, value)
  if changes[field] == nil then order[#order + 1] = field end
  changes[field] = value
end
if ARGV[6] ~= '' then
  if current == 'running' then
    change('recoveries', (tonumber(f[9]) or 0) + 1)
    -- The dead worker may have created a prediction without recording it: look before creating.
    if f[7] and not f[6] and not f[13] then
      change('create_unconfirmed_at', f[7])
    end
  elseif f[5] then
    change('resume', false)
  else
    change('attempts', (tonumber(f[8]) or 0) + 1)
  end
  change('run', ARGV[6])
  change('run_started_at', ARGV[7])
  if not f[10] then change('started_at', ARGV[7]) end
end
if ARGV[8] ~= '' then
  local errors = f[11]
  if not errors or errors == '[]' then
    errors = '[' .. ARGV[8] .. ']'
  else
    errors = string.sub(errors, 1, -2) .. ',' .. ARGV[8] .. ']'
  end
  change('errors', errors)
  change('error', ARGV[8])
end
for i = 19, #ARGV, 2 do
  change(ARGV[i], ARGV[i + 1] ~= '' and ARGV[i + 1])
end
change('state', target)
change('op', ARGV[11])
if final[target] and f[12] then
  change('callback', '{"status":"pending"}')
end
local sets, dels = {}, {}
for _, field in ipairs(order) do
  if changes[field] then
    sets[#sets + 1] = field
    sets[#sets + 1] = changes[field]
  else
    dels[#dels + 1] = field
  end
end
redis.call('HSET', job, unpack(sets))
if #dels > 0 then
  redis.call('HDEL', job, unpack(dels))
end

local id = f[4]
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
if ARGV[6] ~= '' and ARGV[17] ~= '' then
  redis.call('PEXPIRE', KEYS[13], ARGV[17])
  redis.call('ZADD', KEYS[8], 'XX', ARGV[18], id)
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
  if ARGV[5] ~= '' then
    redis.call('ZREM', KEYS[8], id)
    redis.call('DEL', KEYS[9], KEYS[14])
    -- (another worker may have claimed the job since this one's lease lapsed: its arq run ends it)
    if f[14] and redis.call('GET', KEYS[13]) == f[14] then
      redis.call('DEL', KEYS[13])
    end
  end
  if f[12] then
    redis.call('ZADD', KEYS[12], now, id)
  end
elseif final[current] then  -- (not a move this script allows; live records never expire)
  redis.call('PERSIST', job)
end
return reply('ok')
