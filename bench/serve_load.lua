-- wrk script for bench/serve_load.sh: POSTs the JSON bodies of the file
-- named by GATI_BODIES (one per line) in turn, and prints one RESULT line
-- with throughput, latency percentiles and errors.
local bodies = {}
for line in io.lines(os.getenv("GATI_BODIES")) do
  bodies[#bodies + 1] = line
end
local next_body = math.random(#bodies)
local headers = { ["Content-Type"] = "application/json" }

request = function()
  next_body = next_body % #bodies + 1
  return wrk.format("POST", nil, headers, bodies[next_body])
end

done = function(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.timeout + e.status
  io.write(string.format(
    "RESULT requests=%d errors=%d rps=%.2f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f\n",
    summary.requests, errors, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000))
end
