//! Cases shaped like upstream's `filtering_test.go` and `scoring_test.go`, with hand-built
//! nodes and pods.

use super::*;
use crate::framework::Code;
use crate::plugins::testing::{node_info, pod};

fn plugin() -> InterPodAffinity {
    InterPodAffinity::new(&serde_json::Value::Null).unwrap()
}

/// A node with labels (`k: v, ...` YAML flow) and these pods.
fn node(name: &str, labels: &str, pods: &[PodInfo]) -> Arc<NodeInfo> {
    Arc::new(node_info(
        &format!("metadata: {{name: {name}, labels: {{{labels}}}}}"),
        pods,
    ))
}

/// A pod in namespace `ns` with labels and an optional `affinity:` value (YAML flow).
fn a_pod(name: &str, ns: &str, labels: &str, affinity: &str) -> PodInfo {
    let affinity = if affinity.is_empty() {
        String::new()
    } else {
        format!(", affinity: {affinity}")
    };
    pod(&format!(
        "metadata: {{name: {name}, namespace: {ns}, uid: {name}, labels: {{{labels}}}}}\nspec: {{containers: [{{name: c}}]{affinity}}}"
    ))
}

fn required(kind: &str, term: &str) -> String {
    format!("{{{kind}: {{requiredDuringSchedulingIgnoredDuringExecution: [{term}]}}}}")
}

fn preferred(kind: &str, weight: i32, term: &str) -> String {
    format!(
        "{{{kind}: {{preferredDuringSchedulingIgnoredDuringExecution: [{{weight: {weight}, podAffinityTerm: {term}}}]}}}}"
    )
}

const SECURITY_S1_REGION: &str = "{labelSelector: {matchExpressions: [{key: security, operator: In, values: [S1]}]}, topologyKey: region}";

fn run_filter(pl: &InterPodAffinity, p: &PodInfo, nodes: &[Arc<NodeInfo>]) -> Vec<Status> {
    let mut state = CycleState::default();
    let snapshot = Snapshot::from_nodes(nodes.to_vec());
    let r = pl.pre_filter(&mut state, p, &snapshot);
    if r.status.code == Code::Skip {
        return vec![Status::success(); nodes.len()];
    }
    assert!(r.status.is_success(), "{:?}", r.status);
    pl.filter(&state, p, nodes)
}

fn filter(p: &PodInfo, nodes: &[Arc<NodeInfo>]) -> Vec<Status> {
    run_filter(&plugin(), p, nodes)
}

fn ok() -> Status {
    Status::success()
}

#[test]
fn a_pod_without_affinity_skips_when_no_pod_has_required_anti_affinity() {
    let pl = plugin();
    let p = a_pod("p", "d", "a: b", "");
    let nodes = [node(
        "n1",
        "region: r1",
        &[a_pod("e", "d", "security: S1", "")],
    )];
    let mut state = CycleState::default();
    let r = pl.pre_filter(&mut state, &p, &Snapshot::from_nodes(nodes.to_vec()));
    assert_eq!(r.status.code, Code::Skip);
}

#[test]
fn required_affinity_is_met_by_a_matching_pod_in_the_domain() {
    let p = a_pod("p", "d", "", &required("podAffinity", SECURITY_S1_REGION));
    let nodes = [
        node("n1", "region: r1", &[a_pod("e", "d", "security: S1", "")]),
        node("n2", "region: r1", &[]),
        node("n3", "region: r2", &[]),
        node("n4", "zone: z", &[]),
    ];
    let unmet = Status::unresolvable(ERR_REASON_AFFINITY_RULES_NOT_MATCH);
    // n2 shares n1's region; n4 lacks the topology key.
    assert_eq!(filter(&p, &nodes), [ok(), ok(), unmet.clone(), unmet]);
}

