//! `anthropic-bulk`: run a JSONL file of Messages requests through a work queue, resumably.
//!
//! ```text
//! anthropic-bulk run prompts.jsonl --out results.jsonl [--concurrency N] [--redis URL]
//! anthropic-bulk worker --redis URL [--concurrency N]
//! ```

use std::collections::HashSet;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anthropic_mock::{MockConfig, MockServer};
use serde_json::Value;
use tower_anthropic::Client;
use tower_anthropic::messages::CreateMessageRequest;
use tower_anthropic_queue::{
    Backend, Counts, Job, MemoryBackend, Outcome, RedisBackend, WorkerConfig, WorkerPool,
};

const HELP: &str = "\
anthropic-bulk: run a JSONL file of Messages API requests through a work queue

USAGE:
    anthropic-bulk run INPUT.jsonl --out OUTPUT.jsonl [OPTIONS]
    anthropic-bulk worker --redis URL [OPTIONS]

run reads one request per line and writes one outcome per line (JSON, in the order they
finish). It is resumable: ids already in OUTPUT are skipped, so after a crash or Ctrl-C the
same command carries on, and a SIGKILL loses nothing already written. Ctrl-C stops taking
jobs; those running finish (a second Ctrl-C quits at once). One run writes an OUTPUT at a
time: a second one on it refuses, naming the first (OUTPUT.lock holds its process id).

worker runs jobs of a Redis queue until Ctrl-C (start as many as you like, anywhere).

