-- POST one fixed body on every request: the body the benchmark wrote to a file.
--
--   wrk -t1 -c16 -d10s --latency -s bench/wrk/post.lua URL -- BODY_FILE [CONTENT_TYPE [HEADER]]
--
-- wrk runs init(args) in each of its threads before it formats the request, so the body is
-- read once per thread, never per request. Non-2xx answers and socket errors are counted by
-- wrk itself ("Non-2xx or 3xx responses", "Socket errors") and parsed by bench/serving.py.

function init(args)
   local path = args[1]
   if path == nil then
      error("usage: wrk ... -s post.lua URL -- BODY_FILE [CONTENT_TYPE]")
   end
   local file = assert(io.open(path, "rb"))
   wrk.method = "POST"
   wrk.body = file:read("*a")
   file:close()
   wrk.headers["Content-Type"] = args[2] or "application/json"
   if args[3] ~= nil then  -- one more header, "Name: value" (an API key)
      local name, value = args[3]:match("^([^:]+):%s*(.*)$")
      wrk.headers[name] = value
   end
end