#[test]
fn required_affinity_is_not_met_by_a_pod_of_another_namespace_or_other_labels() {
    let p = a_pod("p", "d", "", &required("podAffinity", SECURITY_S1_REGION));
    let unmet = Status::unresolvable(ERR_REASON_AFFINITY_RULES_NOT_MATCH);
    let other_ns = [node(
        "n1",
        "region: r1",
        &[a_pod("e", "x", "security: S1", "")],
    )];
    assert_eq!(filter(&p, &other_ns), [unmet.clone()]);
    let other_labels = [node(
        "n1",
        "region: r1",
        &[a_pod("e", "d", "security: S2", "")],
    )];
    assert_eq!(filter(&p, &other_labels), [unmet]);
}

#[test]
fn listed_namespaces_and_namespace_selectors_select_other_namespaces() {
    let listed =
        "{labelSelector: {matchLabels: {security: S1}}, namespaces: [x], topologyKey: region}";
    let nodes = [node(
        "n1",
        "region: r1",
        &[a_pod("e", "x", "security: S1", "")],
    )];
    let p = a_pod("p", "d", "", &required("podAffinity", listed));
    assert_eq!(filter(&p, &nodes), [ok()]);

    let by_labels = "{labelSelector: {matchLabels: {security: S1}}, namespaceSelector: {matchLabels: {team: a}}, topologyKey: region}";
    let p = a_pod("p", "d", "", &required("podAffinity", by_labels));
    let pl = plugin();
    let unmet = Status::unresolvable(ERR_REASON_AFFINITY_RULES_NOT_MATCH);
    assert_eq!(run_filter(&pl, &p, &nodes), [unmet.clone()]);
    pl.on_event(&ObjectEvent {
        action: EventAction::Added,
        resource: InterPodAffinity::namespace_kind(),
        object: r#"{"metadata":{"name":"x","labels":{"team":"a"}}}"#.into(),
    });
    assert_eq!(run_filter(&pl, &p, &nodes), [ok()]);
    pl.on_event(&ObjectEvent {
        action: EventAction::Modified,
        resource: InterPodAffinity::namespace_kind(),
        object: r#"{"metadata":{"name":"x","labels":{"team":"b"}}}"#.into(),
    });
    assert_eq!(run_filter(&pl, &p, &nodes), [unmet]);

    // An empty namespace selector selects every namespace.
    let all = "{labelSelector: {matchLabels: {security: S1}}, namespaceSelector: {}, topologyKey: region}";
    let p = a_pod("p", "d", "", &required("podAffinity", all));
    assert_eq!(filter(&p, &nodes), [ok()]);
}

#[test]
fn the_first_pod_of_a_group_may_schedule_when_it_matches_its_own_affinity() {
    let term = "{labelSelector: {matchLabels: {app: web}}, topologyKey: region}";
    let nodes = [node("n1", "region: r1", &[]), node("n2", "zone: z", &[])];
    let matches_itself = a_pod("p", "d", "app: web", &required("podAffinity", term));
    let unmet = Status::unresolvable(ERR_REASON_AFFINITY_RULES_NOT_MATCH);
    // The node must still have the topology key.
    assert_eq!(filter(&matches_itself, &nodes), [ok(), unmet.clone()]);
    let does_not = a_pod("p", "d", "app: db", &required("podAffinity", term));
    assert_eq!(filter(&does_not, &nodes), [unmet.clone(), unmet.clone()]);
    // Once a matching pod exists somewhere, only its domain qualifies.
    let nodes = [
        node("n1", "region: r1", &[]),
        node("n3", "region: r2", &[a_pod("e", "d", "app: web", "")]),
    ];
    assert_eq!(filter(&matches_itself, &nodes), [unmet, ok()]);
}

