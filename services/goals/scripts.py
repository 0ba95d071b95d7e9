"""The Lua scripts that read and write the goal graph in one step each.

Redis runs a script without interleaving any other command, which is what makes the cycle
check atomic: the check and the write it allows happen together, so two concurrent writes
cannot each pass the check and together close a cycle. The scripts derive key names from the
graph prefix (``ARGV[1]``) and touch only keys of the ``{g}`` hash tag; ``KEYS[1]`` (the
outbox) names that slot for Redis Cluster.
"""

from __future__ import annotations

from typing import Final

UPSERT_GOALS: Final = r"""
local P = ARGV[1]
local items = cjson.decode(ARGV[2])
local max_walk = tonumber(ARGV[3])
local replay = ARGV[5] == 'replay'

-- 0. Redis is still the server the store was last caught up with: after a restart that may
--    have lost writes, the store must replay the stream first, or a goal would get a version
--    (and event ids) it already had.
if ARGV[4] ~= '' and not string.find(redis.call('INFO', 'server'), 'run_id:' .. ARGV[4], 1, true) then
  return {'stale'}
end

-- 1. Every goal is still at the version the caller read (else it retries), and a resent
--    check-in is recognised before anything is written.
for _, it in ipairs(items) do
  local old = redis.call('GET', P .. 'goal:' .. it.id)
  local version = 0
  if old then version = cjson.decode(old).version end
  if version ~= it.expect then return {'conflict', it.id} end
  if it.check_in_id and redis.call('SISMEMBER', P .. 'checkin-ids:' .. it.id, it.check_in_id) == 1 then
    return {'duplicate', it.id}
  end
end

-- 2. No link of the batch closes a cycle, with the batch's own links counted in. (A replay
--    writes what was checked when it was first written.)
local new_edges = {up = {}, deps = {}}
for _, it in ipairs(items) do
  if it.links then
    local parents = {}
    for _, pw in ipairs(it.parents) do parents[#parents + 1] = pw[1] end
    new_edges.up[it.id] = parents
    new_edges.deps[it.id] = it.deps
  end
end
local function neighbours(kind, node)
  local overlay = new_edges[kind][node]
  if overlay then return overlay end
  if kind == 'up' then return redis.call('HKEYS', P .. 'up:' .. node) end
  return redis.call('SMEMBERS', P .. 'deps:' .. node)
end
local function find_cycle(kind, id)
  local via, queue, head = {}, {}, 1
  for _, s in ipairs(new_edges[kind][id]) do
    if via[s] == nil then via[s] = false; queue[#queue + 1] = s end
  end
  while head <= #queue do
    local node = queue[head]
    head = head + 1
    if head > max_walk then return {'too_large', id} end
    for _, n in ipairs(neighbours(kind, node)) do
      if n == id then
        local back, at = {}, node
        while at do back[#back + 1] = at; at = via[at] end
        local path = {id}
        for i = #back, 1, -1 do path[#path + 1] = back[i] end
        path[#path + 1] = id
        return path
      end
      if via[n] == nil then via[n] = node; queue[#queue + 1] = n end
    end
  end
  return nil
end
for _, it in ipairs(items) do
  if it.links and not replay then
    for _, kind in ipairs({'up', 'deps'}) do
      local found = find_cycle(kind, it.id)
      if found then
        if found[1] == 'too_large' then return found end
        local answer = {'cycle', kind}
        for _, g in ipairs(found) do answer[#answer + 1] = g end
        return answer
      end
    end
  end
end

-- 3. Write: links (both directions), indexes, the goal, and its change record in the outbox
--    (not for a replay: its events are in the stream already).
local dirty = {}  -- goals whose rolled-up progress may have moved
for _, it in ipairs(items) do
  local key = P .. 'goal:' .. it.id
  local old = redis.call('GET', key)
  dirty[#dirty + 1] = it.id
  if it.own then redis.call('HSET', P .. 'own', it.id, it.own) else redis.call('HDEL', P .. 'own', it.id) end
  if it.links then
    local up = P .. 'up:' .. it.id
    for _, p in ipairs(redis.call('HKEYS', up)) do
      redis.call('HDEL', P .. 'down:' .. p, it.id)
      dirty[#dirty + 1] = p
    end
    redis.call('DEL', up)
    for _, pw in ipairs(it.parents) do
      redis.call('HSET', up, pw[1], pw[2])
      redis.call('HSET', P .. 'down:' .. pw[1], it.id, pw[2])
      dirty[#dirty + 1] = pw[1]
    end
    local deps = P .. 'deps:' .. it.id
    for _, d in ipairs(redis.call('SMEMBERS', deps)) do redis.call('SREM', P .. 'rdeps:' .. d, it.id) end
    redis.call('DEL', deps)
    for _, d in ipairs(it.deps) do
      redis.call('SADD', deps, d)
      redis.call('SADD', P .. 'rdeps:' .. d, it.id)
    end
  end
  for _, k in ipairs(it.idx_del) do redis.call('ZREM', P .. k, it.id) end
  for _, k in ipairs(it.idx_add) do redis.call('ZADD', P .. k, 0, it.id) end
  redis.call('ZADD', P .. 'ids', 0, it.id)
  redis.call('SET', key, it.doc)
  local record = '{"goal_id":' .. cjson.encode(it.id) .. ',"before":' .. (old or 'null')
    .. ',"after":' .. it.doc
  if it.check_in then
    redis.call('LPUSH', P .. 'checkins:' .. it.id, it.check_in)
    redis.call('SADD', P .. 'checkin-ids:' .. it.id, it.check_in_id)
    record = record .. ',"check_in":' .. it.check_in
  end
  if not replay then redis.call('RPUSH', KEYS[1], record .. '}') end
end

-- 4. Roll progress up: recompute each goal written (and each parent it joined or left), then every goal
--    above one whose progress moved. A goal with contributors of known progress has their
--    weighted mean, clamped to 0-100; any other goal its own progress, if known.
local progress = P .. 'progress'
local head, steps = 1, 0
while head <= #dirty do
  local node = dirty[head]
  head = head + 1
  steps = steps + 1
  if steps > max_walk then break end
  local below = redis.call('HGETALL', P .. 'down:' .. node)
  local total, weighted = 0, 0
  for j = 1, #below, 2 do
    local value = redis.call('HGET', progress, below[j])
    if value then
      local w = tonumber(below[j + 1])
      total = total + w
      weighted = weighted + w * tonumber(value)
    end
  end
  local value
  if total > 0 then
    value = tostring(math.min(100, math.max(0, weighted / total)))
  else
    value = redis.call('HGET', P .. 'own', node)
  end
  if value ~= redis.call('HGET', progress, node) then
    if value then redis.call('HSET', progress, node, value) else redis.call('HDEL', progress, node) end
    for _, parent in ipairs(redis.call('HKEYS', P .. 'up:' .. node)) do dirty[#dirty + 1] = parent end
  end
end
return {'ok'}
"""
"""Check and write a batch of goals, and roll their progress up: ``ARGV`` = graph prefix,
items (JSON), walk limit, the Redis ``run_id`` the store is caught up with (empty: not
checked), and ``write`` or ``replay`` (a change from the stream: no cycle check, no outbox).

Answers ``ok``, ``stale`` (Redis restarted: catch up, then retry), ``conflict <id>`` (read
again and retry), ``duplicate <id>`` (a check-in id already recorded), ``cycle up|deps <id> …
<id>`` or ``too_large <id>``; nothing is written unless it answers ``ok``.
"""

