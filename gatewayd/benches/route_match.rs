//! Route matching cost: 10 routes vs 1,000 routes (the match must stay flat with host buckets),
//! and 1,000 path templates shaped like a large REST API (`/repos/{owner}/{repo}/…`, most of
//! them under one first segment, as OpenAPI imports produce).
#![allow(clippy::unwrap_used)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use gatewayd::config;
use gatewayd::route::RouteTable;

fn table(n: usize) -> RouteTable {
    let mut src = String::from("[services.s]\nendpoints = [\"127.0.0.1:1\"]\n");
    for i in 0..n {
        src.push_str(&format!(
            "[[routes]]\nname = \"r{i}\"\nhost = \"svc{i}.example.com\"\npath_prefix = \"/api/v{}/\"\nbackends = [{{ name = \"s\", weight = 1 }}]\n",
            i % 3
        ));
    }
    src.push_str("[[routes]]\nname = \"default\"\nbackends = [{ name = \"s\", weight = 1 }]\n");
    RouteTable::new(&config::from_str(&src, "bench.toml").unwrap().routes)
}

/// `n` templated routes: `/repos/{owner}/{repo}/r{i}/{id}` and friends, one method each.
fn templates(n: usize) -> RouteTable {
    let mut src = String::from("[services.s]\nendpoints = [\"127.0.0.1:1\"]\n");
    for i in 0..n {
        let (template, method) = match i % 4 {
            0 => (format!("/repos/{{owner}}/{{repo}}/r{i}"), "GET"),
            1 => (format!("/repos/{{owner}}/{{repo}}/r{i}/{{id}}"), "GET"),
            2 => (format!("/repos/{{owner}}/{{repo}}/r{i}/{{id}}"), "DELETE"),
            _ => (format!("/orgs/{{org}}/o{i}/{{id}}.json"), "POST"),
        };
        src.push_str(&format!(
            "[[routes]]\nname = \"t{i}\"\npath_template = \"{template}\"\nmethods = [\"{method}\"]\nbackends = [{{ name = \"s\", weight = 1 }}]\n"
        ));
    }
    RouteTable::new(&config::from_str(&src, "bench.toml").unwrap().routes)
}

fn bench(c: &mut Criterion) {
    let t = templates(1000);
    let hit = http::Request::builder()
        .method("DELETE")
        .uri("/repos/octo/hello/r998/42")
        .body(())
        .unwrap();
    let miss = http::Request::builder()
        .uri("/repos/octo/hello/nope/42")
        .body(())
        .unwrap();
    c.bench_function("route_match/1000_templates/hit", |b| {
        b.iter(|| black_box(t.match_request(black_box(&hit))))
    });
    c.bench_function("route_match/1000_templates/miss", |b| {
        b.iter(|| black_box(t.match_request(black_box(&miss))))
    });
    for n in [10usize, 1000] {
        let t = table(n);
        let hit = http::Request::builder()
            .uri("/api/v1/users/42")
            .header("host", format!("svc{}.example.com", n - 2))
            .body(())
            .unwrap();
        let miss = http::Request::builder()
            .uri("/other")
            .header("host", "unknown.example.org")
            .body(())
            .unwrap();
        c.bench_function(&format!("route_match/{n}_routes/host_hit"), |b| {
            b.iter(|| black_box(t.match_request(black_box(&hit))))
        });
        c.bench_function(&format!("route_match/{n}_routes/fallthrough"), |b| {
            b.iter(|| black_box(t.match_request(black_box(&miss))))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
