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
use clap::{CommandFactory, Parser, Subcommand};
use serde_json::Value;
use tower_anthropic::Client;
use tower_anthropic::messages::CreateMessageRequest;
use tower_anthropic_queue::{
    Backend, Counts, Job, MemoryBackend, Outcome, RedisBackend, WorkerConfig, WorkerPool,
};

/// What `--help` adds after the options.
const AFTER_HELP: &str = "\
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

Without an API key (--api-key or ANTHROPIC_API_KEY) the embedded mock API is started and used
instead, and the command says so.

EXIT CODES:
    0     every request answered
    1     an error stopped the run (a bad input line with --invalid abort, an id twice, an
          unusable output, a store error)
    2     a usage error
    3     finished, with dead letters in the output (invalid input lines included)
    130   interrupted (Ctrl-C) before the end: run the same command again to resume
";

/// Run a JSONL file of Messages API requests through a work queue, resumably.
#[derive(Debug, Parser)]
#[command(name = "anthropic-bulk", version, after_long_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    /// The API key [default: the embedded mock API]
    #[arg(long, env = "ANTHROPIC_API_KEY", hide_env_values = true, global = true)]
    api_key: Option<String>,
    /// The API's base URL
    #[arg(
        long,
        env = "ANTHROPIC_BASE_URL",
        hide_env_values = true,
        global = true
    )]
    base_url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Read one request per line of INPUT, write one outcome per line to --out
    ///
    /// Outcomes are JSON lines, in the order they finish. A run is resumable: ids already in
    /// OUTPUT are skipped, so after a crash or Ctrl-C the same command carries on, and a
    /// SIGKILL loses nothing already written. Ctrl-C stops taking jobs; those running finish
    /// (a second Ctrl-C quits at once). One run writes an OUTPUT at a time: a second one on it
    /// refuses, naming the first (OUTPUT.lock holds its process id).
    Run(RunArgs),
    /// Run the jobs of a Redis queue until Ctrl-C (start as many as you like, anywhere)
    Worker(WorkerArgs),
    /// Print a completion script for a shell
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The requests, one JSON object per line
    input: PathBuf,
    /// The output file (JSON lines; appended to, and read on resume)
    #[arg(long)]
    out: PathBuf,
    /// Keep the queue in Redis, shared with `worker` processes
    #[arg(long, env = "ANTHROPIC_BULK_REDIS", hide_env_values = true)]
    redis: Option<String>,
    /// Only enqueue and collect: the workers run elsewhere
    #[arg(long, requires = "redis")]
    no_workers: bool,
    /// What an input line that is no request (not JSON, not a Messages request) becomes
    #[arg(long, value_enum, default_value_t = Invalid::Dead)]
    invalid: Invalid,
    #[command(flatten)]
    work: WorkArgs,
}

#[derive(Debug, clap::Args)]
struct WorkerArgs {
    /// The Redis holding the queue
    #[arg(long, env = "ANTHROPIC_BULK_REDIS", hide_env_values = true)]
    redis: String,
    #[command(flatten)]
    work: WorkArgs,
}

#[derive(Debug, clap::Args)]
struct WorkArgs {
    /// Jobs running at once in this process
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    concurrency: u16,
    /// The queue's key prefix in Redis
    #[arg(long, default_value = "anthropic-bulk")]
    queue: String,
    /// Failed runs before a job is a dead letter
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    max_attempts: u32,
    /// A running job's lease, in seconds: a worker that dies has its jobs run again this long
    /// after its last renewal
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    lease: u64,
}

/// What an invalid input line becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Invalid {
    /// A dead letter in the output (its line and the error); the run goes on
    Dead,
    /// The run stops before anything is sent
    Abort,
}

/// What a run or a worker does, from the command line.
struct Args {
    command: &'static str,
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
    api_key: Option<String>,
    base_url: Option<String>,
}

