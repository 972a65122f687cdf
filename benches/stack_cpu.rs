//! CPU cost of each layer, without a network: the stack over an in-memory service that
//! answers at once with a canned `Message`, a request id and the API's twelve rate-limit
//! headers (`benches::canned`), so the pacer does its per-answer work. `typed_default_stack`
//! is composed as `Client::build` composes it by default and called as `Client` calls it
//! (`MessagesService::create`, as every stack here); `bare_value_parse_api_headers` is
//! the bare call over the same answer, its floor. The same two, counted in instructions by
//! callgrind: `benches/callgrind.sh N1 N2 canned`.
//!
//! `cargo bench --bench stack_cpu`

// criterion's macros generate undocumented functions.
#![allow(missing_docs)]

use std::time::Duration;

use benches::canned::{self, canned, endpoint, request as req};
use criterion::{Criterion, criterion_group, criterion_main};
use tower::ServiceBuilder;
use tower_anthropic::ServiceBuilderExt;
use tower_anthropic::messages::MessagesService;
use tower_anthropic::pacing::Pacer;
use tower_anthropic::retry::RetryPolicy;

fn stack_cpu(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("stack_cpu");
    let typed = MessagesService::new(
        ServiceBuilder::new().classify_responses().service(canned()),
        endpoint(),
    );
    // The bare call over the same answer (with the headers the default stack gets): the floor
    // that `typed_default_stack` is compared with.
    g.bench_function("bare_value_parse_api_headers", |b| {
        let svc = canned();
        b.to_async(&rt).iter(|| canned::bare_once(&svc))
    });
    g.bench_function("typed_classify", |b| {
        b.to_async(&rt).iter(|| typed.create(req()))
    });
    let retry = MessagesService::new(
        ServiceBuilder::new()
            .retry_api_errors(RetryPolicy::new())
            .classify_responses()
            .service(canned()),
        endpoint(),
    );
    g.bench_function("typed_retry_classify", |b| {
        b.to_async(&rt).iter(|| retry.create(req()))
    });
    let full = MessagesService::new(
        ServiceBuilder::new()
            .retry_api_errors(RetryPolicy::new())
            .attempt_timeout(Duration::from_secs(600))
            .stream_idle_timeout(Duration::from_secs(120))
            .concurrency_limit_until_body_end(1 << 20)
            .classify_responses()
            .service(canned()),
        endpoint(),
    );
    g.bench_function("typed_full_stack", |b| {
        b.to_async(&rt).iter(|| full.create(req()))
    });
    let no_limit = MessagesService::new(
        ServiceBuilder::new()
            .retry_api_errors(RetryPolicy::new())
            .attempt_timeout(Duration::from_secs(600))
            .stream_idle_timeout(Duration::from_secs(120))
            .classify_responses()
            .service(canned()),
        endpoint(),
    );
    g.bench_function("typed_stack_without_limit", |b| {
        b.to_async(&rt).iter(|| no_limit.create(req()))
    });
    // As `Client::build` composes it, with or without the pacer.
    let default_stack = canned::default_stack;
    let paced = default_stack(Some(Pacer::new()));
    g.bench_function("typed_default_stack", |b| {
        b.to_async(&rt).iter(|| paced.create(req()))
    });
    // The same without the pacer: what pacing costs per call.
    let unpaced = default_stack(None);
    g.bench_function("typed_default_stack_unpaced", |b| {
        b.to_async(&rt).iter(|| unpaced.create(req()))
    });
    let no_budget = MessagesService::new(
        ServiceBuilder::new()
            .retry_api_errors(RetryPolicy::new().budget(None))
            .classify_responses()
            .service(canned()),
        endpoint(),
    );
    g.bench_function("typed_retry_no_budget_classify", |b| {
        b.to_async(&rt).iter(|| no_budget.create(req()))
    });
    g.finish();
}

criterion_group!(benches, stack_cpu);
criterion_main!(benches);
