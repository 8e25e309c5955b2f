-- wrk script: POST a JSON body, then print one machine-readable result line.
--
-- Body and path come from the script arguments (`wrk ... -s post.lua URL -- BODY [PATH]`) or,
-- when absent, from the environment (WRK_BODY, WRK_PATH). The path defaults to the URL's path.
--
-- done() prints:  BENCH_RESULT {"requests":N,"duration_us":N,"bytes":N,"p50_us":N,...,"errors":{...}}
-- Latencies are in microseconds; errors.status counts responses with a status >= 400.

function init(args)
  local body = args[1] or os.getenv("WRK_BODY")
  if body == nil or body == "" then
    error("post.lua needs a JSON body: wrk ... -- BODY [PATH], or WRK_BODY")
  end
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
  local path = args[2] or os.getenv("WRK_PATH")
  if path ~= nil and path ~= "" then
    wrk.path = path
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