impl Args {
    fn of(cli: Cli) -> Option<Self> {
        let (command, input, out, redis, workers, invalid_dead, work) = match cli.command {
            Cmd::Run(r) => (
                "run",
                Some(r.input),
                Some(r.out),
                r.redis,
                !r.no_workers,
                r.invalid == Invalid::Dead,
                r.work,
            ),
            Cmd::Worker(w) => ("worker", None, None, Some(w.redis), true, true, w.work),
            Cmd::Completions { .. } => return None,
        };
        Some(Self {
            command,
            input,
            out,
            concurrency: usize::from(work.concurrency),
            redis,
            queue: work.queue,
            workers,
            max_attempts: work.max_attempts,
            lease: Duration::from_secs(work.lease),
            invalid_dead,
            api_key: cli.api_key.filter(|k| !k.trim().is_empty()),
            base_url: cli.base_url.filter(|u| !u.trim().is_empty()),
        })
    }
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
async fn client(args: &Args) -> Result<(Client, Option<MockServer>), String> {
    if let Some(key) = &args.api_key {
        let mut b = Client::builder().api_key(key.clone());
        if let Some(url) = &args.base_url {
            b = b.base_url(url.clone());
        }
        return Ok((b.build().map_err(|e| e.to_string())?, None));
    }
    let mock = MockServer::start(MockConfig::default())
        .await
        .map_err(|e| format!("cannot start the embedded mock: {e}"))?;
    eprintln!(
        "no API key (--api-key, ANTHROPIC_API_KEY): using the embedded mock API at {} (answers are made up)",
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
    let cli = Cli::parse();
    if let Cmd::Completions { shell } = cli.command {
        let mut cmd = Cli::command();
        clap_complete::generate(shell, &mut cmd, "anthropic-bulk", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    let Some(args) = Args::of(cli) else {
        return ExitCode::SUCCESS;
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("anthropic-bulk: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let r = rt.block_on(async move {
        match (&args.redis, args.command) {
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
    let (client, _mock) = client(args).await?;
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

/// The run's progress on stderr: a bar (indicatif: counts, rate, ETA) on a terminal, a plain
/// line every 5 s otherwise (a log, a pipe).
struct Progress {
    total: usize,
    bar: Option<indicatif::ProgressBar>,
    last: Option<Instant>,
    history: std::collections::VecDeque<(Instant, usize)>,
}

impl Progress {
    fn new(total: usize) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(total as u64),
                indicatif::ProgressDrawTarget::stderr_with_hz(5),
            );
            // The counts take what the terminal's width leaves (`wide_msg` cuts them to fit:
            // a wrapped line would be drawn again below itself).
            let style = indicatif::ProgressStyle::with_template(
                "{bar:20.cyan/blue} {pos}/{len} ({percent}%) {rate} ETA {eta}  {wide_msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .with_key(
                "rate",
                |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.1}/s", s.per_sec());
                },
            );
            bar.set_style(style.progress_chars("=> "));
            bar
        });
        Self {
            total,
            bar,
            last: None,
            history: Default::default(),
        }
    }

    fn show(&mut self, done: usize, dead: usize, retried: usize, c: &Counts, elapsed: Duration) {
        if self.bar.is_none()
            && self
                .last
                .is_some_and(|t| Instant::now() - t < Duration::from_secs(5))
        {
            return;
        }
        self.draw(done, dead, retried, c, elapsed);
    }

    /// Draws the line now (the last one whatever the time since the previous).
    fn draw(&mut self, done: usize, dead: usize, retried: usize, c: &Counts, elapsed: Duration) {
        let finished = done + dead;
        let counts = format!(
            "done {done}  dead {dead}  retried in the client {retried}  rescheduled {}  running {}",
            c.rescheduled, c.in_flight
        );
        if let Some(bar) = &self.bar {
            bar.set_position(finished as u64);
            bar.set_message(counts);
            return;
        }
        let now = Instant::now();
        self.last = Some(now);
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
        eprintln!(
            "{finished}/{} ({pct:.0}%)  {counts}  ETA {eta}  [{:.0} s]",
            self.total,
            elapsed.as_secs_f64()
        );
    }

    /// The last line, drawn whatever the time since the one before (so it shows the end).
    fn finish(&mut self, done: usize, dead: usize, retried: usize, c: &Counts, elapsed: Duration) {
        self.draw(done, dead, retried, c, elapsed);
        if let Some(bar) = &self.bar {
            bar.abandon();
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
        Cli::command().debug_assert();
        let p = |s: &str| {
            Cli::try_parse_from(std::iter::once("anthropic-bulk").chain(s.split_whitespace()))
                .map_err(|e| e.to_string())
        };
        let a = Args::of(p("run in.jsonl --out o.jsonl --concurrency 4").unwrap()).unwrap();
        assert_eq!((a.concurrency, a.workers, a.invalid_dead), (4, true, true));
        assert_eq!((a.command, a.lease), ("run", Duration::from_secs(60)));
        let a = Args::of(p("run in.jsonl --out o.jsonl --invalid abort").unwrap()).unwrap();
        assert!(!a.invalid_dead);
        let a = Args::of(p("worker --redis redis://x --max-attempts 2").unwrap()).unwrap();
        assert_eq!((a.command, a.max_attempts), ("worker", 2));
        assert!(Args::of(p("completions bash").unwrap()).is_none());
        for (bad, needle) in [
            ("run in.jsonl", "--out"),
            ("worker", "--redis"),
            ("run a --out b --concurrency 0", "--concurrency"),
            ("run a --out b --lease 0", "--lease"),
            ("fly", "fly"),
            ("run a --out b --bogus", "--bogus"),
            ("run a --out b --invalid skip", "--invalid"),
            ("run a --out b --no-workers", "--redis"),
        ] {
            let e = p(bad).err().unwrap_or_else(|| panic!("{bad}: accepted"));
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn a_completion_script_names_the_commands() {
        let mut out = Vec::new();
        let mut cmd = Cli::command();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut cmd,
            "anthropic-bulk",
            &mut out,
        );
        let script = String::from_utf8(out).unwrap();
        assert!(script.contains("anthropic-bulk") && script.contains("worker"));
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
