-- bench/loadtest.lua — wrk script for tools/loadtest.sh: POSTs real INSPIRE records to the
-- coreness endpoint, round-robin. Each line of $LOADTEST_BODIES is one JSON record used as the
-- request body as is (the API reads "title" and "abstract" and ignores the other fields).
local bodies = {}
local path = os.getenv("LOADTEST_BODIES")
for line in io.lines(path) do
  if #line > 0 then bodies[#bodies + 1] = line end
end
local n = 0
local bad = 0

function setup(thread)
  thread:set("offset", math.random(1, 1000))
end

function request()
  n = n + 1
  local body = bodies[((n + (offset or 0)) % #bodies) + 1]
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
  if status ~= 200 then
    bad = bad + 1
    if bad <= 3 then io.stderr:write("loadtest: HTTP " .. status .. ": " .. body .. "\n") end
  end
end
