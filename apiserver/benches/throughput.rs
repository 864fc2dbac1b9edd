//! Throughput and latency of the embedded API server through an in-process `kube::Client`.
//!
//! `cargo bench -p embedded-apiserver --bench throughput` (or run the built binary) prints creates/s, strategic-merge
//! patches/s, bindings/s and watch event latency with 10 watchers. Set `BENCH_N` to change the
//! number of operations per phase (default 20000) and `BENCH_CONCURRENCY` the number of client
//! tasks (default 64).

use std::sync::Arc;
use std::time::{Duration, Instant};

use embedded_apiserver::ApiServer;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Binding, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::{Value, json};

fn small_pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                 "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}
    }))
    .unwrap()
}

/// Runs `n` operations on `concurrency` tasks; returns operations per second.
async fn run<F, Fut>(n: usize, concurrency: usize, op: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (op, next) = (op.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    op(i).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn bench() {
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let concurrency: usize = std::env::var("BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let server = ApiServer::new();
    let pods: Api<Pod> = Api::default_namespaced(server.client());
    println!(
        "embedded-apiserver benchmark: {n} operations per phase, {concurrency} client tasks, in-process kube::Client"
    );

    let p = pods.clone();
    let creates = run(n, concurrency, move |i| {
        let p = p.clone();
        async move {
            p.create(&PostParams::default(), &small_pod(&format!("pod-{i}")))
                .await
                .unwrap();
        }
    })
    .await;
    println!("creates:                  {creates:>10.0} /s");

    let p = pods.clone();
    let patches = run(n, concurrency, move |i| {
        let p = p.clone();
        async move {
            let patch = Patch::Strategic(json!({"metadata": {"labels": {"step": i.to_string()}}}));
            p.patch(&format!("pod-{i}"), &PatchParams::default(), &patch)
                .await
                .unwrap();
        }
    })
    .await;
    println!("strategic-merge patches:  {patches:>10.0} /s");

    let p = pods.clone();
    let bindings = run(n, concurrency, move |i| {
        let p = p.clone();
        async move {
            let name = format!("pod-{i}");
            let b: Binding = serde_json::from_value(json!({
                "metadata": {"name": name}, "target": {"kind": "Node", "name": format!("node-{}", i % 100)}
            }))
            .unwrap();
            p.create_subresource::<_, Value>("binding", &name, &PostParams::default(), &b).await.unwrap();
        }
    })
    .await;
    println!("bindings:                 {bindings:>10.0} /s");

    // Watch latency: 10 watchers, one writer creating pods one after another.
    let watched: Api<Pod> = Api::namespaced(server.client(), "kube-system");
    let rv = server.resource_version().to_string();
    let rounds = 1000usize;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    for _ in 0..10 {
        let mut stream = watched
            .watch(&WatchParams::default().timeout(300), &rv)
            .await
            .unwrap()
            .boxed();
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(Ok(ev)) = stream.next().await {
                if let WatchEvent::Added(p) = ev {
                    let i: usize = p
                        .metadata
                        .name
                        .unwrap()
                        .trim_start_matches("w-")
                        .parse()
                        .unwrap();
                    let _ = tx.send((i, Instant::now()));
                }
            }
        });
    }
    drop(tx);
    let mut latencies = Vec::with_capacity(rounds * 10);
    for i in 0..rounds {
        let sent = Instant::now();
        watched
            .create(&PostParams::default(), &small_pod(&format!("w-{i}")))
            .await
            .unwrap();
        for _ in 0..10 {
            let (j, at) = rx.recv().await.unwrap();
            assert_eq!(i, j);
            latencies.push(at - sent);
        }
    }
    latencies.sort();
    println!(
        "watch latency (10 watchers, create -> event): p50 {:?}  p99 {:?}  max {:?}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().unwrap()
    );
}

fn main() {
    // The scheduler's benchmarks run on 2 cores; measure the same way.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bench());
}
