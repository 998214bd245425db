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
