-- wrk script: POST a distinct Telegram update per request (update_id counts up per thread), so
-- every request is a new update that careloop must persist. The updates are edited messages,
-- which careloop stores, acknowledges and then ignores: the benchmark measures the ingest path,
-- not the conversation engine.
local counter = 0
base = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("base", threads * 100000000)
end
function request()
  counter = counter + 1
  local id = base + counter
  local body = string.format(
    '{"update_id":%d,"edited_message":{"message_id":%d,"date":1700000000,"edit_date":1700000001,' ..
    '"chat":{"id":%d,"type":"private","first_name":"P"},"from":{"id":%d,"is_bot":false,"first_name":"P"},"text":"edited"}}',
    id, id, 1000 + (id % 500), 1000 + (id % 500))
  return wrk.format("POST", "/channels/telegram/webhook", {
    ["Content-Type"] = "application/json",
    ["X-Telegram-Bot-Api-Secret-Token"] = "bench-secret-0123456789",
  }, body)
end
