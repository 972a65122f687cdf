//! `anthropic-bulk` as a user runs it: the binary, on the embedded mock (no API key).
#![cfg(all(feature = "cli", feature = "redis"))]

use std::path::Path;
use std::process::{Command, Output};

/// `anthropic-bulk ARGS` in `dir`, without an API key (the embedded mock).
fn command(args: &[&str], dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_anthropic-bulk"));
    c.args(args)
        .current_dir(dir)
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("ANTHROPIC_BASE_URL");
    c
}

fn bulk(args: &[&str], dir: &Path) -> Output {
    command(args, dir).output().expect("anthropic-bulk runs")
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each output line is JSON"))
        .collect()
}

#[test]
fn an_invalid_line_is_a_dead_letter_and_the_run_goes_on_or_stops_when_asked() {
    let dir = std::env::temp_dir().join(format!("bulk-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.jsonl");
    let good = |id: &str| {
        format!(
            r#"{{"id": "{id}", "request": {{"model": "claude-sonnet-4-6", "max_tokens": 8, "messages": [{{"role": "user", "content": "hi"}}]}}}}"#
        )
    };
    let body = [
        good("a"),
        "this is not JSON".to_owned(),
        r#"{"id": "b", "request": {"model": "claude-sonnet-4-6"}}"#.to_owned(),
        good("c"),
    ]
    .join("\n");
    std::fs::write(&input, body).unwrap();

    // --invalid abort: nothing is sent, the line is named, exit 1.
    let out = dir.join("abort.jsonl");
    let o = bulk(
        &[
            "run",
            "in.jsonl",
            "--out",
            "abort.jsonl",
            "--invalid",
            "abort",
        ],
        &dir,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("line 2: not JSON"), "{err}");
    assert!(lines(&out).is_empty());

    // The default: two dead letters (their line, the parse error), two answers, exit 3.
    let out = dir.join("out.jsonl");
    let o = bulk(&["run", "in.jsonl", "--out", "out.jsonl"], &dir);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    let got = lines(&out);
    assert_eq!(got.len(), 4, "{got:?}");
    let by_id = |id: &str| got.iter().find(|v| v["id"] == id).unwrap().clone();
    for id in ["a", "c"] {
        assert_eq!(by_id(id)["status"], "done");
    }
    let bad = by_id("line-2");
    assert_eq!(
        (bad["status"].as_str(), bad["line"].as_u64()),
        (Some("dead"), Some(2))
    );
    assert_eq!(bad["reason"], "invalid_input");
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not JSON")
    );
    let b = by_id("b");
    assert_eq!(
        (b["line"].as_u64(), b["error"]["class"].as_str()),
        (Some(3), Some("invalid_input"))
    );
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a Messages request")
    );

    // Run again: everything is in the output already, nothing is written twice.
    let o = bulk(&["run", "in.jsonl", "--out", "out.jsonl"], &dir);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(lines(&out).len(), 4);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `anthropic-bulk ARGS` in `dir` under a pseudo-terminal (util-linux `script`), and