IMPACT: Final = r"""
local P, start, max_nodes = ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('EXISTS', P .. 'goal:' .. start) == 0 then return false end
local visited, totals, out = {[start] = true}, {}, {}
local frontier, depth = {start}, 0
while #frontier > 0 do
  depth = depth + 1
  local next_level = {}
  for _, node in ipairs(frontier) do
    local ups = redis.call('HGETALL', P .. 'up:' .. node)
    for j = 1, #ups, 2 do
      local parent = ups[j]
      if not visited[parent] then
        visited[parent] = true
        local total = totals[parent]
        if total == nil then
          total = 0
          for _, w in ipairs(redis.call('HVALS', P .. 'down:' .. parent)) do total = total + tonumber(w) end
          totals[parent] = total
        end
        local share = 1
        if total > 0 then share = tonumber(ups[j + 1]) / total end
        out[#out + 1] = {parent, node, 'contributes_to', tostring(share), depth}
        next_level[#next_level + 1] = parent
      end
    end
    -- In id order: a set's own order is Redis's, and ties between shortest paths must not
    -- depend on it (goalwatch.goal_graph.impact_steps walks the same way).
    local dependents = redis.call('SMEMBERS', P .. 'rdeps:' .. node)
    table.sort(dependents)
    for _, dependent in ipairs(dependents) do
      if not visited[dependent] then
        visited[dependent] = true
        out[#out + 1] = {dependent, node, 'depends_on', '1', depth}
        next_level[#next_level + 1] = dependent
      end
    end
    if #out >= max_nodes then return {out, 1} end
  end
  frontier = next_level
end
return {out, 0}
"""
"""Breadth-first walk of what a goal's failure reaches: ``ARGV`` = prefix, goal, node limit.

Answers nil when there is no such goal, else ``{steps, truncated}``; each step is ``{goal, reached from, link, share, depth}``,
every goal once, by a shortest path: a goal's parents in the order of its contributes_to (a
hash of at most 50 fields keeps the order it was written in), its dependents in id order.
"""

