//! The Redis backend: many worker processes on many machines.
//!
//! Layout (all keys share one hash tag, `{prefix}`, so a cluster keeps them on one node):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{p}:stream` | stream, consumer group `workers` | one entry per job ready to run; delivered entries stay pending (leased) until acknowledged |
//! | `{p}:delayed` | sorted set | rescheduled job ids, scored by when they are due (Redis clock, ms) |
//! | `{p}:jobs` | hash | id -> the job (JSON), while it is not finished |
//! | `{p}:runs`, `{p}:failures`, `{p}:enqueued` | hashes | id -> runs, failed runs, enqueue time (ms) |
//! | `{p}:results` | hash | id -> the outcome (JSON), written once (`HSETNX`) |
//! | `{p}:log` | stream | one entry per outcome stored, in order (the outcomes' cursor) |
//! | `{p}:counts` | hash | done, dead, rescheduled |
//! | `{p}:cancelled` | set | jobs cancelled before they ran |
//!
//! Every change of a job's state is one Lua script (sent by `EVALSHA`, loaded on `NOSCRIPT`),
//! timed by the Redis clock (`TIME`): storing an outcome, acknowledging the entry and
//! forgetting the job happen together or not at all. A worker that dies leaves its entries
//! pending; another worker claims them (`XAUTOCLAIM`) once they have been idle for a lease, and
//! running workers renew their leases (`XCLAIM`). The connection reconnects by itself; while
//! Redis is away the operations fail with [`QueueError::Store`] and the workers retry.
//!
//! Why not `apalis-redis`: the outcome must be stored exactly once and atomically with the
//! acknowledgement, a rate limit must reschedule without using up an attempt, and the
//! reported problems (completed jobs never cleaned up, recovery blocked by a duplicate worker
//! id, stuck after a Redis restart) touch exactly what this queue promises; these few scripts
//! keep those rules in one place that the tests check against a real Redis.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::{Script, Value};

use crate::backend::{Backend, Counts, Delivery, QueueError};
use crate::job::{Job, Outcome};

const GROUP: &str = "workers";

/// How many delayed jobs one look moves back to the stream.
const PROMOTE_BATCH: usize = 256;

const NOW: &str = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000)";

fn script(body: &str) -> Script {
    Script::new(&format!("{NOW}\n{body}"))
}

/// Jobs, leases and outcomes in Redis (clones share one connection, which reconnects by
/// itself). The Redis URL's password never shows in `Debug`.
#[derive(Clone)]
pub struct RedisBackend {
    con: ConnectionManager,
    keys: Keys,
    scripts: std::sync::Arc<Scripts>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("prefix", &self.keys.prefix)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
struct Keys {
    prefix: String,
    stream: String,
    delayed: String,
    jobs: String,
    runs: String,
    failures: String,
    enqueued: String,
    results: String,
    log: String,
    counts: String,
    cancelled: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        let k = |name: &str| format!("{{{prefix}}}:{name}");
        Self {
            prefix: prefix.to_owned(),
            stream: k("stream"),
            delayed: k("delayed"),
            jobs: k("jobs"),
            runs: k("runs"),
            failures: k("failures"),
            enqueued: k("enqueued"),
            results: k("results"),
            log: k("log"),
            counts: k("counts"),
            cancelled: k("cancelled"),
        }
    }
}

