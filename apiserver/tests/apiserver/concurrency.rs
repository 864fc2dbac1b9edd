//! Many pods reserving one shared claim at the same moment (the heart of the design).

use super::*;
use std::sync::Arc;

async fn reserve_concurrently(
    n: usize,
) -> (Vec<Result<ResourceClaim, kube::Error>>, ResourceClaim) {
    let (_s, client) = setup();
    let c = allocated_claim(&client, "shared").await;
    let uid = c.metadata.uid.clone().unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let claims: Api<ResourceClaim> = Api::default_namespaced(client.clone());
            let (uid, barrier) = (uid.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let patch = json!({"metadata": {"uid": uid},
                    "status": {"reservedFor": [{"resource": "pods", "name": format!("pod-{i}"), "uid": format!("pod-uid-{i}")}]}});
                claims.patch_status("shared", &PatchParams::default(), &Patch::Strategic(patch)).await
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let claims: Api<ResourceClaim> = Api::default_namespaced(client);
    let last = claims.get("shared").await.unwrap();
    (results, last)
}

fn reserved(c: &ResourceClaim) -> usize {
    c.status
        .as_ref()
        .and_then(|s| s.reserved_for.as_ref())
        .map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_reservations_all_land() {
    let (results, last) = reserve_concurrently(200).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(reserved(&last), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_257_concurrent_reservations_exactly_the_last_is_rejected() {
    let (results, last) = reserve_concurrently(257).await;
    let failed: Vec<kube::core::Status> = results
        .into_iter()
        .filter_map(|r| r.err())
        .map(status)
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].code, 422);
    assert!(
        failed[0]
            .message
            .ends_with("status.reservedFor: Too many: 257: must have at most 256 items")
    );
    assert_eq!(reserved(&last), 256);
}
