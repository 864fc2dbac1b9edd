//! Cases from upstream's `filtering_test.go` and `scoring_test.go`, with hand-built nodes.

use super::*;
use crate::framework::Code;
use crate::plugins::testing::{node_info, pod};

fn plugin() -> PodTopologySpread {
    PodTopologySpread::new(&serde_json::Value::Null).unwrap()
}

/// A node in `zone` holding `matching` pods labelled `app: web` (namespace d).
fn zone_node(name: &str, zone: &str, matching: usize) -> Arc<NodeInfo> {
    zone_node_with(name, zone, matching, "")
}

fn zone_node_with(name: &str, zone: &str, matching: usize, extra: &str) -> Arc<NodeInfo> {
    let pods: Vec<PodInfo> = (0..matching)
        .map(|i| {
            pod(&format!(
                "metadata: {{name: {name}-p{i}, namespace: d, uid: {name}-{i}, labels: {{app: web}}}}\nspec: {{nodeName: {name}, containers: [{{name: c}}]}}"
            ))
        })
        .collect();
    Arc::new(node_info(
        &format!(
            "metadata: {{name: {name}, labels: {{zone: {zone}, kubernetes.io/hostname: {name}}}}}\n{extra}"
        ),
        &pods,
    ))
}

fn spread_pod(constraint: &str) -> PodInfo {
    spread_pod_with(constraint, "")
}

fn spread_pod_with(constraint: &str, spec_extra: &str) -> PodInfo {
    pod(&format!(
        "metadata: {{name: new, namespace: d, uid: new, labels: {{app: web}}}}\nspec:\n  containers: [{{name: c}}]\n  topologySpreadConstraints: [{constraint}]\n{spec_extra}"
    ))
}

fn run_filter(p: &PodInfo, nodes: &[Arc<NodeInfo>]) -> Vec<Status> {
    let pl = plugin();
    let mut state = CycleState::default();
    let snapshot = Snapshot::from_nodes(nodes.to_vec());
    let r = pl.pre_filter(&mut state, p, &snapshot);
    assert!(r.status.is_success(), "{:?}", r.status);
    pl.filter(&state, p, nodes)
}

const ZONE_SKEW_1: &str = "{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}";

#[test]
fn a_pod_goes_to_the_zone_with_fewer_matching_pods() {
    let nodes = [
        zone_node("a", "z1", 1),
        zone_node("b", "z1", 1),
        zone_node("x", "z2", 1),
        zone_node("y", "z2", 0),
    ];
    let s = run_filter(&spread_pod(ZONE_SKEW_1), &nodes);
    // z1 holds 2, z2 holds 1: on z1 the skew would be 3 - 1 = 2.
    assert_eq!(s[0].code, Code::Unschedulable);
    assert_eq!(s[0].reasons, [ERR_REASON_CONSTRAINTS_NOT_MATCH]);
    assert_eq!(s[1].code, Code::Unschedulable);
    assert!(s[2].is_success() && s[3].is_success());
}

#[test]
fn pods_without_constraints_skip_pre_filter_and_pre_score() {
    let p = pod("metadata: {name: p, namespace: d}\nspec: {containers: [{name: c}]}");
    let mut state = CycleState::default();
    let nodes = [zone_node("a", "z1", 3)];
    let r = plugin().pre_filter(&mut state, &p, &Snapshot::from_nodes(nodes.to_vec()));
    assert_eq!(r.status.code, Code::Skip);
    assert_eq!(plugin().pre_score(&mut state, &p, &nodes).code, Code::Skip);
}

#[test]
fn a_node_without_the_topology_key_is_unresolvable() {
    let nodes = [
        zone_node("a", "z1", 0),
        Arc::new(node_info("metadata: {name: bare}", &[])),
    ];
    let s = run_filter(&spread_pod(ZONE_SKEW_1), &nodes);
    assert!(s[0].is_success());
    assert_eq!(s[1].code, Code::UnschedulableAndUnresolvable);
    assert_eq!(s[1].reasons, [ERR_REASON_NODE_LABEL_NOT_MATCH]);
}

/// Upstream "minDomains": with fewer eligible domains than `minDomains` the global minimum
/// is 0, so a zone that already holds `maxSkew` matching pods takes no more.
#[test]
fn min_domains_treats_the_global_minimum_as_zero() {
    let nodes = [zone_node("a", "z1", 1), zone_node("x", "z2", 1)];
    let without = "{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}";
    assert!(
        run_filter(&spread_pod(without), &nodes)
            .iter()
            .all(Status::is_success)
    );
    let with = "{maxSkew: 1, minDomains: 3, topologyKey: zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}";
    let s = run_filter(&spread_pod(with), &nodes);
    assert!(
        s.iter()
            .all(|st| st.reasons == [ERR_REASON_CONSTRAINTS_NOT_MATCH])
    );
    // Once a third zone exists, the minimum is real again.
    let nodes = [
        zone_node("a", "z1", 1),
        zone_node("x", "z2", 1),
        zone_node("m", "z3", 0),
    ];
    let s = run_filter(&spread_pod(with), &nodes);
    assert!(!s[0].is_success() && !s[1].is_success() && s[2].is_success());
}

