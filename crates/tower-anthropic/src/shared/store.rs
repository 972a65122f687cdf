//! The Redis store of quota states: each quota's [`QuotaState`] as one JSON document in a
//! Redis hash, changed by compare-and-set.
//!
//! A change reads the state (or takes the copy this process holds from its last change),
//! runs the pacing rule on it in Rust (the same functions the local pacer runs), and writes
//! it back only if nobody wrote since: [`CAS`] compares the version the change started from
//! and either stores the new state under a new version, or answers the current one (the
//! change then runs again on it). In the usual case (this process wrote last) that is one
//! round trip. A decision that writes nothing (a call that must wait) is taken only on a
//! state just read. Within a process, the changes of one quota take turns (no process races
//! itself); between processes, the version decides.
//!
//! Times are stored as milliseconds on the Redis clock (`TIME`, as every answer reports it):
//! each process maps them to its own clock by the offset it measured, so machines whose
//! clocks differ agree.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::Script;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::pacing::GateSnapshot;
use crate::pacing::allowance::Allowance;
use crate::pacing::state::{Bucket, MAX_LIMIT, QuotaState};

/// Compare-and-set of one quota's state. `KEYS[1]`: the quota. `ARGV`: the version the change
/// started from (empty: none stored), the new state (empty: only read), its version, the
/// key's TTL (ms). Returns `{'1', seconds, microseconds}` (the Redis clock) when it stored the
/// state, else `{'0', seconds, microseconds, version, state}`: what is stored now. A key that
/// is not a hash, or holds a state or version larger than any this library writes, is
/// deleted first (read as none).
pub(super) const CAS: &str = r"
local t = redis.call('TIME')
local ty = redis.call('TYPE', KEYS[1]).ok
if ty ~= 'hash' and ty ~= 'none' then redis.call('DEL', KEYS[1]) end
local cur = redis.call('HMGET', KEYS[1], 'version', 'state')
if (cur[1] and #cur[1] > 64) or (cur[2] and #cur[2] > 16384) then
  redis.call('DEL', KEYS[1])
  cur = {false, false}
end
local v = cur[1] or ''
if ARGV[2] ~= '' and v == ARGV[1] then
  redis.call('HSET', KEYS[1], 'version', ARGV[3], 'state', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return {'1', t[1], t[2]}
end
return {'0', t[1], t[2], v, cur[2] or ''}
";

/// How often a change may meet another process's write before it gives up (the store then
/// counts as failing, and the pacer paces locally for a second).
const MAX_TRIES: usize = 32;

/// Most quotas whose last state a process keeps (a caller cycling through many keys or
/// models must not grow it without bound).
const MAX_CACHED: usize = 1024;

/// What a quota's stored state looks like, by bucket name.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    requests: StoredBucket,
    input_tokens: StoredBucket,
    output_tokens: StoredBucket,
    /// Times: milliseconds on the Redis clock.
    updated: f64,
    learned: bool,
    unmanaged_until: Option<f64>,
    first_sent: Option<f64>,
    gate: Option<StoredGate>,
    slow_start: Option<f64>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredBucket {
    limit: Option<f64>,
    level: f64,
    reserved: f64,
    /// Every correction applied (refunds, drift).
    corrected: f64,
    /// Everything ever admitted.
    admitted: f64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredGate {
    until: f64,
    closed_at: f64,
    retry_after_ms: f64,
    request_id: Option<String>,
}

/// A moment on both clocks: this process's, and the Redis clock (milliseconds, without the
/// tests' shift).
#[derive(Debug, Clone, Copy)]
struct Anchor {
    local: Instant,
    redis_ms: f64,
}

impl Anchor {
    /// `t` as milliseconds on the (shifted) Redis clock.
    fn encode(&self, t: Instant, shift_ms: f64) -> f64 {
        let base = self.redis_ms + shift_ms;
        if t >= self.local {
            base + (t - self.local).as_secs_f64() * 1000.0
        } else {
            base - (self.local - t).as_secs_f64() * 1000.0
        }
    }

    /// Milliseconds on the (shifted) Redis clock as an instant of this process.
    fn decode(&self, ms: f64, shift_ms: f64) -> Instant {
        let d = ms - (self.redis_ms + shift_ms);
        let by = Duration::from_secs_f64(d.abs().min(1e12) / 1000.0);
        if d >= 0.0 {
            self.local + by
        } else {
            // Before this process's clock began (a state older than the machine's uptime):
            // its earliest instant.
            self.local.checked_sub(by).unwrap_or(self.local)
        }
    }
}

/// The bounds a stored state keeps (what this library writes): levels within 10^13, times
/// within a day of now, counters within 10^16.
fn valid(s: &Stored, now_ms: f64) -> bool {
    let day = 86_400_000.0;
    let time = |t: f64| t.is_finite() && (t - now_ms).abs() <= day;
    let buckets = [&s.requests, &s.input_tokens, &s.output_tokens];
    buckets.iter().enumerate().all(|(i, b)| {
        b.limit
            .is_none_or(|l| l.is_finite() && (1.0..=MAX_LIMIT[i]).contains(&l))
            && b.level.is_finite()
            && b.level.abs() <= 1e13
            && b.reserved.is_finite()
            && (0.0..=1e13).contains(&b.reserved)
            && b.corrected.is_finite()
            && b.corrected.abs() <= 1e16
            && b.admitted.is_finite()
            && b.admitted.abs() <= 1e16
    }) && time(s.updated)
        && [s.unmanaged_until, s.first_sent, s.slow_start]
            .iter()
            .all(|t| t.is_none_or(time))
        && s.gate.as_ref().is_none_or(|g| {
            time(g.until)
                && time(g.closed_at)
                && (0.0..=day).contains(&g.retry_after_ms)
                && g.request_id.as_ref().is_none_or(|id| id.len() <= 200)
        })
}

fn encode(st: &QuotaState, a: &Anchor, shift: f64) -> String {
    let bucket = |i: usize| {
        let b = &st.buckets[i];
        StoredBucket {
            limit: b.limit,
            level: b.level,
            reserved: b.reserved,
            corrected: st.corrections[i],
            admitted: st.admitted[i],
        }
    };
    let stored = Stored {
        requests: bucket(0),
        input_tokens: bucket(1),
        output_tokens: bucket(2),
        updated: a.encode(st.updated, shift),
        learned: st.learned,
        unmanaged_until: st.unmanaged_until.map(|t| a.encode(t, shift)),
        first_sent: st.first_sent.map(|t| a.encode(t, shift)),
        gate: st.gate.as_ref().map(|g| StoredGate {
            until: a.encode(g.until, shift),
            closed_at: a.encode(g.closed_at, shift),
            retry_after_ms: g.retry_after.as_secs_f64() * 1000.0,
            request_id: g.request_id.clone(),
        }),
        slow_start: st.slow_start.map(|t| a.encode(t, shift)),
    };
    serde_json::to_string(&stored).unwrap_or_default()
}

/// The stored state onto `st` (a cold start, made by the caller); `false` when it is not one
/// this library writes.
fn decode(raw: &str, st: &mut QuotaState, a: &Anchor, shift: f64) -> bool {
    let Ok(s) = serde_json::from_str::<Stored>(raw) else {
        return false;
    };
    if !valid(&s, a.redis_ms + shift) {
        return false;
    }
    let t = |ms: f64| a.decode(ms, shift);
    for (i, b) in [s.requests, s.input_tokens, s.output_tokens]
        .into_iter()
        .enumerate()
    {
        st.buckets[i] = Bucket {
            limit: b.limit,
            level: b.level,
            reserved: b.reserved,
        };
        st.corrections[i] = b.corrected;
        st.admitted[i] = b.admitted;
    }
    st.updated = t(s.updated);
    st.learned = s.learned && st.buckets.iter().any(|b| b.limit.is_some());
    st.unmanaged_until = s.unmanaged_until.map(t);
    st.first_sent = s.first_sent.map(t);
    st.gate = s.gate.map(|g| GateSnapshot {
        until: t(g.until),
        closed_at: t(g.closed_at),
        retry_after: Duration::from_secs_f64(g.retry_after_ms / 1000.0),
        request_id: g.request_id,
    });
    st.slow_start = s.slow_start.map(t);
    true
}

/// What this process last knew of one quota.
#[derive(Debug, Default)]
struct Entry {
    /// The stored version (empty: none).
    version: String,
    /// The stored state (empty: none).
    state: String,
    /// The clocks' offset, from the last answer.
    anchor: Option<Anchor>,
}

/// One change of a quota: what it returns, and whether it writes the state back.
pub(super) struct Change<T> {
    pub(super) out: T,
    pub(super) write: bool,
}

/// What a change ran on, beside its own result.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Ran {
    /// The stored state was not one this library writes: replaced by a cold start.
    pub(super) corrupt: bool,
}

/// What every change of a quota runs with.
pub(super) struct StoreContext<'a> {
    pub(super) ttl: Duration,
    /// Each round trip's bound.
    pub(super) timeout: Duration,
    /// Milliseconds added to the Redis clock (tests).
    pub(super) shift_ms: f64,
    /// The cold start of a quota nothing is stored for.
    pub(super) cold_start: Duration,
    /// This process's dispatch allowance: each state is run with it, and a change that
    /// learns leaves it changed.
    pub(super) allowance: &'a Mutex<Allowance>,
}

type Run = Box<dyn FnMut(&mut QuotaState, Instant) -> bool + Send>;

/// A change waiting for its quota's turn (run by whichever change of the quota leads the
/// next round trip).
struct Pending {
    run: Mutex<Run>,
    learns: bool,
    /// Set when a round trip stored it (or failed).
    done: Mutex<Option<Result<Ran, String>>>,
}

/// One quota's changes: those waiting, and the round trip (one at a time per process).
#[derive(Default)]
struct Quota {
    waiting: Mutex<Vec<Arc<Pending>>>,
    entry: tokio::sync::Mutex<Entry>,
}

/// The quota states of one Redis, as this process reaches them.
pub(super) struct QuotaStore {
    script: Script,
    quotas: Mutex<HashMap<String, Arc<Quota>>>,
    /// Versions are this process's seed and a count: unique without coordination.
    seed: u64,
    count: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl QuotaStore {
    pub(super) fn new() -> Self {
        use std::hash::BuildHasher;
        let seed = foldhash::fast::RandomState::default().hash_one(std::process::id());
        Self {
            script: Script::new(CAS),
            quotas: Mutex::default(),
            seed,
            count: AtomicU64::new(0),
        }
    }

    /// A version no other write has (this process's seed and a count).
    pub(super) fn next_version(&self) -> String {
        format!(
            "{:016x}{:08x}",
            self.seed,
            self.count.fetch_add(1, Ordering::Relaxed)
        )
    }

    fn quota(&self, key: &str) -> Arc<Quota> {
        let mut quotas = lock(&self.quotas);
        if let Some(q) = quotas.get(key) {
            return q.clone();
        }
        if quotas.len() >= MAX_CACHED {
            quotas.clear();
        }
        let q = Arc::new(Quota::default());
        quotas.insert(key.to_owned(), q.clone());
        q
    }

    /// Runs `change` on the state of `key` until it is stored (or, when it writes nothing,
    /// on a state just read), with `learns` when it may change the dispatch allowance.
    ///
    /// The changes of one quota that wait while a round trip is under way go together in
    /// the next one, in the order they came: each runs on the state the one before it left,
    /// as if they had been stored one by one, and one compare-and-set stores them all (or,
    /// when another process wrote first, they all run again on what it wrote).
    pub(super) async fn change<T: Send + 'static>(
        &self,
        con: &mut redis::aio::ConnectionManager,
        key: &str,
        cx: &StoreContext<'_>,
        learns: bool,
        mut change: impl FnMut(&mut QuotaState, Instant) -> Change<T> + Send + 'static,
    ) -> Result<(T, Ran), String> {
        let out = Arc::new(Mutex::new(None));
        let slot = out.clone();
        let run: Run = Box::new(move |st, now| {
            let c = change(st, now);
            *lock(&slot) = Some(c.out);
            c.write
        });
        let me = Arc::new(Pending {
            run: Mutex::new(run),
            learns,
            done: Mutex::new(None),
        });
        let quota = self.quota(key);
        lock(&quota.waiting).push(me.clone());
        let mut entry = quota.entry.lock().await;
        if lock(&me.done).is_none() {
            // No round trip took it while this one waited: this one leads, for every
            // change waiting now (this one among them).
            let mut batch = std::mem::take(&mut *lock(&quota.waiting));
            if !batch.iter().any(|p| Arc::ptr_eq(p, &me)) {
                // Taken by a round trip that was cancelled (its caller dropped mid-way).
                batch.insert(0, me.clone());
            }
            let result = self.round(con, key, cx, &mut entry, &batch).await;
            for p in &batch {
                *lock(&p.done) = Some(result.clone());
            }
        }
        drop(entry);
        let ran = lock(&me.done).take().expect("done by a round trip")?;
        let out = lock(&out).take().expect("a stored change has run");
        Ok((out, ran))
    }

    /// Runs `batch` on the state of `key` until stored.
    async fn round(
        &self,
        con: &mut redis::aio::ConnectionManager,
        key: &str,
        cx: &StoreContext<'_>,
        e: &mut Entry,
        batch: &[Arc<Pending>],
    ) -> Result<Ran, String> {
        let mut ran = Ran::default();
        // The copy held from this process's last change may be stale: changes that write are
        // checked by the version, ones that do not are run again on a state just read.
        let mut just_read = false;
        for _ in 0..MAX_TRIES {
            let Some(anchor) = e.anchor else {
                self.call(con, key, e, None, cx).await?;
                just_read = true;
                continue;
            };
            let now = Instant::now();
            let fresh = || {
                let mut st = QuotaState::new(None, cx.cold_start, now);
                st.allowance = lock(cx.allowance).clone();
                st
            };
            let mut st = fresh();
            if !e.state.is_empty() && !decode(&e.state, &mut st, &anchor, cx.shift_ms) {
                ran.corrupt = true;
                st = fresh();
            }
            let mut write = false;
            for p in batch {
                write |= (lock(&p.run))(&mut st, now);
            }
            if !write {
                if just_read {
                    return Ok(ran);
                }
                self.call(con, key, e, None, cx).await?;
                just_read = true;
                continue;
            }
            let state = encode(&st, &anchor, cx.shift_ms);
            if self.call(con, key, e, Some(state), cx).await? {
                if batch.iter().any(|p| p.learns) {
                    *lock(cx.allowance) = st.allowance;
                }
                return Ok(ran);
            }
            just_read = true;
        }
        Err(format!(
            "the quota changed under {MAX_TRIES} attempts in a row"
        ))
    }

    /// One round trip of [`CAS`]: stores `state` if the version is still the one `e` holds
    /// (`true`), else reads what is stored into `e` (`false`). `None` only reads.
    async fn call(
        &self,
        con: &mut redis::aio::ConnectionManager,
        key: &str,
        e: &mut Entry,
        state: Option<String>,
        cx: &StoreContext<'_>,
    ) -> Result<bool, String> {
        let timeout = cx.timeout;
        let version = match &state {
            Some(_) => self.next_version(),
            None => String::new(),
        };
        let mut inv = self.script.key(key);
        inv.arg(&e.version)
            .arg(state.as_deref().unwrap_or(""))
            .arg(&version)
            .arg(cx.ttl.as_millis() as u64);
        let call = inv.invoke_async::<Vec<String>>(con);
        let out = match tokio::time::timeout(timeout, call).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err(format!("no answer within {timeout:?}")),
        };
        let received = Instant::now();
        let num = |i: usize| out.get(i).and_then(|s| s.parse::<f64>().ok());
        let (Some(secs), Some(micros)) = (num(1), num(2)) else {
            return Err("an answer of the wrong shape".to_owned());
        };
        e.anchor = Some(Anchor {
            local: received,
            redis_ms: secs * 1000.0 + micros / 1000.0,
        });
        if out.first().is_some_and(|s| s == "1") {
            e.version = version;
            e.state = state.unwrap_or_default();
            return Ok(true);
        }
        e.version = out.get(3).cloned().unwrap_or_default();
        e.state = out.get(4).cloned().unwrap_or_default();
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_survives_the_store_and_the_clocks() {
        let now = Instant::now();
        let mut st = QuotaState::new(Some([50.0, 1000.0, 2000.0]), Duration::ZERO, now);
        let a = st.admit(&[1.0, 10.0, 20.0], now);
        assert!(!a.unpaced);
        st.gate = Some(GateSnapshot {
            until: now + Duration::from_secs(3),
            closed_at: now,
            retry_after: Duration::from_secs(3),
            request_id: Some("req_1".into()),
        });
        // Written by a process whose clock reads the Redis clock as 1,000,000 ms at `now`,
        // read by one that reads it as 5,000 ms later at `later`.
        let w = Anchor {
            local: now,
            redis_ms: 1e6,
        };
        let raw = encode(&st, &w, 0.0);
        assert!(
            raw.contains("\"input_tokens\"") && raw.contains("\"requests\""),
            "{raw}"
        );
        let later = now + Duration::from_secs(60);
        let r = Anchor {
            local: later,
            redis_ms: 1e6 + 5_000.0,
        };
        let mut back = QuotaState::new(None, Duration::ZERO, later);
        assert!(decode(&raw, &mut back, &r, 0.0));
        assert_eq!(back.buckets, st.buckets);
        assert_eq!(back.admitted, st.admitted);
        assert!(back.learned);
        // The gate closes 3 s after the write on the Redis clock: 2 s after the reader's
        // `later + 5 s`... that is, at `later - 5 s + 3 s`.
        let until = back.gate.as_ref().unwrap().until;
        let want = later - Duration::from_secs(2);
        assert!(until.max(want) - until.min(want) < Duration::from_micros(5));
    }

    #[test]
    fn a_state_this_library_does_not_write_is_refused() {
        let now = Instant::now();
        let a = Anchor {
            local: now,
            redis_ms: 1e6,
        };
        let st = QuotaState::new(Some([50.0, 1000.0, 2000.0]), Duration::ZERO, now);
        let good = encode(&st, &a, 0.0);
        let mut back = QuotaState::new(None, Duration::ZERO, now);
        assert!(decode(&good, &mut back, &a, 0.0));
        for bad in [
            String::new(),
            "not json".to_owned(),
            good.replace("\"learned\"", "\"unknown\""),
            good.replacen("\"limit\":50.0", "\"limit\":0.0", 1),
            good.replacen("\"limit\":50.0", "\"limit\":1e300", 1),
            good.replacen("\"level\":", "\"level\":1e300,\"x\":", 1),
            good.replacen("\"reserved\":0.0", "\"reserved\":-1.0", 1),
            good.replace("\"updated\":1000000.0", "\"updated\":1e300"),
            good.replace("\"updated\":1000000.0", "\"updated\":null"),
        ] {
            let mut back = QuotaState::new(None, Duration::ZERO, now);
            assert!(!decode(&bad, &mut back, &a, 0.0), "{bad}");
        }
    }

    /// Random sequences of admissions, answers (successes with sane or hostile counts, 429s
    /// with and without a wait, no answer), settlements and time: the state kept in memory
    /// and the state written to the store and read back after every step (as the Redis store
    /// keeps it) take the same decisions and end the same.
    #[test]
    fn property_the_store_round_trip_changes_no_decision() {
        use crate::pacing::RateLimited;
        use crate::pacing::state::{Answer, Ready};
        use crate::rate_limit::RateLimitHeaders;
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let t0 = Instant::now();
        let anchor = Anchor {
            local: t0,
            redis_ms: 1.7e12,
        };
        let (mut gated, mut waited) = (0, 0);
        for case in 0..300 {
            let mut mem = QuotaState::new(None, Duration::from_secs(2), t0);
            let mut kept = mem.clone();
            let mut now = t0;
            let mut flight = Vec::new();
            for step in 0..60 {
                now += Duration::from_millis(next() % 700);
                let cost = [1.0, (next() % 500) as f64, (next() % 300) as f64];
                let what = format!("case {case}, step {step}");
                match next() % 4 {
                    0 | 1 => {
                        let decide = |st: &mut QuotaState| {
                            st.refill(now);
                            st.open_gate(now, true);
                            match st.ready(&cost, now) {
                                Ready::Now => Ok(st.admit(&cost, now)),
                                Ready::At(at, bound) => Err((at, bound)),
                            }
                        };
                        let (a, b) = (decide(&mut mem), decide(&mut kept));
                        match (a, b) {
                            (Ok(a), Ok(_)) => flight.push((a, cost)),
                            (Err((x, i)), Err((y, j))) => {
                                assert_eq!(i, j, "{what}");
                                assert!(x.max(y) - x.min(y) < Duration::from_micros(1), "{what}");
                            }
                            (a, b) => panic!("{what}: {a:?} against {b:?}"),
                        }
                    }
                    _ if !flight.is_empty() => {
                        let (admission, cost) =
                            flight.remove((next() % flight.len() as u64) as usize);
                        let mut h = RateLimitHeaders::default();
                        let hostile = next() % 5 == 0;
                        for (b, l) in [
                            (&mut h.requests, 50),
                            (&mut h.input_tokens, 40_000),
                            (&mut h.output_tokens, 8_000),
                        ] {
                            b.limit = Some(if hostile { u64::MAX } else { l });
                            b.remaining = Some(next() % (l + 1));
                        }
                        let kind = next() % 4;
                        let answer = Answer {
                            headers: (kind != 3).then_some(&h),
                            charged: kind != 1,
                            success: kind == 0,
                            rate_limited: (kind == 1).then(|| RateLimited {
                                wait: (next() % 2 == 0)
                                    .then(|| Duration::from_millis(next() % 3000)),
                                drain: next() % 3 == 0,
                            }),
                            request_id: Some("req_x"),
                        };
                        let refund = [0.0, (next() % 100) as f64, (next() % 100) as f64];
                        let apply = |st: &mut QuotaState| {
                            let told = st.answered(&answer, &admission, &cost, now);
                            if answer.charged {
                                st.refund(&refund, &cost);
                                st.settled();
                            }
                            told
                        };
                        assert_eq!(apply(&mut mem), apply(&mut kept), "{what}");
                    }
                    _ => {}
                }
                // Through the store.
                let raw = encode(&kept, &anchor, 0.0);
                let mut back = QuotaState::new(None, Duration::from_secs(2), now);
                back.allowance = kept.allowance.clone();
                assert!(decode(&raw, &mut back, &anchor, 0.0), "{what}: {raw}");
                kept = back;
                for i in 0..3 {
                    let (m, k) = (&mem.buckets[i], &kept.buckets[i]);
                    assert_eq!(m.limit, k.limit, "{what}");
                    assert!((m.level - k.level).abs() < 1e-6, "{what}: {m:?} {k:?}");
                    assert!((m.reserved - k.reserved).abs() < 1e-9, "{what}");
                }
                assert_eq!(mem.learned, kept.learned, "{what}");
                assert_eq!(mem.gate.is_some(), kept.gate.is_some(), "{what}");
                assert_eq!(
                    mem.first_sent.is_some(),
                    kept.first_sent.is_some(),
                    "{what}"
                );
                assert_eq!(
                    mem.slow_start.is_some(),
                    kept.slow_start.is_some(),
                    "{what}"
                );
                assert_eq!(
                    mem.unmanaged_until.is_some(),
                    kept.unmanaged_until.is_some(),
                    "{what}"
                );
                for i in 0..3 {
                    assert!(
                        (mem.corrections[i] - kept.corrections[i]).abs() < 1e-6,
                        "{what}"
                    );
                    assert_eq!(mem.admitted[i], kept.admitted[i], "{what}");
                }
                gated += usize::from(mem.learned && mem.gate.is_some());
                waited += usize::from(mem.learned && !flight.is_empty());
            }
        }
        // The sequences reach the states that matter: learned limits, closed gates.
        assert!(gated > 100 && waited > 1000, "{gated} {waited}");
    }
}