INPUT LINES (one JSON object each):
    {\"id\": \"a1\", \"request\": {\"model\": ..., \"max_tokens\": ..., \"messages\": [...]}}
    {\"custom_id\": \"a1\", \"params\": {...}}           (the Message Batches format)
    {\"model\": ..., \"max_tokens\": ..., \"messages\": [...]}   (id: line-N)
    an optional \"metadata\" is copied to the outcome.

OUTPUT LINES:
    {\"status\": \"done\", \"id\": ..., \"message\": {...}, \"request_id\": ..., \"attempts\": ..., \"runs\": ...}
    {\"status\": \"dead\", \"id\": ..., \"error\": {\"class\", \"status\", \"error_type\", ...}, \"reason\": ...}
    {\"status\": \"dead\", \"id\": ..., \"line\": N, \"error\": {\"class\": \"invalid_input\", \"message\": ...},
     \"reason\": \"invalid_input\", \"runs\": 0}   (an input line that is no request; id: its own, else line-N)

OPTIONS:
    --out PATH            the output file (run; required)
    --concurrency N       jobs running at once in this process [default: 16]
    --redis URL           keep the queue in Redis (shared with `worker` processes)
    --queue NAME          the queue's key prefix in Redis [default: anthropic-bulk]
    --no-workers          run: only enqueue and collect (workers run elsewhere)
    --max-attempts N      failed runs before a job is a dead letter [default: 5]
    --lease SECONDS       a running job's lease: a worker that dies has its jobs run
                          again this long after its last renewal [default: 60]
    --invalid dead|abort  an input line that is no request (not JSON, not a Messages
                          request): a dead letter in the output, the run goes on (dead),
                          or stop the run before anything is sent (abort) [default: dead]
    -h, --help            print this help

The API key is read from ANTHROPIC_API_KEY (and ANTHROPIC_BASE_URL); without a key the
embedded mock API is started and used instead, and the command says so.

EXIT CODES:
    0     every request answered
    1     an error stopped the run (a bad input line with --invalid abort, an id twice, an
          unusable output, a store error)
    2     a usage error
    3     finished, with dead letters in the output (invalid input lines included)
    130   interrupted (Ctrl-C) before the end: run the same command again to resume
";

struct Args {
    command: String,
    input: Option<PathBuf>,
    out: Option<PathBuf>,
    concurrency: usize,
    redis: Option<String>,
    queue: String,
    workers: bool,
    max_attempts: u32,
    lease: Duration,
    /// Invalid input lines become dead letters (`--invalid dead`) or stop the run.
    invalid_dead: bool,
}

fn parse(args: Vec<String>) -> Result<Option<Args>, String> {
    let mut it = args.into_iter();
    let mut a = Args {
        command: String::new(),
        input: None,
        out: None,
        concurrency: 16,
        redis: None,
        queue: "anthropic-bulk".to_owned(),
        workers: true,
        max_attempts: 5,
        lease: Duration::from_secs(60),
        invalid_dead: true,
    };
    let mut positional = Vec::new();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--out" => a.out = Some(PathBuf::from(value("--out")?)),
            "--concurrency" => {
                let v = value("--concurrency")?;
                a.concurrency = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or_else(|| format!("--concurrency {v}: expected 1 to 10000"))?;
            }
            "--redis" => a.redis = Some(value("--redis")?),
            "--invalid" => {
                a.invalid_dead = match value("--invalid")?.as_str() {
                    "dead" => true,
                    "abort" => false,
                    other => return Err(format!("--invalid {other}: expected dead or abort")),
                }
            }
            "--queue" => a.queue = value("--queue")?,
            "--no-workers" => a.workers = false,
            "--max-attempts" => {
                let v = value("--max-attempts")?;
                a.max_attempts = v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| format!("--max-attempts {v}: expected a number from 1"))?;
            }
            "--lease" => {
                let v = value("--lease")?;
                let secs = v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (1..=86_400).contains(n))
                    .ok_or_else(|| format!("--lease {v}: expected 1 to 86400 seconds"))?;
                a.lease = Duration::from_secs(secs);
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            _ => positional.push(arg),
        }
    }
    let mut pos = positional.into_iter();
    a.command = pos.next().ok_or("missing command: run or worker")?;
    match a.command.as_str() {
        "run" => {
            a.input = Some(PathBuf::from(pos.next().ok_or("run needs an INPUT file")?));
            if a.out.is_none() {
                return Err("run needs --out OUTPUT".into());
            }
        }
        "worker" => {
            if a.redis.is_none() {
                return Err("worker needs --redis URL".into());
            }
        }
        other => return Err(format!("unknown command {other}: run or worker")),
    }
    if let Some(extra) = pos.next() {
        return Err(format!("unexpected argument {extra}"));
    }
    Ok(Some(a))
}

/// One input line as a job (`n` is its 1-based line number).
fn job_of(line: &str, n: usize) -> Result<Job, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("line {n}: not JSON: {e}"))?;
    let Value::Object(mut o) = v else {
        return Err(format!("line {n}: not a JSON object"));
    };
    let id = match o.remove("id").or_else(|| o.remove("custom_id")) {
        Some(Value::String(s)) => s,
        Some(_) => return Err(format!("line {n}: the id must be a string")),
        None => format!("line-{n}"),
    };
    let metadata = o.remove("metadata");
    let body = match o.remove("request").or_else(|| o.remove("params")) {
        Some(b) => b,
        None => Value::Object(o),
    };
    let mut request: CreateMessageRequest = serde_json::from_value(body)
        .map_err(|e| format!("line {n}: not a Messages request: {e}"))?;
    request.stream = None;
    let mut job = Job::new(id, request);
    job.metadata = metadata;
    Ok(job)
}

/// The id an invalid line names, if it names one (a JSON object with a string `id` or
/// `custom_id`), else `line-N`: the id of its dead letter.
fn invalid_id(line: &str, n: usize) -> String {
    serde_json::from_str::<Value>(line)
        .ok()
        .and_then(|v| {
            let id = v.get("id").or_else(|| v.get("custom_id"))?;
            id.as_str().map(str::to_owned)
        })
        .filter(|id| id.len() <= tower_anthropic_queue::MAX_ID_LEN)
        .unwrap_or_else(|| format!("line-{n}"))
}

/// The output line of an invalid input line (a dead letter that never ran).
fn invalid_line(id: &str, n: usize, error: &str) -> Value {
    serde_json::json!({
        "status": "dead",
        "id": id,
        "line": n,
        "error": {"class": "invalid_input", "message": error},
        "reason": "invalid_input",
        "runs": 0,
    })
}

/// Takes the output's advisory lock (`OUT.lock`, holding this process's id), so a second run
/// on the same output refuses at once instead of writing every result again. The system
/// releases it when the process ends, however it ends: a run killed mid-way resumes.
fn lock_output(out: &Path) -> Result<std::fs::File, String> {
    use std::io::{Read, Seek, Write};
    let mut path = out.as_os_str().to_owned();
    path.push(".lock");
    let path = PathBuf::from(path);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                "another process".to_owned()
            } else {
                format!("process {holder}")
            };
            return Err(format!(
                "{} is being written by {who} (anthropic-bulk holds {}); wait for it or use another --out",
                out.display(),
                path.display()
            ));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(format!("{}: cannot lock: {e}", path.display()));
        }
    }
    f.set_len(0)
        .and_then(|()| f.rewind())
        .and_then(|()| writeln!(f, "{}", std::process::id()))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(f)
}