#[test]
fn required_anti_affinity_rejects_the_domain_of_a_matching_pod() {
    let p = a_pod(
        "p",
        "d",
        "",
        &required("podAntiAffinity", SECURITY_S1_REGION),
    );
    let nodes = [
        node("n1", "region: r1", &[a_pod("e", "d", "security: S1", "")]),
        node("n2", "region: r1", &[]),
        node("n3", "region: r2", &[]),
        node("n4", "zone: z", &[]),
    ];
    let rejected = Status::unschedulable(ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH);
    assert_eq!(filter(&p, &nodes), [rejected.clone(), rejected, ok(), ok()]);
}

#[test]
fn existing_pods_required_anti_affinity_rejects_the_incoming_pod() {
    // The incoming pod has no affinity at all; the existing pod's anti-affinity matches it.
    let anti = required(
        "podAntiAffinity",
        "{labelSelector: {matchLabels: {app: web}}, topologyKey: zone}",
    );
    let nodes = [
        node("n1", "zone: z1", &[a_pod("e", "d", "app: db", &anti)]),
        node("n2", "zone: z1", &[]),
        node("n3", "zone: z2", &[]),
    ];
    let rejected = Status::unschedulable(ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH);
    let web = a_pod("p", "d", "app: web", "");
    assert_eq!(filter(&web, &nodes), [rejected.clone(), rejected, ok()]);
    // Another namespace is not selected by the existing pod's term.
    let elsewhere = a_pod("p", "other", "app: web", "");
    assert_eq!(filter(&elsewhere, &nodes), [ok(), ok(), ok()]);
}

#[test]
fn replicas_with_anti_affinity_to_each_other_take_one_node_each() {
    let anti = required(
        "podAntiAffinity",
        "{labelSelector: {matchLabels: {app: web}}, topologyKey: kubernetes.io/hostname}",
    );
    let nodes = [
        node(
            "n1",
            "kubernetes.io/hostname: n1",
            &[a_pod("r1", "d", "app: web", &anti)],
        ),
        node("n2", "kubernetes.io/hostname: n2", &[]),
    ];
    let p = a_pod("r2", "d", "app: web", &anti);
    assert_eq!(
        filter(&p, &nodes),
        [
            Status::unschedulable(ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH),
            ok()
        ]
    );
}

#[test]
fn affinity_is_checked_before_anti_affinity() {
    let affinity = format!(
        "{{podAffinity: {{requiredDuringSchedulingIgnoredDuringExecution: [{SECURITY_S1_REGION}]}}, podAntiAffinity: {{requiredDuringSchedulingIgnoredDuringExecution: [{{labelSelector: {{matchLabels: {{security: S1}}}}, topologyKey: region}}]}}}}"
    );
    let p = a_pod("p", "d", "", &affinity);
    let nodes = [
        node("n1", "region: r1", &[a_pod("e", "d", "security: S1", "")]),
        node("n2", "region: r2", &[]),
    ];
    assert_eq!(
        filter(&p, &nodes),
        [
            Status::unschedulable(ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH),
            Status::unresolvable(ERR_REASON_AFFINITY_RULES_NOT_MATCH)
        ]
    );
}

#[test]
fn a_node_changed_within_the_cycle_is_counted_again() {
    // Preemption's dry run removes the pod the anti-affinity rejects: the node then passes.
    let pl = plugin();
    let p = a_pod(
        "p",
        "d",
        "",
        &required("podAntiAffinity", SECURITY_S1_REGION),
    );
    let victim = a_pod("e", "d", "security: S1", "");
    let nodes = [node("n1", "region: r1", &[victim])];
    let mut state = CycleState::default();
    let r = pl.pre_filter(&mut state, &p, &Snapshot::from_nodes(nodes.to_vec()));
    assert!(r.status.is_success());
    assert_eq!(
        pl.filter(&state, &p, &nodes),
        [Status::unschedulable(
            ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH
        )]
    );
    let mut without = (*nodes[0]).clone();
    assert!(without.remove_pod("e"));
    assert_eq!(pl.filter(&state, &p, &[Arc::new(without)]), [ok()]);
}

