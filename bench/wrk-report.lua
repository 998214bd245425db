-- Prints a JSON summary after a wrk run: requests/s, errors, and latency
-- percentiles in microseconds.
done = function(summary, latency, requests)
  local s = summary.duration / 1e6
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format('{"requests":%d,"seconds":%f,"rps":%f,"errors":%d,"percentiles":{',
    summary.requests, s, summary.requests / s, errors))
  local ps = {50, 75, 90, 95, 99, 99.5, 99.9, 99.99}
  for i, p in ipairs(ps) do
    io.write(string.format('"%s":%d', p, latency:percentile(p)))
    if i < #ps then io.write(",") end
  end
  io.write("}}\n")
end