/// returns what the terminal showed; `None` (with a message) where `script` is missing.
fn on_a_terminal(args: &str, dir: &Path) -> Option<(i32, String)> {
    let cmd = format!("{} {args}", env!("CARGO_BIN_EXE_anthropic-bulk"));
    let out = match Command::new("script")
        .args(["-qefc", &cmd, "/dev/null"])
        .current_dir(dir)
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("ANTHROPIC_BASE_URL")
        .env("COLUMNS", "120")
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("SKIPPED: no `script` to make a pseudo-terminal ({e})");
            return None;
        }
    };
    Some((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

#[test]
fn the_progress_is_a_bar_on_a_terminal_and_plain_lines_elsewhere() {
    let dir = std::env::temp_dir().join(format!("bulk-cli-tty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let line = |i: usize| {
        format!(
            r#"{{"id": "p{i}", "request": {{"model": "claude-sonnet-4-6", "max_tokens": 8, "messages": [{{"role": "user", "content": "hi"}}]}}}}"#
        )
    };
    let body: Vec<String> = (0..20).map(line).collect();
    std::fs::write(dir.join("in.jsonl"), body.join("\n")).unwrap();

    // Not a terminal (the test's pipe): plain lines, the last one at 100%, no escapes.
    let o = bulk(&["run", "in.jsonl", "--out", "plain.jsonl"], &dir);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("20/20 (100%)  done 20"), "{err}");
    assert!(!err.contains('\x1b'), "no terminal codes in a log: {err:?}");

    // A terminal: the bar, its rate and ETA, drawn over itself, ending at 100%.
    let Some((code, shown)) = on_a_terminal("run in.jsonl --out tty.jsonl", &dir) else {
        return;
    };
    assert_eq!(code, 0, "{shown}");
    assert!(
        shown.contains("\x1b["),
        "drawn with terminal codes: {shown:?}"
    );
    assert!(shown.contains("20/20 (100%)"), "{shown:?}");
    assert!(shown.contains("/s ETA "), "{shown:?}");
    assert!(shown.contains("done 20"), "{shown:?}");
    assert_eq!(lines(&dir.join("tty.jsonl")).len(), 20);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ctrl_c_stops_with_130_and_the_same_command_resumes() {
    let dir = std::env::temp_dir().join(format!("bulk-cli-int-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let n = 3000;
    let body: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"id": "c{i}", "request": {{"model": "claude-sonnet-4-6", "max_tokens": 8, "messages": [{{"role": "user", "content": "hi"}}]}}}}"#
            )
        })
        .collect();
    std::fs::write(dir.join("in.jsonl"), body.join("\n")).unwrap();
    let out = dir.join("out.jsonl");
    let args = [
        "run",
        "in.jsonl",
        "--out",
        "out.jsonl",
        "--concurrency",
        "1",
    ];
    let child = command(&args, &dir)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupted once the first outcomes are written (a process is waited on, not timed).
    let started = std::time::Instant::now();
    while lines(&out).is_empty() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "no outcome written"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let first = lines(&out).len();
    if first == n {
        eprintln!("SKIPPED: the run finished before Ctrl-C reached it");
        return;
    }
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert!(
        err.contains("run the same command again to resume"),
        "{err}"
    );
    // The same command carries on from there: every id once.
    let o = bulk(&args, &dir);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let all = lines(&out);
    let ids: std::collections::HashSet<_> = all.iter().map(|v| v["id"].to_string()).collect();
    assert_eq!((all.len(), ids.len()), (n, n));
    assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("resuming: {first} of {n}")));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ctrl_c_while_only_collecting_leaves_the_jobs_queued_and_says_so() {
    use std::io::BufRead;
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let reachable = std::net::TcpStream::connect_timeout(
        &url.trim_start_matches("redis://")
            .trim_end_matches('/')
            .parse()
            .unwrap_or_else(|_| "127.0.0.1:6379".parse().unwrap()),
        std::time::Duration::from_secs(2),
    )
    .is_ok();
    if !reachable {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "Redis at {url} is required under CI=true"
        );
        eprintln!("SKIPPED: Redis at {url} is unreachable; set REDIS_URL to run this test");
        return;
    }
    let dir = std::env::temp_dir().join(format!("bulk-cli-nw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let body: Vec<String> = (0..3)
        .map(|i| {
            format!(
                r#"{{"id": "w{i}", "request": {{"model": "claude-sonnet-4-6", "max_tokens": 8, "messages": [{{"role": "user", "content": "hi"}}]}}}}"#
            )
        })
        .collect();
    std::fs::write(dir.join("in.jsonl"), body.join("\n")).unwrap();
    let queue = format!("bulk-cli-test-{}", std::process::id());
    let args = [
        "run",
        "in.jsonl",
        "--out",
        "out.jsonl",
        "--redis",
        &url,
        "--queue",
        &queue,
        "--no-workers",
    ];
    let mut child = command(&args, &dir)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Collecting (its first progress line): nothing runs the jobs, so it would wait for ever.
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("0/3") {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "ended early: {seen}");
        seen.push_str(&line);
    }
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{seen}{rest}");
    assert!(
        rest.contains("the jobs stay queued for the workers"),
        "{rest}"
    );
    assert!(
        rest.contains("run the same command again to resume"),
        "{rest}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
