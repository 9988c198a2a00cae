//! Split choice and balancer pick per request.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use discovery::Endpoint;
use gatewayd::balance::{Balancer, EndpointRuntime, EndpointStats};
use gatewayd::config::{BalancePolicy, OnEmptyBackend, RequestKey};
use gatewayd::split::Split;
use rand::rngs::SmallRng;
use rand::SeedableRng;

fn bench(c: &mut Criterion) {
    let mut rng = SmallRng::seed_from_u64(7);
    let eps: Vec<EndpointRuntime> = (0..10u16)
        .map(|i| {
            EndpointRuntime::new(
                Endpoint::new(format!("127.0.0.1:{}", 2000 + i).parse().unwrap())
                    .with_weight(1 + u32::from(i % 3)),
                Arc::new(EndpointStats::default()),
            )
        })
        .collect();
    for policy in [
        BalancePolicy::RoundRobin,
        BalancePolicy::WeightedRoundRobin,
        BalancePolicy::P2cLeastRequest,
        BalancePolicy::P2cEwma,
    ] {
        let b = Balancer::new(policy, &eps);
        c.bench_function(
            &format!("balance_pick/{}/10_endpoints", policy.as_str()),
            |bn| bn.iter(|| black_box(b.pick(&eps, 1, None, &mut rng))),
        );
    }
    let req = http::Request::builder()
        .uri("/")
        .header("cookie", "a=1; session=user-42; b=2")
        .body(())
        .unwrap();
    let weighted = Split::new(vec![90, 10], vec![], None, OnEmptyBackend::Failover);
    c.bench_function("split_choose/weighted", |b| {
        b.iter(|| black_box(weighted.choose(black_box(&req), |_| true, &mut rng)))
    });
    let sticky = Split::new(
        vec![90, 10],
        vec![],
        Some(RequestKey::Cookie("session".into())),
        OnEmptyBackend::Failover,
    );
    c.bench_function("split_choose/sticky_cookie", |b| {
        b.iter(|| black_box(sticky.choose(black_box(&req), |_| true, &mut rng)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
