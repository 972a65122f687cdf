//! Metrics through the `metrics` facade (feature `metrics`), read back with a debugging
//! recorder. Paused time.
#![cfg(feature = "metrics")]

use std::collections::BTreeMap;

use anthropic_mock::{MockConfig, MockServer, ScriptEntry};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tower_anthropic::Client;
use tower_anthropic::messages::CreateMessageRequest;
use tower_anthropic::retry::{JitterSource, RetryPolicy};

/// Every metric as `name{label=value,...}` -> value (counters and gauges as numbers,
/// histograms as their number of samples and their sum).
fn read(snapshotter: &metrics_util::debugging::Snapshotter) -> BTreeMap<String, (f64, f64)> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(k, _, _, v)| {
            let key = k.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            let value = match v {
                DebugValue::Counter(n) => (n as f64, n as f64),
                DebugValue::Gauge(g) => (g.into_inner(), g.into_inner()),
                DebugValue::Histogram(h) => {
                    (h.len() as f64, h.iter().map(|x| x.into_inner()).sum())
                }
            };
            (name, value)
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn calls_attempts_retries_tokens_and_errors_are_measured() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = Client::builder()
        .api_key("sk-ant-test")
        .base_url(s.url())
        .default_header("x-mock-key", "metrics")
        .retry_policy(
            RetryPolicy::new()
                .max_retries(1)
                .jitter_source(JitterSource::seeded(1)),
        )
        .build()
        .unwrap();
    let req = || CreateMessageRequest::new("claude-sonnet-4-6", 8).user("hi");
    // One clean call, one retried after a 529, one that fails with two 529s.
    c.messages().create(req()).await.unwrap();
    s.script("metrics", [ScriptEntry::status(529)]);
    c.messages().create(req()).await.unwrap();
    s.script("metrics", std::iter::repeat_n(ScriptEntry::status(529), 2));
    c.messages().create(req()).await.unwrap_err();

    let m = read(&snapshotter);
    let get = |k: &str| {
        m.get(k)
            .copied()
            .unwrap_or_else(|| panic!("{k} missing in {m:#?}"))
    };
    let model = "gen_ai.request.model=claude-sonnet-4-6";
    assert_eq!(
        get(&format!("gen_ai.client.operation.duration{{{model}}}")).0,
        2.0
    );
    assert_eq!(
        get(&format!(
            "gen_ai.client.operation.duration{{error.type=Overloaded,{model}}}"
        ))
        .0,
        1.0
    );
    let out = get(&format!(
        "gen_ai.client.token.usage{{{model},gen_ai.token.type=output}}"
    ));
    assert_eq!(out, (2.0, 16.0), "two answers of 8 tokens");
    assert_eq!(
        get("anthropic.client.attempts{http.response.status_code=200}").0,
        2.0
    );
    assert_eq!(
        get("anthropic.client.attempts{http.response.status_code=529}").0,
        3.0
    );
    assert_eq!(get("anthropic.client.retries{reason=backoff}").0, 2.0);
    assert_eq!(get("anthropic.client.errors{error.type=Overloaded}").0, 1.0);
    assert_eq!(
        get("anthropic.client.calls_in_flight{}").0,
        0.0,
        "all calls finished"
    );

    // The pacer's headroom, per quota (model class) and bucket: learned from the answers.
    let limits = anthropic_mock::RateLimits {
        requests_per_minute: 60,
        input_tokens_per_minute: 100_000,
        output_tokens_per_minute: 8_000,
        max_burst_from_idle: None,
    };
    let strict = MockServer::start(MockConfig {
        limits,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let c = Client::builder()
        .api_key("sk-ant-test")
        .base_url(strict.url())
        .build()
        .unwrap();
    // The gauges are set at most every 250 ms per quota: 300 ms apart, each call's shows.
    for _ in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        c.messages()
            .create(CreateMessageRequest::new("claude-haiku-4-5", 8).user("hi"))
            .await
            .unwrap();
    }
    let m = read(&snapshotter);
    let get = |k: &str| {
        m.get(k)
            .copied()
            .unwrap_or_else(|| panic!("{k} missing in {m:#?}"))
            .0
    };
    let q = "quota=claude-haiku-4-5";
    assert_eq!(
        get(&format!(
            "anthropic.client.pacer.limit{{bucket=requests,{q}}}"
        )),
        60.0
    );
    assert_eq!(
        get(&format!(
            "anthropic.client.pacer.limit{{bucket=output_tokens,{q}}}"
        )),
        8_000.0
    );
    let left = get(&format!(
        "anthropic.client.pacer.remaining{{bucket=requests,{q}}}"
    ));
    assert!((56.0..=58.0).contains(&left), "3 of 60 used: {left}");
    let out_left = get(&format!(
        "anthropic.client.pacer.remaining{{bucket=output_tokens,{q}}}"
    ));
    assert!(out_left < 8_000.0 && out_left > 7_000.0, "{out_left}");
    assert_eq!(get(&format!("anthropic.client.pacer.waiting{{{q}}}")), 0.0);

    // Within 250 ms of the last setting, calls leave the gauges as they are; after, the next
    // call sets them again.
    let key = format!("anthropic.client.pacer.remaining{{bucket=requests,{q}}}");
    for _ in 0..3 {
        c.messages()
            .create(CreateMessageRequest::new("claude-haiku-4-5", 8).user("hi"))
            .await
            .unwrap();
    }
    // (The debugging recorder's snapshot takes a gauge's value and leaves 0 behind: 0 means
    // nothing set it since the last read.)
    assert_eq!(
        read(&snapshotter)[&key].0,
        0.0,
        "not set again within 250 ms"
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    c.messages()
        .create(CreateMessageRequest::new("claude-haiku-4-5", 8).user("hi"))
        .await
        .unwrap();
    let now_left = read(&snapshotter)[&key].0;
    assert!(
        now_left > 0.0 && now_left < left - 2.0,
        "set again: {now_left} after {left}"
    );

    // Model names a caller controls never grow the labels without bound: 100 names of 4 KiB
    // and 100 distinct short ones give at most MAX_MODEL_LABELS values, then `other`.
    let c = Client::builder()
        .api_key("sk-ant-test")
        .base_url(s.url())
        .max_retries(0)
        .build()
        .unwrap();
    for i in 0..100 {
        let long = format!("{i}{}", "m".repeat(4096));
        let _ = c
            .messages()
            .create(CreateMessageRequest::new(long, 8).user("hi"))
            .await;
        let _ = c
            .messages()
            .create(CreateMessageRequest::new(format!("model-{i}"), 8).user("hi"))
            .await;
    }
    let models: std::collections::BTreeSet<String> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .flat_map(|(k, _, _, _)| {
            k.key()
                .labels()
                .filter(|l| l.key() == "gen_ai.request.model" || l.key() == "quota")
                .map(|l| l.value().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        models.len() <= tower_anthropic::metrics::MAX_MODEL_LABELS + 1,
        "{} label values",
        models.len()
    );
    assert!(models.contains("other"));
    assert!(
        models.iter().all(|m| m.len() <= 64),
        "no long name is a label"
    );
}