#[test]
fn errors_when_args_are_out_of_range() {
    let err =
        InterPodAffinity::new(&serde_json::json!({"hardPodAffinityWeight": 101})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin \"InterPodAffinity\": invalid args: hardPodAffinityWeight: Invalid value: 101: not in valid range [0-100]"
    );
    assert!(InterPodAffinity::new(&serde_json::json!({"hardPodAffinityWeight": 0})).is_ok());
}

fn run_score(pl: &InterPodAffinity, p: &PodInfo, nodes: &[Arc<NodeInfo>]) -> Option<Vec<i64>> {
    let mut state = CycleState::default();
    let snapshot = Snapshot::from_nodes(nodes.to_vec());
    pl.pre_filter(&mut state, p, &snapshot);
    let s = pl.pre_score(&mut state, p, nodes);
    if s.code == Code::Skip {
        return None;
    }
    assert!(s.is_success(), "{s:?}");
    let mut scores = pl.score(&state, p, nodes).unwrap();
    assert!(pl.normalize_score(&state, p, &mut scores).is_success());
    Some(scores)
}

fn score_nodes(existing: PodInfo) -> [Arc<NodeInfo>; 3] {
    [
        node("n1", "region: r1", &[existing]),
        node("n2", "region: r1", &[]),
        node("n3", "region: r2", &[]),
    ]
}

#[test]
fn preferred_affinity_scores_the_matching_domain_highest() {
    let p = a_pod(
        "p",
        "d",
        "",
        &preferred("podAffinity", 5, SECURITY_S1_REGION),
    );
    let nodes = score_nodes(a_pod("e", "d", "security: S1", ""));
    assert_eq!(run_score(&plugin(), &p, &nodes), Some(vec![100, 100, 0]));
}

#[test]
fn preferred_anti_affinity_scores_the_matching_domain_lowest() {
    let p = a_pod(
        "p",
        "d",
        "",
        &preferred("podAntiAffinity", 5, SECURITY_S1_REGION),
    );
    let nodes = score_nodes(a_pod("e", "d", "security: S1", ""));
    assert_eq!(run_score(&plugin(), &p, &nodes), Some(vec![0, 0, 100]));
}

#[test]
fn affinity_and_anti_affinity_weights_add_up() {
    // Affinity 5 to S1 (on n1, region r1), anti-affinity 3 to S2 (on n3, region r2): r1 gets
    // 5, r2 -3; normalized over [-3, 5].
    let affinity = format!(
        "{{podAffinity: {{preferredDuringSchedulingIgnoredDuringExecution: [{{weight: 5, podAffinityTerm: {SECURITY_S1_REGION}}}]}}, podAntiAffinity: {{preferredDuringSchedulingIgnoredDuringExecution: [{{weight: 3, podAffinityTerm: {{labelSelector: {{matchLabels: {{security: S2}}}}, topologyKey: region}}}}]}}}}"
    );
    let p = a_pod("p", "d", "", &affinity);
    let nodes = [
        node("n1", "region: r1", &[a_pod("e1", "d", "security: S1", "")]),
        node("n2", "region: r3", &[]),
        node("n3", "region: r2", &[a_pod("e2", "d", "security: S2", "")]),
    ];
    // n2: (0 + 3) / 8 * 100 = 37.
    assert_eq!(run_score(&plugin(), &p, &nodes), Some(vec![100, 37, 0]));
}

#[test]
fn existing_pods_required_affinity_counts_hard_pod_affinity_weight() {
    let theirs = required(
        "podAffinity",
        "{labelSelector: {matchLabels: {app: web}}, topologyKey: region}",
    );
    let p = a_pod("p", "d", "app: web", "");
    let nodes = score_nodes(a_pod("e", "d", "", &theirs));
    assert_eq!(run_score(&plugin(), &p, &nodes), Some(vec![100, 100, 0]));
    let zero = InterPodAffinity::new(&serde_json::json!({"hardPodAffinityWeight": 0})).unwrap();
    assert_eq!(run_score(&zero, &p, &nodes), None);
}