/// `nodeAffinityPolicy: Honor` (the default) counts only nodes the pod's node selector
/// accepts; `Ignore` counts every node, so an empty excluded zone holds the minimum at 0.
#[test]
fn node_affinity_policy_decides_which_nodes_count() {
    let nodes = [
        zone_node_with("a", "z1", 1, ""),
        zone_node_with("x", "z2", 0, ""),
        Arc::new(node_info(
            "metadata: {name: m, labels: {zone: z3, kubernetes.io/hostname: m, pool: other}}",
            &[],
        )),
    ];
    let selector = "  nodeSelector: {kubernetes.io/hostname: a}";
    let honor = spread_pod_with(
        "{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}",
        selector,
    );
    // Counted nodes: a only (z1 = 1): skew on a is 2 - 1 = 1.
    assert!(run_filter(&honor, &nodes)[0].is_success());
    let ignore = spread_pod_with(
        "{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule, nodeAffinityPolicy: Ignore, labelSelector: {matchLabels: {app: web}}}",
        selector,
    );
    // Every node counts: min is 0 (z2, z3), skew on a is 2.
    assert_eq!(
        run_filter(&ignore, &nodes)[0].reasons,
        [ERR_REASON_CONSTRAINTS_NOT_MATCH]
    );
}

#[test]
fn node_taints_policy_honor_leaves_out_tainted_nodes() {
    let nodes = [
        zone_node("a", "z1", 1),
        zone_node_with(
            "t",
            "z2",
            0,
            "spec: {taints: [{key: dedicated, value: x, effect: NoSchedule}]}",
        ),
    ];
    let ignore = spread_pod(ZONE_SKEW_1);
    assert!(
        !run_filter(&ignore, &nodes)[0].is_success(),
        "the tainted empty zone holds the minimum at 0 by default"
    );
    let honor = spread_pod(
        "{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule, nodeTaintsPolicy: Honor, labelSelector: {matchLabels: {app: web}}}",
    );
    assert!(run_filter(&honor, &nodes)[0].is_success());
}

#[test]
fn match_label_keys_count_only_pods_of_the_same_revision() {
    let old: Vec<PodInfo> = (0..2)
        .map(|i| {
            pod(&format!(
                "metadata: {{name: o{i}, namespace: d, uid: o{i}, labels: {{app: web, pod-template-hash: v1}}}}\nspec: {{nodeName: a, containers: [{{name: c}}]}}"
            ))
        })
        .collect();
    let nodes = [
        Arc::new(node_info("metadata: {name: a, labels: {zone: z1}}", &old)),
        zone_node("x", "z2", 0),
    ];
    let p = pod(
        "metadata: {name: new, namespace: d, uid: new, labels: {app: web, pod-template-hash: v2}}\nspec:\n  containers: [{name: c}]\n  topologySpreadConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}, matchLabelKeys: [pod-template-hash]}]",
    );
    assert!(
        run_filter(&p, &nodes).iter().all(Status::is_success),
        "the v1 pods do not count for a v2 pod"
    );
}

#[test]
fn terminating_pods_and_other_namespaces_do_not_count() {
    let others = [
        pod(
            "metadata: {name: t, namespace: d, uid: t, labels: {app: web}, deletionTimestamp: '2026-01-01T00:00:00Z'}\nspec: {nodeName: a, containers: [{name: c}]}",
        ),
        pod(
            "metadata: {name: o, namespace: other, uid: o, labels: {app: web}}\nspec: {nodeName: a, containers: [{name: c}]}",
        ),
    ];
    let nodes = [
        Arc::new(node_info(
            "metadata: {name: a, labels: {zone: z1}}",
            &others,
        )),
        zone_node("x", "z2", 0),
    ];
    assert!(
        run_filter(&spread_pod(ZONE_SKEW_1), &nodes)
            .iter()
            .all(Status::is_success)
    );
}

