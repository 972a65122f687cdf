//! The `anthropic-mock` binary: its first line, its help, bad flags, and a clean stop.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_anthropic-mock");

#[test]
fn prints_its_url_serves_and_stops_cleanly_on_sigterm() {
    let mut child = Command::new(BIN)
        .args(["--rpm", "50", "--p529", "0", "--seed", "7"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .expect("the first line names the URL");
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");

    // One raw HTTP/1.1 request: the rate limit flag is in force.
    let addr = url.strip_prefix("http://").unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let body = r#"{"model":"claude-m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;
    write!(
        s,
        "POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: k\r\nanthropic-version: 2023-06-01\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        resp.contains("anthropic-ratelimit-requests-limit: 50"),
        "{resp}"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "a clean exit on SIGTERM, got {status:?}");
}

#[test]
fn help_documents_every_option() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--addr",
        "--key",
        "--threads",
        "--log-capacity",
        "--rpm",
        "--itpm",
        "--otpm",
        "--output-tokens",
        "--ttfb",
        "--tps",
        "--ping-every",
        "--seed",
        "--p529",
        "--p500",
        "--p503",
        "--p502",
        "--p-reset",
        "--p-stall",
        "--stall",
        "--outage",
        "--outage-every",
        "--outage-kind",
        "/_mock/script",
    ] {
        assert!(help.contains(flag), "--help does not mention {flag}");
    }
}

#[test]
fn bad_flags_exit_non_zero_with_a_message() {
    for args in [
        &["--p529", "2"][..],
        &["--nope"],
        &["--rpm"],
        &["--addr", "not-an-address"],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        // The error names the flag it is about.
        assert!(err.starts_with("error: ") && err.contains(args[0]), "{err}");
        assert!(out.stdout.is_empty());
    }
}
