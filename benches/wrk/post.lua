wrk.method = "POST"
wrk.body = '{"model":"claude-test","max_tokens":16,"messages":[{"role":"user","content":"Hello"}]}'
wrk.headers["x-api-key"] = "sk-bench"
wrk.headers["anthropic-version"] = "2023-06-01"
wrk.headers["content-type"] = "application/json"