struct Scripts {
    enqueue: Script,
    promote: Script,
    take: Script,
    complete: Script,
    reschedule: Script,
    cancel: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            // KEYS: jobs results stream enqueued; ARGV: id json
            enqueue: script(
                "if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
                 if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
                 redis.call('HSET', KEYS[4], ARGV[1], now)
                 redis.call('XADD', KEYS[3], '*', 'id', ARGV[1])
                 return 1",
            ),
            // KEYS: delayed stream; ARGV: max
            promote: script(
                "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[1])
                 for _, id in ipairs(due) do
                   redis.call('ZREM', KEYS[1], id)
                   redis.call('XADD', KEYS[2], '*', 'id', id)
                 end
                 return #due",
            ),
            // KEYS: jobs runs failures enqueued cancelled stream results
            // ARGV: entry id group
            take: script(
                "local job = redis.call('HGET', KEYS[1], ARGV[2])
                 local cancelled = redis.call('SISMEMBER', KEYS[5], ARGV[2]) == 1
                 if (not job) or cancelled or redis.call('HEXISTS', KEYS[7], ARGV[2]) == 1 then
                   redis.call('XACK', KEYS[6], ARGV[3], ARGV[1])
                   redis.call('XDEL', KEYS[6], ARGV[1])
                   if cancelled then
                     redis.call('SREM', KEYS[5], ARGV[2])
                     redis.call('HDEL', KEYS[1], ARGV[2])
                     redis.call('HDEL', KEYS[2], ARGV[2])
                     redis.call('HDEL', KEYS[3], ARGV[2])
                     redis.call('HDEL', KEYS[4], ARGV[2])
                   end
                   return false
                 end
                 local runs = redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
                 local failures = tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '0')
                 local enq = tonumber(redis.call('HGET', KEYS[4], ARGV[2]) or tostring(now))
                 return {job, runs, failures, now - enq}",
            ),
            // KEYS: results log stream jobs runs failures enqueued counts
            // ARGV: id entry json kind group
            complete: script(
                "local first = redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[3])
                 if first == 1 then
                   redis.call('XADD', KEYS[2], '*', 'id', ARGV[1])
                   redis.call('HINCRBY', KEYS[8], ARGV[4], 1)
                 end
                 redis.call('XACK', KEYS[3], ARGV[5], ARGV[2])
                 redis.call('XDEL', KEYS[3], ARGV[2])
                 redis.call('HDEL', KEYS[4], ARGV[1])
                 redis.call('HDEL', KEYS[5], ARGV[1])
                 redis.call('HDEL', KEYS[6], ARGV[1])
                 redis.call('HDEL', KEYS[7], ARGV[1])
                 return first",
            ),
            // KEYS: delayed failures counts stream results
            // ARGV: id entry delay_ms failed group
            reschedule: script(
                "redis.call('XACK', KEYS[4], ARGV[5], ARGV[2])
                 redis.call('XDEL', KEYS[4], ARGV[2])
                 if redis.call('HEXISTS', KEYS[5], ARGV[1]) == 1 then return 0 end
                 redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
                 if ARGV[4] == '1' then redis.call('HINCRBY', KEYS[2], ARGV[1], 1) end
                 redis.call('HINCRBY', KEYS[3], 'rescheduled', 1)
                 return 1",
            ),
            // KEYS: jobs delayed cancelled results runs; ARGV: id
            // Not started: never run, or waiting in the delayed set.
            cancel: script(
                "if redis.call('HEXISTS', KEYS[4], ARGV[1]) == 1 then return 0 end
                 if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
                 local waiting = redis.call('ZREM', KEYS[2], ARGV[1]) == 1
                 local runs = tonumber(redis.call('HGET', KEYS[5], ARGV[1]) or '0')
                 redis.call('SADD', KEYS[3], ARGV[1])
                 if waiting or runs == 0 then return 1 end
                 return 0",
            ),
        }
    }
}

fn store(e: redis::RedisError) -> QueueError {
    QueueError::Store(e.to_string())
}

impl RedisBackend {
    /// Connects to `url` (`redis://host:port/db`, `rediss://` for TLS) and keeps the queue's
    /// keys under `prefix`. Fails if Redis cannot be reached now.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, QueueError> {
        let client = redis::Client::open(url).map_err(store)?;
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(2))
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(10)));
        let con = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(store)?;
        let me = Self {
            con,
            keys: Keys::new(prefix),
            scripts: std::sync::Arc::new(Scripts::new()),
        };
        me.ensure_group().await?;
        Ok(me)
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.keys.prefix
    }

    /// Deletes every key of this queue (for tests and fresh starts).
    pub async fn clear(&self) -> Result<(), QueueError> {
        let k = &self.keys;
        let mut con = self.con.clone();
        redis::cmd("DEL")
            .arg(&k.stream)
            .arg(&k.delayed)
            .arg(&k.jobs)
            .arg(&k.runs)
            .arg(&k.failures)
            .arg(&k.enqueued)
            .arg(&k.results)
            .arg(&k.log)
            .arg(&k.counts)
            .arg(&k.cancelled)
            .query_async::<()>(&mut con)
            .await
            .map_err(store)?;
        self.ensure_group().await
    }

    async fn ensure_group(&self) -> Result<(), QueueError> {
        let mut con = self.con.clone();
        let r = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.keys.stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async::<()>(&mut con)
            .await;
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(store(e)),
        }
    }

    /// Takes the entry for a worker: the job, or `None` when it is gone (finished or
    /// cancelled; the entry is acknowledged then).
    async fn take(&self, entry: &StreamId) -> Result<Option<Delivery>, QueueError> {
        let Some(id) = entry.get::<String>("id") else {
            return Ok(None);
        };
        let k = &self.keys;
        let mut con = self.con.clone();
        let r: Option<(String, u32, u32, i64)> = self
            .scripts
            .take
            .key(&k.jobs)
            .key(&k.runs)
            .key(&k.failures)
            .key(&k.enqueued)
            .key(&k.cancelled)
            .key(&k.stream)
            .key(&k.results)
            .arg(&entry.id)
            .arg(&id)
            .arg(GROUP)
            .invoke_async(&mut con)
            .await
            .map_err(store)?;
        let Some((json, runs, failures, age_ms)) = r else {
            return Ok(None);
        };
        let job: Job = serde_json::from_str(&json)
            .map_err(|e| QueueError::Corrupt(format!("job {id}: {e}")))?;
        Ok(Some(Delivery {
            job,
            runs,
            failures,
            age: Duration::from_millis(age_ms.max(0) as u64),
            token: entry.id.clone(),
        }))
    }
}

