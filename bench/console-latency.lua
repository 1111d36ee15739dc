-- wrk script for bench/console.sh: sends the session cookie, optionally spreads detail
-- requests over record ids 1..IDS, and prints the latency percentiles in milliseconds.
local ids = tonumber(os.getenv("IDS") or "0")
local base = os.getenv("PATH_BASE") or "/"
wrk.headers["Cookie"] = os.getenv("COOKIE")

request = function()
  if ids > 0 then
    return wrk.format("GET", base .. math.random(1, ids))
  end
  return wrk.format("GET", base)
end

done = function(summary, latency, requests)
  io.write(string.format("p50_ms=%.1f p95_ms=%.1f p99_ms=%.1f requests=%d errors=%d\n",
    latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout))
end