/// Ids already in the output; a last line cut short by a crash is dropped from the file.
fn done_ids(out: &Path) -> Result<HashSet<String>, String> {
    let mut ids = HashSet::new();
    let Ok(bytes) = std::fs::read(out) else {
        return Ok(ids);
    };
    let keep = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        None => 0,
    };
    if keep < bytes.len() {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(out)
            .map_err(|e| format!("{}: {e}", out.display()))?;
        f.set_len(keep as u64)
            .map_err(|e| format!("{}: {e}", out.display()))?;
        eprintln!("dropped a partial last line from {}", out.display());
    }
    for line in bytes[..keep].split(|&b| b == b'\n') {
        if let Ok(v) = serde_json::from_slice::<Value>(line)
            && let Some(id) = v.get("id").and_then(Value::as_str)
        {
            ids.insert(id.to_owned());
        }
    }
    Ok(ids)
}

/// The client, and the embedded mock it talks to when no key is set.
async fn client() -> Result<(Client, Option<MockServer>), String> {
    if std::env::var("ANTHROPIC_API_KEY").is_ok_and(|k| !k.trim().is_empty()) {
        return Ok((Client::from_env().map_err(|e| e.to_string())?, None));
    }
    let mock = MockServer::start(MockConfig::default())
        .await
        .map_err(|e| format!("cannot start the embedded mock: {e}"))?;
    eprintln!(
        "ANTHROPIC_API_KEY is not set: using the embedded mock API at {} (answers are made up)",
        mock.url()
    );
    let c = Client::builder()
        .api_key("sk-ant-mock")
        .base_url(mock.url())
        .build()
        .map_err(|e| e.to_string())?;
    Ok((c, Some(mock)))
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1).collect()) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("anthropic-bulk: {e}\n(anthropic-bulk --help for usage)");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("anthropic-bulk: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let r = rt.block_on(async move {
        match (&args.redis, args.command.as_str()) {
            (Some(url), _) => {
                let b = RedisBackend::connect(url, &args.queue)
                    .await
                    .map_err(|e| format!("Redis: {e}"))?;
                go(b, &args).await
            }
            (None, _) => go(MemoryBackend::new(), &args).await,
        }
    });
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("anthropic-bulk: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on the first Ctrl-C, saying `what` happens now (and exits the process on the
/// second).
async fn interrupted(flag: Arc<AtomicBool>, what: &'static str) {
    if tokio::signal::ctrl_c().await.is_err() {
        return std::future::pending().await;
    }
    flag.store(true, Ordering::SeqCst);
    eprintln!("\ninterrupted: {what} (Ctrl-C again to quit now)");
    tokio::spawn(async {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("quitting; run the same command again to resume");
        std::process::exit(130);
    });
}

async fn go<B: Backend>(backend: B, args: &Args) -> Result<ExitCode, String> {
    let (client, _mock) = client().await?;
    let config = WorkerConfig::new()
        .concurrency(args.concurrency)
        .max_attempts(args.max_attempts)
        .lease(args.lease);
    let stop = Arc::new(AtomicBool::new(false));
    if args.command == "worker" {
        eprintln!(
            "worker: running jobs of queue {:?} (Ctrl-C to stop)",
            args.queue
        );
        let pool = WorkerPool::new(backend, client.service(), config);
        pool.run(interrupted(stop, "finishing the jobs running"))
            .await;
        return Ok(ExitCode::SUCCESS);
    }
    let (input, out) = match (&args.input, &args.out) {
        (Some(i), Some(o)) => (i, o),
        _ => return Err("run needs INPUT and --out".into()),
    };
    // Before anything reads or repairs the output: one writer at a time.
    let _lock = lock_output(out)?;
    let mut written = done_ids(out)?;
    let file = std::fs::File::open(input).map_err(|e| format!("{}: {e}", input.display()))?;
    let mut jobs = Vec::new();
    let mut invalid = Vec::new();
    let mut seen = HashSet::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("{}: {e}", input.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let (id, job) = match job_of(&line, i + 1) {
            Ok(job) => (job.id.clone(), Some(job)),
            Err(e) if args.invalid_dead => {
                let id = invalid_id(&line, i + 1);
                invalid.push(invalid_line(&id, i + 1, &e));
                (id, None)
            }
            Err(e) => {
                return Err(format!(
                    "{e} (--invalid dead to write it as a dead letter and go on)"
                ));
            }
        };
        if !seen.insert(id.clone()) {
            return Err(format!("line {}: id {id:?} appears twice", i + 1));
        }
        jobs.extend(job);
    }
    let total = jobs.len() + invalid.len();
    let skipped = jobs.iter().filter(|j| written.contains(&j.id)).count()
        + invalid
            .iter()
            .filter(|v| v["id"].as_str().is_some_and(|id| written.contains(id)))
            .count();
    // Invalid lines go to the output at once, as dead letters (once: not again on resume).
    let invalid_now: Vec<&Value> = invalid
        .iter()
        .filter(|v| v["id"].as_str().is_some_and(|id| !written.contains(id)))
        .collect();
    if !invalid_now.is_empty() {
        let mut buf = Vec::new();
        for v in &invalid_now {
            serde_json::to_writer(&mut buf, v).map_err(|e| e.to_string())?;
            buf.push(b'\n');
            if let Some(id) = v["id"].as_str() {
                written.insert(id.to_owned());
            }
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .map_err(|e| format!("{}: {e}", out.display()))?;
        f.write_all(&buf)
            .and_then(|()| f.flush())
            .map_err(|e| format!("{}: {e}", out.display()))?;
        eprintln!(
            "{} input lines are no request: written to {} as dead letters (reason invalid_input); --invalid abort stops at the first instead",
            invalid_now.len(),
            out.display()
        );
    }
    let mut wanted: HashSet<String> = jobs
        .iter()
        .filter(|j| !written.contains(&j.id))
        .map(|j| j.id.clone())
        .collect();
    if skipped > 0 {
        eprintln!(
            "resuming: {skipped} of {total} already in {}",
            out.display()
        );
    }
    let todo: Vec<Job> = jobs
        .into_iter()
        .filter(|j| wanted.contains(&j.id))
        .collect();
    backend
        .enqueue(todo)
        .await
        .map_err(|e| format!("enqueue: {e}"))?;

    let pool_task = args.workers.then(|| {
        let pool = WorkerPool::new(backend.clone(), client.service(), config);
        let flag = stop.clone();
        tokio::spawn(pool.run(async move {
            interrupted(flag, "finishing the jobs running").await;
        }))
    });
    if !args.workers {
        // Only collecting: Ctrl-C stops that (the jobs stay queued for the workers).
        tokio::spawn(interrupted(
            stop.clone(),
            "no longer collecting; the jobs stay queued for the workers",
        ));
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .map_err(|e| format!("{}: {e}", out.display()))?;
    let started = Instant::now();
    let mut progress = Progress::new(wanted.len() + invalid_now.len());
    let mut cursor = String::new();
    let (mut done, mut dead, mut retried) = (0usize, invalid_now.len(), 0usize);
    let mut store_errors = 0u32;
    while !wanted.is_empty() {
        let (batch, next) = match backend.outcomes_after(&cursor, 1000).await {
            Ok(r) => {
                store_errors = 0;
                r
            }
            Err(e) => {
                store_errors += 1;
                if store_errors % 10 == 1 {
                    eprintln!("queue store unavailable ({e}); retrying");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        cursor = next;
        let mut buf = Vec::new();
        for o in &batch {
            if !wanted.remove(o.id()) {
                continue;
            }
            written.insert(o.id().to_owned());
            match o {
                Outcome::Done(r) => {
                    done += 1;
                    // Retried inside the client (its last call took more than one attempt).
                    retried += usize::from(r.attempts > 1);
                }
                Outcome::Dead(_) => dead += 1,
            }
            serde_json::to_writer(&mut buf, o).map_err(|e| e.to_string())?;
            buf.push(b'\n');
        }
        if !buf.is_empty() {
            file.write_all(&buf)
                .and_then(|()| file.flush())
                .map_err(|e| format!("{}: {e}", out.display()))?;
        }
        let counts = backend.counts().await.unwrap_or_default();
        progress.show(done, dead, retried, &counts, started.elapsed());
        if stop.load(Ordering::SeqCst) && counts.in_flight == 0 {
            break;
        }
        if batch.is_empty() {
            if !args.workers && stop.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let counts_now = backend.counts().await.unwrap_or_default();
    progress.finish(done, dead, retried, &counts_now, started.elapsed());
    if let Some(t) = pool_task {
        if stop.load(Ordering::SeqCst) {
            let _ = t.await;
        } else {
            t.abort();
        }
    }
    let counts = backend.counts().await.unwrap_or_default();
    let wall = started.elapsed().as_secs_f64();
    eprintln!(
        "{total} requests: {done} answered and {dead} dead letters now, {skipped} from before; {} rescheduled; {} left; {wall:.1} s",
        counts.rescheduled,
        wanted.len()
    );
    if !wanted.is_empty() {
        eprintln!("run the same command again to resume");
        return Ok(ExitCode::from(130));
    }
    Ok(if dead > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

/// A progress line: redrawn in place on a terminal, a plain line every 5 s otherwise.
struct Progress {
    total: usize,
    tty: bool,
    last: Option<Instant>,
    history: std::collections::VecDeque<(Instant, usize)>,
}

impl Progress {
    fn new(total: usize) -> Self {
        Self {
            total,
            tty: std::io::stderr().is_terminal(),
            last: None,
            history: Default::default(),
        }
    }

    fn show(&mut self, done: usize, dead: usize, retried: usize, c: &Counts, elapsed: Duration) {
        let now = Instant::now();
        let every = if self.tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        };
        if self.last.is_some_and(|t| now - t < every) {
            return;
        }
        self.draw(done, dead, retried, c, elapsed);
    }

    /// Draws the line now (the last one whatever the time since the previous).
    fn draw(&mut self, done: usize, dead: usize, retried: usize, c: &Counts, elapsed: Duration) {
        let now = Instant::now();
        self.last = Some(now);
        let finished = done + dead;
        self.history.push_back((now, finished));
        while self
            .history
            .front()
            .is_some_and(|(t, _)| now - *t > Duration::from_secs(10))
        {
            self.history.pop_front();
        }
        // The rate learned over the last 10 s: what the quota lets through.
        let eta = match (self.history.front(), self.history.back()) {
            (Some((t0, n0)), Some((t1, n1))) if t1 > t0 && n1 > n0 => {
                let rate = (n1 - n0) as f64 / (*t1 - *t0).as_secs_f64();
                let left = self.total.saturating_sub(finished) as f64;
                format!("{:.0} s ({rate:.1}/s)", left / rate)
            }
            _ => "-".to_owned(),
        };
        let pct = 100.0 * finished as f64 / self.total.max(1) as f64;
        let line = format!(
            "{finished}/{} ({pct:.0}%)  done {done}  dead {dead}  retried in the client {retried}  rescheduled {}  running {}  ETA {eta}  [{:.0} s]",
            self.total,
            c.rescheduled,
            c.in_flight,
            elapsed.as_secs_f64()
        );
        let mut err = std::io::stderr();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    /// The last line, drawn whatever the time since the one before (so it shows the end).
    fn finish(&mut self, done: usize, dead: usize, retried: usize, c: &Counts, elapsed: Duration) {
        self.draw(done, dead, retried, c, elapsed);
        if self.tty {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_three_line_forms() {
        let a = job_of(
            r#"{"id":"a","request":{"model":"claude-m","max_tokens":5,"messages":[{"role":"user","content":"x"}]},"metadata":{"k":1}}"#,
            1,
        )
        .unwrap();
        assert_eq!((a.id.as_str(), a.request.max_tokens), ("a", 5));
        assert_eq!(a.metadata, Some(serde_json::json!({"k": 1})));
        let b = job_of(
            r#"{"custom_id":"b","params":{"model":"claude-m","max_tokens":5,"messages":[]}}"#,
            2,
        )
        .unwrap();
        assert_eq!(b.id, "b");
        let c = job_of(
            r#"{"model":"claude-m","max_tokens":5,"messages":[],"stream":true}"#,
            7,
        )
        .unwrap();
        assert_eq!(c.id, "line-7");
        assert_eq!(c.request.stream, None);
        for (bad, needle) in [
            ("nope", "not JSON"),
            ("[1]", "not a JSON object"),
            (r#"{"id":3,"request":{}}"#, "must be a string"),
            (
                r#"{"id":"x","request":{"model":"claude-m"}}"#,
                "not a Messages request",
            ),
        ] {
            let e = job_of(bad, 4).unwrap_err();
            assert!(e.contains(needle) && e.starts_with("line 4"), "{e}");
        }
    }

    #[test]
    fn parses_arguments() {
        let p = |s: &str| parse(s.split_whitespace().map(str::to_owned).collect());
        let a = p("run in.jsonl --out o.jsonl --concurrency 4")
            .unwrap()
            .unwrap();
        assert_eq!((a.concurrency, a.workers, a.invalid_dead), (4, true, true));
        let a = p("run in.jsonl --out o.jsonl --invalid abort")
            .unwrap()
            .unwrap();
        assert!(!a.invalid_dead);
        assert!(p("--help").unwrap().is_none());
        for (bad, needle) in [
            ("run in.jsonl", "--out"),
            ("worker", "--redis"),
            ("run a --out b --concurrency 0", "1 to 10000"),
            ("fly", "unknown command"),
            ("run a --out b --bogus", "unknown option"),
            ("run a --out b --invalid skip", "dead or abort"),
        ] {
            let e = p(bad).err().unwrap();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn a_partial_last_line_is_dropped() {
        let dir = std::env::temp_dir().join(format!("bulk-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out.jsonl");
        std::fs::write(&out, "{\"id\":\"a\"}\n{\"id\":\"b\"}\n{\"id\":\"c\",\"mess").unwrap();
        let ids = done_ids(&out).unwrap();
        assert_eq!(ids.len(), 2);
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "{\"id\":\"a\"}\n{\"id\":\"b\"}\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(test)]
mod lock_tests {
    use super::*;

    #[test]
    fn one_writer_per_output_and_the_lock_goes_with_it() {
        let dir = std::env::temp_dir().join(format!("anthropic-bulk-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("results.jsonl");
        let first = lock_output(&out).unwrap();
        let e = lock_output(&out).unwrap_err();
        assert!(
            e.contains(&format!("process {}", std::process::id())) && e.contains("results.jsonl"),
            "{e}"
        );
        // Released with its holder (as when a run is killed): the next run takes it.
        drop(first);
        let again = lock_output(&out).unwrap();
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
