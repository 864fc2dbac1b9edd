//! The machine's real kubectl against the loopback server. Fails (does not skip) when kubectl is
//! missing.

use super::*;
use std::path::Path;
use std::process::Command;

const KUBECTL: &str = "/usr/bin/kubectl";

const EVERY_KIND: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: demo}
---
apiVersion: v1
kind: Node
metadata:
  name: node-a
  labels: {kubernetes.io/hostname: node-a}
status:
  capacity: {cpu: "8", memory: 32Gi, pods: "110"}
  allocatable: {cpu: "8", memory: 32Gi, pods: "110"}
  conditions:
  - {type: Ready, status: "True", reason: KubeletReady, message: fake, lastHeartbeatTime: "2026-01-01T00:00:00Z", lastTransitionTime: "2026-01-01T00:00:00Z"}
---
apiVersion: resource.k8s.io/v1
kind: DeviceClass
metadata: {name: gpu.example.com}
spec:
  selectors:
  - cel: {expression: 'device.driver == "gpu.example.com"'}
---
apiVersion: resource.k8s.io/v1
kind: ResourceSlice
metadata: {name: node-a-gpu.example.com}
spec:
  driver: gpu.example.com
  nodeName: node-a
  pool: {name: node-a, generation: 1, resourceSliceCount: 1}
  devices:
  - name: gpu-0
    attributes:
      model: {string: LATEST-GPU-MODEL}
    capacity:
      memory: {value: 80Gi}
---
apiVersion: resource.k8s.io/v1
kind: ResourceClaim
metadata: {name: one-gpu, namespace: demo}
spec:
  devices:
    requests:
    - name: gpu
      exactly: {deviceClassName: gpu.example.com}
---
apiVersion: resource.k8s.io/v1
kind: ResourceClaimTemplate
metadata: {name: gpu-template, namespace: demo}
spec:
  spec:
    devices:
      requests:
      - name: gpu
        exactly: {deviceClassName: gpu.example.com}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: demo}
spec:
  resourceClaims: [{name: gpu, resourceClaimTemplateName: gpu-template}]
  containers:
  - name: app
    image: registry.k8s.io/pause:3.10
    resources: {claims: [{name: gpu}]}
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: demo-lease, namespace: demo}
spec: {holderIdentity: me, leaseDurationSeconds: 15}
---
apiVersion: v1
kind: Event
metadata: {name: web.1, namespace: demo}
involvedObject: {kind: Pod, name: web, namespace: demo}
reason: Testing
message: hello
type: Normal
"#;

fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {KUBECTL} (it is required for this test): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if std::env::var_os("KUBECTL_TRACE").is_some() {
        eprintln!("$ kubectl {}\n{stdout}{stderr}", args.join(" "));
    }
    assert!(
        out.status.success(),
        "kubectl {args:?} failed:\nstdout: {stdout}\nstderr: {stderr}"
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_kubectl_creates_applies_gets_and_patches_every_kind() {
    assert!(
        Path::new(KUBECTL).exists(),
        "{KUBECTL} is missing; this test needs the real kubectl"
    );
    let (server, client) = setup();
    let handle = server.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let kc = handle.kubeconfig_path.clone();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("every-kind.yaml");
    std::fs::write(&manifest, EVERY_KIND).unwrap();
    let m = manifest.to_str().unwrap().to_string();

    tokio::task::spawn_blocking(move || {
        let created = kubectl(&kc, &["create", "-f", &m]);
        assert!(created.contains("resourceclaim.resource.k8s.io/one-gpu created"), "{created}");
        // apply of the same manifest updates the existing objects (adding the last-applied annotation).
        let applied = kubectl(&kc, &["apply", "-f", &m]);
        assert!(applied.contains("pod/web"), "{applied}");
        let labelled = m.replace("every-kind", "labelled");
        std::fs::write(&labelled, EVERY_KIND.replace("metadata: {name: one-gpu, namespace: demo}", "metadata: {name: one-gpu, namespace: demo, labels: {tier: gold}}")).unwrap();
        kubectl(&kc, &["apply", "-f", &labelled]);

        for (kind, name) in [
            ("namespaces", "demo"),
            ("nodes", "node-a"),
            ("pods", "web"),
            ("events", "web.1"),
            ("leases", "demo-lease"),
            ("deviceclasses", "gpu.example.com"),
            ("resourceslices", "node-a-gpu.example.com"),
            ("resourceclaims", "one-gpu"),
            ("resourceclaimtemplates", "gpu-template"),
        ] {
            let out = kubectl(&kc, &["get", kind, "-n", "demo"]);
            assert!(out.contains(name), "kubectl get {kind}: {out}");
            assert!(out.starts_with("NAME") || out.contains("NAME"), "kubectl get {kind} prints a table: {out}");
        }
        let claims = kubectl(&kc, &["get", "resourceclaims", "-n", "demo"]);
        assert!(claims.contains("STATE") && claims.contains("pending"), "{claims}");

        let allocation = r#"{"status":{"allocation":{"devices":{"results":[{"request":"gpu","driver":"gpu.example.com","pool":"node-a","device":"gpu-0"}]}}}}"#;
        kubectl(&kc, &["patch", "resourceclaim", "one-gpu", "-n", "demo", "--subresource=status", "--type=merge", "-p", allocation]);
        let reserve = r#"{"status":{"reservedFor":[{"resource":"pods","name":"web","uid":"11111111-2222-3333-4444-555555555555"}]}}"#;
        let patched = kubectl(&kc, &["patch", "resourceclaim", "one-gpu", "-n", "demo", "--subresource=status", "--type=strategic", "-p", reserve]);
        assert!(patched.contains("patched"), "{patched}");
        let json = kubectl(&kc, &["get", "resourceclaim", "one-gpu", "-n", "demo", "-o", "json"]);
        assert!(json.contains("\"tier\": \"gold\"") && json.contains("11111111-2222-3333-4444-555555555555"), "{json}");
    })
    .await
    .unwrap();

    // kubectl's writes are visible through kube::Client too, including the generated claim.
    let claims: Api<ResourceClaim> = Api::namespaced(client, "demo");
    let names: Vec<String> = claims
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| c.metadata.name.unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    drop(handle);
}

const WORKLOADS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: demo}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: web, namespace: demo}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx:1.27}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: demo}
spec:
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: postgres:17}]}
---
apiVersion: v1
kind: ReplicationController
metadata: {name: legacy, namespace: demo}
spec:
  template:
    metadata: {labels: {app: legacy}}
    spec: {containers: [{name: app, image: busybox:1.36}]}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_kubectl_shows_services_and_workloads_with_their_columns() {
    let (server, _client) = setup();
    let handle = server.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let kc = handle.kubeconfig_path.clone();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("workloads.yaml");
    std::fs::write(&manifest, WORKLOADS).unwrap();
    let m = manifest.to_str().unwrap().to_string();
    tokio::task::spawn_blocking(move || {
        kubectl(&kc, &["create", "-f", &m]);
        // A second apply patches: the allocated cluster IP stays.
        kubectl(&kc, &["apply", "-f", &m]);
        let svc = kubectl(&kc, &["get", "svc", "-n", "demo", "-o", "wide"]);
        assert!(
            svc.contains("CLUSTER-IP") && svc.contains("SELECTOR"),
            "{svc}"
        );
        assert!(
            svc.contains("10.96.0.2") && svc.contains("80/TCP") && svc.contains("app=web"),
            "{svc}"
        );
        let rs = kubectl(&kc, &["get", "rs", "-n", "demo"]);
        assert!(rs.contains("DESIRED") && rs.contains("web"), "{rs}");
        // `all` is the category the real server gives these kinds.
        let all = kubectl(&kc, &["get", "all", "-n", "demo"]);
        for name in [
            "service/web",
            "replicaset.apps/web",
            "statefulset.apps/db",
            "replicationcontroller/legacy",
        ] {
            assert!(
                all.contains(name),
                "{name} missing from kubectl get all: {all}"
            );
        }
    })
    .await
    .unwrap();
    drop(handle);
}
