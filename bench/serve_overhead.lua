-- wrk script for bench/serve_overhead.py: POSTs the bodies of the file named
-- by GATI_BODIES in turn. Each line is "HEADER_LENGTH HEX": the body in hex,
-- and the binary extension's JSON header length (0: a JSON body).
local bodies, lengths = {}, {}
for line in io.lines(os.getenv("GATI_BODIES")) do
  local length, hex = line:match("^(%d+) (%x+)$")
  bodies[#bodies + 1] = hex:gsub("%x%x", function(byte) return string.char(tonumber(byte, 16)) end)
  lengths[#lengths + 1] = tonumber(length)
end
local next_body = math.random(#bodies)

request = function()
  next_body = next_body % #bodies + 1
  local headers = {}
  if lengths[next_body] > 0 then
    headers["Content-Type"] = "application/octet-stream"
    headers["Inference-Header-Content-Length"] = tostring(lengths[next_body])
  else
    headers["Content-Type"] = "application/json"
  end
  return wrk.format("POST", nil, headers, bodies[next_body])
end