impl Backend for RedisBackend {
    async fn enqueue(&self, jobs: Vec<Job>) -> Result<usize, QueueError> {
        crate::check_ids(&jobs)?;
        let k = &self.keys;
        let mut con = self.con.clone();
        let mut added = 0;
        for job in &jobs {
            let json = serde_json::to_string(job)
                .map_err(|e| QueueError::Corrupt(format!("job {}: {e}", job.id)))?;
            let n: i64 = self
                .scripts
                .enqueue
                .key(&k.jobs)
                .key(&k.results)
                .key(&k.stream)
                .key(&k.enqueued)
                .arg(&job.id)
                .arg(json)
                .invoke_async(&mut con)
                .await
                .map_err(store)?;
            added += n as usize;
        }
        Ok(added)
    }

    async fn reserve(
        &self,
        consumer: &str,
        lease: Duration,
    ) -> Result<Option<Delivery>, QueueError> {
        let k = &self.keys;
        let mut con = self.con.clone();
        let _: i64 = self
            .scripts
            .promote
            .key(&k.delayed)
            .key(&k.stream)
            .arg(PROMOTE_BATCH)
            .invoke_async(&mut con)
            .await
            .map_err(store)?;
        loop {
            // Entries of dead workers first (idle for a lease), then new ones.
            let claimed: Result<StreamAutoClaimReply, _> = redis::cmd("XAUTOCLAIM")
                .arg(&k.stream)
                .arg(GROUP)
                .arg(consumer)
                .arg(lease.as_millis() as u64)
                .arg("0-0")
                .arg("COUNT")
                .arg(1)
                .query_async(&mut con)
                .await;
            let claimed = match claimed {
                Ok(c) => c,
                Err(e) if e.code() == Some("NOGROUP") => {
                    self.ensure_group().await?;
                    continue;
                }
                Err(e) => return Err(store(e)),
            };
            let entry = match claimed.claimed.into_iter().next() {
                Some(e) => {
                    tracing::warn!(entry = %e.id, consumer, "lease expired: claiming the job of a worker that is gone");
                    Some(e)
                }
                None => {
                    let read: StreamReadReply = redis::cmd("XREADGROUP")
                        .arg("GROUP")
                        .arg(GROUP)
                        .arg(consumer)
                        .arg("COUNT")
                        .arg(1)
                        .arg("STREAMS")
                        .arg(&k.stream)
                        .arg(">")
                        .query_async(&mut con)
                        .await
                        .map_err(store)?;
                    read.keys.into_iter().flat_map(|s| s.ids).next()
                }
            };
            let Some(entry) = entry else {
                return Ok(None);
            };
            if let Some(d) = self.take(&entry).await? {
                return Ok(Some(d));
            }
        }
    }

    async fn extend(
        &self,
        d: &Delivery,
        consumer: &str,
        _lease: Duration,
    ) -> Result<(), QueueError> {
        let mut con = self.con.clone();
        redis::cmd("XCLAIM")
            .arg(&self.keys.stream)
            .arg(GROUP)
            .arg(consumer)
            .arg(0)
            .arg(&d.token)
            .arg("JUSTID")
            .query_async::<Value>(&mut con)
            .await
            .map_err(store)?;
        Ok(())
    }

