-- Shared by every wrk run of the benchmarks: count responses by status in each thread and
-- print one JSON line (WRK_JSON {...}) with throughput and latency percentiles at the end.
-- Other scripts `dofile` this one and may set `bench_request` / `bench_delay`.

local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

statuses = {}
bare_responses = 0

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if headers["X-Bench-Bare"] then bare_responses = bare_responses + 1 end
  if bench_on_response then bench_on_response(status, headers, body) end
end

local function json_statuses(all)
  local parts = {}
  for status, n in pairs(all) do
    table.insert(parts, string.format('"%d": %d', status, n))
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end

function done(summary, latency, requests)
  local all = {}
  for _, thread in ipairs(threads) do
    local counts = thread:get("statuses")
    for status, n in pairs(counts) do all[status] = (all[status] or 0) + n end
  end
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "seconds": %.3f, "rps": %.2f, "p50": %d, "p95": %d, "p99": %d, ' ..
    '"max": %d, "mean": %.1f, "errors": {"connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d}, "statuses": %s}\n',
    summary.requests, seconds, summary.requests / seconds, latency:percentile(50),
    latency:percentile(95), latency:percentile(99), latency.max, latency.mean, e.connect, e.read,
    e.write, e.status, e.timeout, json_statuses(all)))
end