/// Preemption's dry run filters a copy of a node without its victims: the copy's own pods
/// count, as upstream's `RemovePod` extension makes them.
#[test]
fn filter_counts_a_node_changed_within_the_cycle_again() {
    let nodes = [zone_node("a", "z1", 2), zone_node("x", "z2", 1)];
    let p = spread_pod(ZONE_SKEW_1);
    let pl = plugin();
    let mut state = CycleState::default();
    pl.pre_filter(&mut state, &p, &Snapshot::from_nodes(nodes.to_vec()));
    assert!(!pl.filter(&state, &p, &nodes[..1])[0].is_success());
    let mut without_victims = (*nodes[0]).clone();
    let victim = without_victims.pods[0].key.uid.clone();
    without_victims.remove_pod(&victim);
    let changed = Arc::new(without_victims);
    assert!(pl.filter(&state, &p, &[changed])[0].is_success());
    // A copy with one more matching pod in the minimum's domain moves the minimum too.
    let mut fuller = (*nodes[1]).clone();
    fuller.add_pod(Arc::new(pod(
        "metadata: {name: n, namespace: d, uid: n, labels: {app: web}}\nspec: {nodeName: x, containers: [{name: c}]}",
    )));
    let fuller = Arc::new(fuller);
    assert!(
        pl.filter(&state, &p, &[fuller])[0].is_success(),
        "x: 2+1-2 = 1"
    );
}

/// Pods assumed in the cache (not bound yet) are in the snapshot, so they count.
#[test]
fn assumed_pods_count_before_they_are_bound() {
    let cache = crate::cache::Cache::new();
    for (name, zone) in [("a", "z1"), ("x", "z2")] {
        cache.apply_node(Arc::new(
            serde_yaml_ng::from_str(&format!(
                "metadata: {{name: {name}, labels: {{zone: {zone}}}}}\nstatus: {{allocatable: {{cpu: '4', pods: '110'}}}}"
            ))
            .unwrap(),
        ));
    }
    let first = spread_pod(ZONE_SKEW_1);
    let first = PodInfo::new(Arc::new({
        let mut p = (*first.pod).clone();
        p.metadata.name = Some("first".into());
        p.metadata.uid = Some("first".into());
        p
    }));
    cache.apply_pod(first.pod.clone());
    cache.assume_pod(&Arc::new(first), "a").unwrap();
    let mut snapshot = Snapshot::default();
    cache.update_snapshot(&mut snapshot);
    let p = spread_pod(ZONE_SKEW_1);
    let pl = plugin();
    let mut state = CycleState::default();
    pl.pre_filter(&mut state, &p, &snapshot);
    let a = snapshot.get("a").unwrap().clone();
    let x = snapshot.get("x").unwrap().clone();
    let s = pl.filter(&state, &p, &[a, x]);
    assert!(
        !s[0].is_success() && s[1].is_success(),
        "the assumed pod on a makes z1 full"
    );
}

#[test]
fn soft_constraints_score_nodes_with_fewer_matching_pods_higher() {
    let nodes = [
        zone_node("a", "z1", 3),
        zone_node("b", "z1", 0),
        zone_node("x", "z2", 1),
        zone_node("y", "z2", 0),
    ];
    let p = spread_pod(
        "{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app: web}}}",
    );
    let pl = plugin();
    let mut state = CycleState::default();
    let r = pl.pre_filter(&mut state, &p, &Snapshot::from_nodes(nodes.to_vec()));
    assert_eq!(r.status.code, Code::Skip, "no DoNotSchedule constraint");
    assert!(pl.pre_score(&mut state, &p, &nodes).is_success());
    let mut scores = pl.score(&state, &p, &nodes).unwrap();
    // ln(2 + 2) = 1.386 per matching pod: z1 has 3 (4.16 → 4), z2 has 1 (1.39 → 1).
    assert_eq!(scores, [4, 4, 1, 1]);
    pl.normalize_score(&state, &p, &mut scores);
    assert_eq!(scores, [25, 25, 100, 100]);
}

#[test]
fn hostname_constraints_count_each_node_in_score() {
    let nodes = [zone_node("a", "z1", 2), zone_node("b", "z1", 0)];
    let p = spread_pod(
        "{maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app: web}}}",
    );
    let pl = plugin();
    let mut state = CycleState::default();
    pl.pre_filter(&mut state, &p, &Snapshot::from_nodes(nodes.to_vec()));
    assert!(pl.pre_score(&mut state, &p, &nodes).is_success());
    let mut scores = pl.score(&state, &p, &nodes).unwrap();
    pl.normalize_score(&state, &p, &mut scores);
    assert!(scores[1] > scores[0], "{scores:?}");
}

