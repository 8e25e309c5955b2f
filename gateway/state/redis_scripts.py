"""The Lua scripts behind RedisCounters. Redis runs a script atomically, so N gateway replicas
checking and adding to the same counters enforce one limit.

Key layout (``P`` is the prefix, ``gateway`` by default):
- ``P:{limit.key}:{bucket}`` — one fixed bucket of a sliding window (``bucket = now // window``),
  expiring 2 windows + 1 s after its last write: the current and the previous bucket are read.
- ``P:{limit.key}`` — a fixed total: a budget's period (``budget:key:research:2025-06``, expires
  400 days after its last write; ``...:total`` never), a gauge (``max_parallel_requests``: no
  expiry) or an ``alert:`` marker (400 days).
- ``P:reconciled:{batch}`` — a reconciliation batch already applied (1 day), so a batch sent
  twice (its answer was lost) is counted once.
"""

from __future__ import annotations

# KEYS: per limit its current key, then — sliding limits only — its previous bucket's key.
# ARGV[1]: the number of limits n; then 5 per limit: weight of the previous bucket (-1 for a
# fixed total), cap, amount, ttl in seconds (0: none), clamp at 0 (1 for fixed totals).
# Returns {blocked, prev1, curr1, prev2, curr2, ...}: blocked is 0 when every limit allows the
# request (and then every amount has been added), else the 1-based index of the first limit
# that refuses (and nothing has been added); the values are those read before adding.
RESERVE = """
local n = tonumber(ARGV[1])
local out = {0}
local blocked = 0
local k = 1
for i = 1, n do
  local a = 2 + (i - 1) * 5
  local weight = tonumber(ARGV[a])
  local cap = tonumber(ARGV[a + 1])
  local amount = tonumber(ARGV[a + 2])
  local curr = redis.call('GET', KEYS[k]) or '0'
  local prev = '0'
  k = k + 1
  local used = tonumber(curr)
  if weight >= 0 then
    prev = redis.call('GET', KEYS[k]) or '0'
    k = k + 1
    used = tonumber(prev) * weight + used
  end
  out[#out + 1] = prev
  out[#out + 1] = curr
  if blocked == 0 and amount > 0 and used + amount > cap + 1e-9 then
    blocked = i
  end
end
if blocked == 0 then
  k = 1
  for i = 1, n do
    local a = 2 + (i - 1) * 5
    local weight = tonumber(ARGV[a])
    local ttl = tonumber(ARGV[a + 3])
    if tonumber(ARGV[a + 2]) ~= 0 then
      local v = tonumber(redis.call('INCRBYFLOAT', KEYS[k], ARGV[a + 2]))
      if ARGV[a + 4] == '1' and v < 0 then
        redis.call('SET', KEYS[k], '0', 'KEEPTTL')
      end
      if ttl > 0 then
        redis.call('EXPIRE', KEYS[k], ttl)
      end
    end
    if weight >= 0 then k = k + 2 else k = k + 1 end
  end
end
out[1] = blocked
return out
"""

# KEYS: [marker,] then the counters to change. ARGV[1]: marker ttl in seconds, 0 without a
# marker; then 3 per counter: amount, ttl (0: leave as is), clamp at 0 ('1'/'0').
# With a marker: does nothing and returns 0 when the marker exists (the batch was applied
# already), else sets it and applies the batch. Returns 1 when applied.
ADJUST = """
local first = 1
local marker_ttl = tonumber(ARGV[1])
if marker_ttl > 0 then
  if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', marker_ttl) then
    return 0
  end
  first = 2
end
for i = first, #KEYS do
  local a = 2 + (i - first) * 3
  local v = tonumber(redis.call('INCRBYFLOAT', KEYS[i], ARGV[a]))
  if ARGV[a + 2] == '1' and v < 0 then
    redis.call('SET', KEYS[i], '0', 'KEEPTTL')
  end
  local ttl = tonumber(ARGV[a + 1])
  if ttl > 0 then
    redis.call('EXPIRE', KEYS[i], ttl)
  end
end
return 1
"""