    async fn complete(&self, d: &Delivery, outcome: &Outcome) -> Result<bool, QueueError> {
        let k = &self.keys;
        let json = serde_json::to_string(outcome)
            .map_err(|e| QueueError::Corrupt(format!("outcome {}: {e}", outcome.id())))?;
        let kind = if outcome.is_done() { "done" } else { "dead" };
        let mut con = self.con.clone();
        let first: i64 = self
            .scripts
            .complete
            .key(&k.results)
            .key(&k.log)
            .key(&k.stream)
            .key(&k.jobs)
            .key(&k.runs)
            .key(&k.failures)
            .key(&k.enqueued)
            .key(&k.counts)
            .arg(outcome.id())
            .arg(&d.token)
            .arg(json)
            .arg(kind)
            .arg(GROUP)
            .invoke_async(&mut con)
            .await
            .map_err(store)?;
        Ok(first == 1)
    }

    async fn reschedule(
        &self,
        d: &Delivery,
        after: Duration,
        failed: bool,
    ) -> Result<(), QueueError> {
        let k = &self.keys;
        let mut con = self.con.clone();
        let _: i64 = self
            .scripts
            .reschedule
            .key(&k.delayed)
            .key(&k.failures)
            .key(&k.counts)
            .key(&k.stream)
            .key(&k.results)
            .arg(&d.job.id)
            .arg(&d.token)
            .arg(after.as_millis().min(u128::from(u64::MAX)) as u64)
            .arg(if failed { "1" } else { "0" })
            .arg(GROUP)
            .invoke_async(&mut con)
            .await
            .map_err(store)?;
        Ok(())
    }

    async fn cancel(&self, id: &str) -> Result<bool, QueueError> {
        let k = &self.keys;
        let mut con = self.con.clone();
        let n: i64 = self
            .scripts
            .cancel
            .key(&k.jobs)
            .key(&k.delayed)
            .key(&k.cancelled)
            .key(&k.results)
            .key(&k.runs)
            .arg(id)
            .invoke_async(&mut con)
            .await
            .map_err(store)?;
        Ok(n == 1)
    }

    async fn counts(&self) -> Result<Counts, QueueError> {
        let k = &self.keys;
        let mut con = self.con.clone();
        let (len, pending, delayed, counts): (
            u64,
            Value,
            u64,
            std::collections::HashMap<String, u64>,
        ) = redis::pipe()
            .cmd("XLEN")
            .arg(&k.stream)
            .cmd("XPENDING")
            .arg(&k.stream)
            .arg(GROUP)
            .cmd("ZCARD")
            .arg(&k.delayed)
            .cmd("HGETALL")
            .arg(&k.counts)
            .query_async(&mut con)
            .await
            .map_err(store)?;
        // XPENDING's summary starts with the number of pending entries (nil-free: 0 when none).
        let in_flight = match pending {
            Value::Array(ref items) => match items.first() {
                Some(Value::Int(n)) => *n as u64,
                _ => 0,
            },
            _ => 0,
        };
        let get = |name: &str| counts.get(name).copied().unwrap_or(0);
        Ok(Counts {
            queued: len.saturating_sub(in_flight),
            delayed,
            in_flight,
            done: get("done"),
            dead: get("dead"),
            rescheduled: get("rescheduled"),
        })
    }

    async fn outcome(&self, id: &str) -> Result<Option<Outcome>, QueueError> {
        let mut con = self.con.clone();
        let json: Option<String> = redis::cmd("HGET")
            .arg(&self.keys.results)
            .arg(id)
            .query_async(&mut con)
            .await
            .map_err(store)?;
        json.map(|j| {
            serde_json::from_str(&j).map_err(|e| QueueError::Corrupt(format!("outcome {id}: {e}")))
        })
        .transpose()
    }

    async fn outcomes_after(
        &self,
        cursor: &str,
        max: usize,
    ) -> Result<(Vec<Outcome>, String), QueueError> {
        let mut con = self.con.clone();
        let start = if cursor.is_empty() {
            "-".to_owned()
        } else {
            format!("({cursor}")
        };
        let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&self.keys.log)
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(max.max(1))
            .query_async(&mut con)
            .await
            .map_err(store)?;
        let Some(last) = entries.ids.last().map(|e| e.id.clone()) else {
            return Ok((Vec::new(), cursor.to_owned()));
        };
        let ids: Vec<String> = entries
            .ids
            .iter()
            .filter_map(|e| e.get::<String>("id"))
            .collect();
        let jsons: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(&self.keys.results)
            .arg(&ids)
            .query_async(&mut con)
            .await
            .map_err(store)?;
        let mut out = Vec::with_capacity(jsons.len());
        for j in jsons.into_iter().flatten() {
            out.push(
                serde_json::from_str(&j)
                    .map_err(|e| QueueError::Corrupt(format!("outcome: {e}")))?,
            );
        }
        Ok((out, last))
    }
}