#[test]
fn errors_when_args_are_invalid() {
    let e = PodTopologySpread::new(&serde_json::json!({
        "defaultConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]
    }))
    .unwrap_err();
    assert!(e.to_string().contains("must be empty"), "{e}");
    let e = PodTopologySpread::new(&serde_json::json!({
        "defaultingType": "List",
        "defaultConstraints": [{"maxSkew": 0, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]
    }))
    .unwrap_err();
    assert!(e.to_string().contains("greater than zero"), "{e}");
    assert!(
        PodTopologySpread::new(&serde_json::json!({
            "defaultingType": "List",
            "defaultConstraints": [{"maxSkew": 2, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}]
        }))
        .is_ok()
    );
}

/// A node with the well-known zone and hostname labels holding `matching` `app: web` pods.
fn well_known_node(name: &str, zone: &str, matching: usize) -> Arc<NodeInfo> {
    let pods: Vec<PodInfo> = (0..matching)
        .map(|i| {
            pod(&format!(
                "metadata: {{name: {name}-p{i}, namespace: d, uid: {name}-{i}, labels: {{app: web}}}}\nspec: {{nodeName: {name}, containers: [{{name: c}}]}}"
            ))
        })
        .collect();
    Arc::new(node_info(
        &format!(
            "metadata: {{name: {name}, labels: {{topology.kubernetes.io/zone: {zone}, kubernetes.io/hostname: {name}}}}}"
        ),
        &pods,
    ))
}

/// The plugin with system defaults, knowing a Service `web` that selects `app: web` in `d`.
fn plugin_with_web_service() -> PodTopologySpread {
    let pl = plugin();
    pl.on_event(&ObjectEvent {
        action: EventAction::Added,
        resource: default_selector::service_kind(),
        object: r#"{"metadata": {"name": "web", "namespace": "d"}, "spec": {"selector": {"app": "web"}}}"#.into(),
    });
    pl
}

#[test]
fn system_defaults_score_a_pod_a_service_selects_by_hostname_and_zone() {
    let nodes = [
        well_known_node("a", "z1", 3),
        well_known_node("b", "z1", 0),
        well_known_node("x", "z2", 0),
    ];
    let p = pod(
        "metadata: {name: new, namespace: d, uid: new, labels: {app: web}}\nspec: {containers: [{name: c}]}",
    );
    let pl = plugin_with_web_service();
    let mut state = CycleState::default();
    let r = pl.pre_filter(&mut state, &p, &Snapshot::from_nodes(nodes.to_vec()));
    assert_eq!(r.status.code, Code::Skip, "system defaults never filter");
    assert!(pl.pre_score(&mut state, &p, &nodes).is_success());
    let mut scores = pl.score(&state, &p, &nodes).unwrap();
    // hostname: ln(3 + 2) = 1.609 per pod on the node, + maxSkew 3 - 1;
    // zone: ln(2 + 2) = 1.386 per pod in the zone, + maxSkew 5 - 1.
    assert_eq!(scores, [15, 10, 6]);
    pl.normalize_score(&state, &p, &mut scores);
    assert_eq!(scores, [40, 73, 100]);
}

#[test]
fn a_pod_nothing_selects_gets_no_default_constraints() {
    let nodes = [well_known_node("a", "z1", 3), well_known_node("x", "z2", 0)];
    let p = pod(
        "metadata: {name: new, namespace: d, uid: new, labels: {app: other}}\nspec: {containers: [{name: c}]}",
    );
    let pl = plugin_with_web_service();
    let mut state = CycleState::default();
    let r = pl.pre_filter(&mut state, &p, &Snapshot::from_nodes(nodes.to_vec()));
    assert_eq!(r.status.code, Code::Skip);
    assert_eq!(pl.pre_score(&mut state, &p, &nodes).code, Code::Skip);
}

#[test]
fn nodes_without_a_zone_still_spread_by_hostname_under_system_defaults() {
    let no_zone = |name: &str, matching: usize| {
        let pods: Vec<PodInfo> = (0..matching)
            .map(|i| {
                pod(&format!(
                    "metadata: {{name: {name}-p{i}, namespace: d, uid: {name}-{i}, labels: {{app: web}}}}\nspec: {{nodeName: {name}, containers: [{{name: c}}]}}"
                ))
            })
            .collect();
        Arc::new(node_info(
            &format!("metadata: {{name: {name}, labels: {{kubernetes.io/hostname: {name}}}}}"),
            &pods,
        ))
    };
    let nodes = [no_zone("a", 2), no_zone("b", 0)];
    let p = pod(
        "metadata: {name: new, namespace: d, uid: new, labels: {app: web}}\nspec: {containers: [{name: c}]}",
    );
    let pl = plugin_with_web_service();
    let mut state = CycleState::default();
    pl.pre_filter(&mut state, &p, &Snapshot::from_nodes(nodes.to_vec()));
    assert!(pl.pre_score(&mut state, &p, &nodes).is_success());
    let mut scores = pl.score(&state, &p, &nodes).unwrap();
    pl.normalize_score(&state, &p, &mut scores);
    assert!(scores[1] > scores[0], "{scores:?}");
}

#[test]
fn the_four_kinds_are_watched_only_with_default_constraints() {
    assert_eq!(plugin().subscriptions(), default_selector::kinds());
    let listed = PodTopologySpread::new(&serde_json::json!({"defaultingType": "List"})).unwrap();
    assert!(listed.subscriptions().is_empty());
}

/// The counts and minimums PreFilter leaves for Filter.
fn counted(
    pl: &PodTopologySpread,
    p: &PodInfo,
    snapshot: &Snapshot,
) -> (Vec<Vec<(String, i64)>>, Vec<i64>) {
    let mut state = CycleState::default();
    assert!(pl.pre_filter(&mut state, p, snapshot).status.is_success());
    let s = state.read::<PreFilterState>(PRE_FILTER_STATE_KEY).unwrap();
    let counts = s
        .counted
        .counts
        .iter()
        .map(|m| {
            let mut v: Vec<_> = m.iter().map(|(k, n)| (k.clone(), *n)).collect();
            v.sort();
            v
        })
        .collect();
    (counts, s.counted.min.clone())
}

/// The memo recounts only nodes whose `NodeInfo` changed since the last PreFilter; whatever
/// changes (matching pods come and go, a node loses its zone label and so its domain), the
/// counts must be those of a fresh count.
#[test]
fn counts_kept_across_cycles_equal_a_fresh_count() {
    let both = "{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}, {maxSkew: 2, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}";
    let p = spread_pod(both);
    let mut snapshot = Snapshot::from_nodes(vec![
        zone_node("a", "z1", 1),
        zone_node("b", "z1", 0),
        zone_node("x", "z2", 2),
        zone_node("y", "z3", 0),
    ]);
    let kept = plugin();
    assert_eq!(
        counted(&kept, &p, &snapshot),
        counted(&plugin(), &p, &snapshot)
    );
    let changes = [
        (1, zone_node("b", "z1", 3)),
        (3, zone_node("y", "z3", 1)),
        (
            2,
            Arc::new(node_info(
                "metadata: {name: x, labels: {kubernetes.io/hostname: x}}",
                &[],
            )),
        ),
        (0, zone_node("a", "z2", 0)),
        (2, zone_node("x", "z2", 1)),
    ];
    for (i, node) in changes {
        snapshot.set_node(i, node);
        let fresh = counted(&plugin(), &p, &snapshot);
        assert_eq!(
            counted(&kept, &p, &snapshot),
            fresh,
            "after changing node {i}"
        );
        // The memo holds the node versions it counted, so the next count starts from them.
        let memo = kept.memo.lock();
        let m = memo.as_ref().unwrap();
        assert!(Arc::ptr_eq(&m.nodes[i], &snapshot.nodes[i]));
        assert!(Arc::ptr_eq(&m.index, &snapshot.index));
    }
    // z2 lost node x's label and then got it back; z3's only node y counts 1.
    let (counts, min) = counted(&kept, &p, &snapshot);
    assert_eq!(
        counts[0],
        [
            ("z1".to_string(), 3),
            ("z2".to_string(), 1),
            ("z3".to_string(), 1)
        ]
    );
    assert_eq!(min, [1, 0]);
}

/// A pod with other constraints (or a new snapshot index: nodes came or went) is counted
/// afresh, not from the memo of another key.
#[test]
fn a_different_selector_or_node_set_is_counted_afresh() {
    let kept = plugin();
    let nodes = vec![zone_node("a", "z1", 2), zone_node("x", "z2", 0)];
    let snapshot = Snapshot::from_nodes(nodes.clone());
    let web = spread_pod(ZONE_SKEW_1);
    let db = spread_pod(
        "{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: db}}}",
    );
    assert_eq!(
        counted(&kept, &web, &snapshot).0[0],
        [("z1".to_string(), 2), ("z2".to_string(), 0)]
    );
    assert_eq!(
        counted(&kept, &db, &snapshot).0[0],
        [("z1".to_string(), 0), ("z2".to_string(), 0)]
    );
    let mut more = nodes;
    more.push(zone_node("m", "z3", 1));
    let bigger = Snapshot::from_nodes(more);
    assert_eq!(
        counted(&kept, &web, &bigger),
        counted(&plugin(), &web, &bigger)
    );
}
