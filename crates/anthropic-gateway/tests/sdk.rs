//! The official SDKs, Python and TypeScript, pointed at the gateway with faults injected
//! upstream: they must take the gateway for the API (answers, streams, errors typed as the
//! API's, request ids, token counts, models, batches).
//!
//! Needs a Python with `anthropic` (`TOWER_ANTHROPIC_SDK_PYTHON`, else
//! `benches/peers/.venv/bin/python`) and Node.js with `@anthropic-ai/sdk` in
//! `tests/node/node_modules` (`npm ci` there); `.ci/run` installs both. Each test skips with
//! a message when its SDK is missing, except under `CI=true`, where it fails.

mod common;

use std::path::{Path, PathBuf};

use anthropic_mock::MockConfig;
use common::*;

fn here() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `program args` against a fresh gateway (alice: every model; bob: Haiku only) and
/// returns its output once every check passed.
async fn run_checks(program: &Path, script: &Path) -> String {
    // (No breakers: the scripts' fault storms would open the model's circuit, which the
    // in-process tests cover; here each fault must reach the SDK as the API's.)
    let toml = format!("{}\n[breaker]\nenabled = false\n", keys_toml());
    let gw = start(&toml, MockConfig::default()).await;
    let out = tokio::process::Command::new(program)
        .arg(script)
        .args([&gw.url, &gw.mock.url(), ALICE, BOB])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the SDK's checks failed:\n{stdout}\n{stderr}"
    );
    assert!(!stdout.contains("FAIL"), "{stdout}");
    stdout
}

/// `expected` checks ran, and passed.
fn assert_all_ran(expected: usize, stdout: &str) {
    let passed = stdout.lines().filter(|l| l.starts_with("ok ")).count();
    assert_eq!(passed, expected, "every check ran and passed:\n{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_against_the_gateway() {
    let root = here().join("../..");
    let python = std::env::var("TOWER_ANTHROPIC_SDK_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("benches/peers/.venv/bin/python"));
    let has_sdk = std::process::Command::new(&python)
        .args(["-c", "import anthropic"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_sdk {
        skip(&format!(
            "no Python with the anthropic SDK at {} (set TOWER_ANTHROPIC_SDK_PYTHON, or run .ci/run once)",
            python.display()
        ));
        return;
    }
    let script = here().join("tests/sdk_python.py");
    let stdout = run_checks(&python, &script).await;
    assert_all_ran(26, &stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_against_the_gateway() {
    let dir = here().join("tests/node");
    let has_node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_node
        || !dir
            .join("node_modules/@anthropic-ai/sdk/package.json")
            .exists()
    {
        skip(&format!(
            "no Node.js or no @anthropic-ai/sdk in {} (run `npm ci` there, as .ci/run does)",
            dir.display()
        ));
        return;
    }
    let script = dir.join("sdk_typescript.mjs");
    let stdout = run_checks(Path::new("node"), &script).await;
    assert_all_ran(15, &stdout);
}
