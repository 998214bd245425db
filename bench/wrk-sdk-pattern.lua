-- The botocore/JS pattern: PUT a token, GET the role listing, GET the
-- credentials, each on a fresh connection (Connection: close).
local step = 0
local token = "none"

request = function()
  step = step % 3 + 1
  if step == 1 then
    return wrk.format("PUT", "/latest/api/token",
      {["X-aws-ec2-metadata-token-ttl-seconds"] = "21600", ["Connection"] = "close"})
  elseif step == 2 then
    return wrk.format("GET", "/latest/meta-data/iam/security-credentials/",
      {["X-aws-ec2-metadata-token"] = token, ["Connection"] = "close"})
  else
    return wrk.format("GET", "/latest/meta-data/iam/security-credentials/demo",
      {["X-aws-ec2-metadata-token"] = token, ["Connection"] = "close"})
  end
end

response = function(status, headers, body)
  if step == 1 and status == 200 then
    token = body
  end
end
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