UPSERT_DIRECTORY: Final = r"""
local kind, prefix, ids, versions = ARGV[1], ARGV[2], ARGV[3], ARGV[5]
local ordered = ARGV[4] == 'zset'
local items = cjson.decode(ARGV[6])
local run_id, mode, at = ARGV[7], ARGV[8], ARGV[9]

-- As for goals: the store is caught up with this very server, or it must replay first.
if run_id ~= '' and not string.find(redis.call('INFO', 'server'), 'run_id:' .. run_id, 1, true) then
  return {'stale'}
end

local function keep(it)
  redis.call('SET', prefix .. it.id, it.doc)
  if ordered then redis.call('ZADD', ids, 0, it.id) else redis.call('SADD', ids, it.id) end
end

if mode == 'replay' then
  -- A record from the stream, written where the store holds an older version or none.
  local applied = 0
  for _, it in ipairs(items) do
    if tonumber(redis.call('HGET', versions, it.id) or '0') < it.version then
      keep(it)
      redis.call('HSET', versions, it.id, it.version)
      applied = applied + 1
    end
  end
  return {'ok', applied}
end

local created, unchanged = 0, 0
for _, it in ipairs(items) do
  local old = redis.call('GET', prefix .. it.id)
  if old == it.doc then
    unchanged = unchanged + 1
  else
    if not old then created = created + 1 end
    keep(it)
    local version = redis.call('HINCRBY', versions, it.id, 1)
    redis.call('RPUSH', KEYS[1], '{"kind":' .. cjson.encode(kind) .. ',"id":' .. cjson.encode(it.id)
      .. ',"version":' .. version .. ',"at":' .. cjson.encode(at) .. ',"doc":' .. it.doc .. '}')
  end
end
return {'ok', created, unchanged}
"""
"""Write people or org units with their change records (``KEYS[1]``, the directory outbox),
or replay them from the stream: ``ARGV`` = kind (``person``, ``org_unit``), document key
prefix, ids key, ``set`` or ``zset``, versions hash, items (JSON: ``id``, ``doc``, and
``version`` in a replay), the Redis ``run_id`` the store is caught up with (empty: not
checked), ``write`` or ``replay``, and the time of the change.

A record identical to the one stored is left alone and owes no event. Answers ``ok
<created> <unchanged>`` (a write), ``ok <applied>`` (a replay) or ``stale`` (Redis
restarted: catch up, then retry); nothing is written unless it answers ``ok``.
"""