#[test]
fn existing_pods_preferred_terms_count_unless_ignored() {
    let theirs = preferred(
        "podAntiAffinity",
        10,
        "{labelSelector: {matchLabels: {app: web}}, topologyKey: region}",
    );
    let p = a_pod("p", "d", "app: web", "");
    let nodes = score_nodes(a_pod("e", "d", "", &theirs));
    assert_eq!(run_score(&plugin(), &p, &nodes), Some(vec![0, 0, 100]));
    let ignoring = InterPodAffinity::new(&serde_json::json!({
        "ignorePreferredTermsOfExistingPods": true
    }))
    .unwrap();
    assert_eq!(run_score(&ignoring, &p, &nodes), None);
}

#[test]
fn pods_matching_nothing_skip_score() {
    let p = a_pod(
        "p",
        "d",
        "",
        &preferred("podAffinity", 5, SECURITY_S1_REGION),
    );
    let nodes = score_nodes(a_pod("e", "d", "security: S2", ""));
    assert_eq!(run_score(&plugin(), &p, &nodes), None);
}

/// Filter's counts after PreFilter, sorted.
fn counted(
    pl: &InterPodAffinity,
    p: &PodInfo,
    snapshot: &Snapshot,
) -> Vec<Vec<(String, String, i64)>> {
    let mut state = CycleState::default();
    assert!(pl.pre_filter(&mut state, p, snapshot).status.is_success());
    let s = state.read::<PreFilterState>(PRE_FILTER_STATE_KEY).unwrap();
    let c = &s.counted.counts;
    [&c.existing_anti, &c.affinity, &c.anti]
        .into_iter()
        .map(|m| {
            let mut v: Vec<_> = m
                .iter()
                .map(|(k, v, n)| (k.to_string(), v.to_string(), n))
                .collect();
            v.sort();
            v
        })
        .collect()
}

/// The memo recounts only nodes whose `NodeInfo` changed since the last PreFilter; the counts
/// must stay those of a fresh count as pods with and without anti-affinity come and go.
#[test]
fn counts_kept_across_cycles_equal_a_fresh_count() {
    let anti = required(
        "podAntiAffinity",
        "{labelSelector: {matchLabels: {app: web}}, topologyKey: kubernetes.io/hostname}",
    );
    let replica = |name: &str| a_pod(name, "d", "app: web", &anti);
    let host = |name: &str, pods: &[PodInfo]| {
        node(
            name,
            &format!("kubernetes.io/hostname: {name}, zone: z1"),
            pods,
        )
    };
    let p = replica("new");
    let mut snapshot = Snapshot::from_nodes(vec![
        host("a", &[replica("r1")]),
        host("b", &[]),
        host("c", &[a_pod("plain", "d", "app: web", "")]),
    ]);
    let kept = plugin();
    assert_eq!(
        counted(&kept, &p, &snapshot),
        counted(&plugin(), &p, &snapshot)
    );
    let changes = [
        (1, host("b", &[replica("r2")])),
        (0, host("a", &[])),
        (2, host("c", &[])),
        (
            1,
            host("b", &[replica("r2"), a_pod("other", "e", "app: web", "")]),
        ),
    ];
    for (i, n) in changes {
        snapshot.set_node(i, n);
        assert_eq!(
            counted(&kept, &p, &snapshot),
            counted(&plugin(), &p, &snapshot),
            "after changing node {i}"
        );
        let memo = kept.memo.lock();
        assert!(Arc::ptr_eq(
            &memo.as_ref().unwrap().nodes[i],
            &snapshot.nodes[i]
        ));
    }
    let hostname = "kubernetes.io/hostname".to_string();
    assert_eq!(
        counted(&kept, &p, &snapshot),
        [
            vec![(hostname.clone(), "b".to_string(), 1)],
            vec![],
            vec![(hostname, "b".to_string(), 1)]
        ]
    );
}
