//! Tests of parsing, defaulting and resolving configurations, with the exact error messages.

use std::sync::Arc;

use super::*;
use crate::framework::{ExtensionPoint as P, Plugin, PluginRef};
use crate::plugins::{FactoryContext, PluginFactory, Registry};

const HEAD: &str = "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n";

fn parse(body: &str) -> Result<SchedulerConfig, ConfigError> {
    SchedulerConfig::from_yaml_str("config.yaml", &format!("{HEAD}{body}"))
}

fn err(body: &str) -> String {
    parse(body).unwrap_err().to_string()
}

fn resolve(config: &SchedulerConfig, i: usize) -> Result<ResolvedProfile, ConfigError> {
    resolve_profile(
        &config.profiles[i],
        &Registry::with_builtins(),
        &FactoryContext::empty(),
    )
}

fn resolve_err(body: &str) -> String {
    resolve(&parse(body).unwrap(), 0).unwrap_err().to_string()
}

fn weights(p: &ResolvedProfile) -> Vec<(&str, i64)> {
    p.points[&P::Score]
        .iter()
        .map(|(pl, w)| (pl.name(), *w))
        .collect()
}

#[test]
fn the_default_configuration_has_upstreams_default_plugins() {
    let p = resolve(&SchedulerConfig::default(), 0).unwrap();
    assert_eq!(p.scheduler_name, "default-scheduler");
    assert_eq!(
        p.names_at(P::PreEnqueue),
        ["SchedulingGates", "DefaultPreemption"]
    );
    assert_eq!(p.names_at(P::PostFilter), ["DefaultPreemption"]);
    assert_eq!(
        p.names_at(P::PreFilter),
        [
            "NodeAffinity",
            "NodeResourcesFit",
            "VolumeBinding",
            "PodTopologySpread",
            "InterPodAffinity",
            "ImageLocality"
        ]
    );
    assert_eq!(
        p.names_at(P::Filter),
        [
            "NodeUnschedulable",
            "NodeName",
            "TaintToleration",
            "NodeAffinity",
            "NodePorts",
            "NodeResourcesFit",
            "VolumeBinding",
            "PodTopologySpread",
            "InterPodAffinity"
        ]
    );
    assert_eq!(
        p.names_at(P::PreScore),
        [
            "TaintToleration",
            "NodeAffinity",
            "NodeResourcesFit",
            "VolumeBinding",
            "PodTopologySpread",
            "InterPodAffinity",
            "NodeResourcesBalancedAllocation"
        ]
    );
    assert_eq!(
        weights(&p),
        [
            ("TaintToleration", 3),
            ("NodeAffinity", 2),
            ("NodeResourcesFit", 1),
            ("VolumeBinding", 1),
            ("PodTopologySpread", 2),
            ("InterPodAffinity", 2),
            ("NodeResourcesBalancedAllocation", 1),
            ("ImageLocality", 1)
        ]
    );
    assert_eq!(p.names_at(P::Bind), ["DefaultBinder"]);
    assert_eq!(p.plugins.len(), 14);
}

#[test]
fn a_file_with_only_api_version_and_kind_is_the_default() {
    let c = parse("").unwrap();
    assert_eq!(c, SchedulerConfig::default());
    assert_eq!(c.parallelism, 16);
    assert_eq!(
        (c.pod_initial_backoff_seconds, c.pod_max_backoff_seconds),
        (1, 10)
    );
    assert_eq!(c.bind_concurrency, 64);
    assert_eq!(c.wasm.call_timeout_ms, 200);
    assert_eq!(c.wasm.memory_limit_bytes, 64 << 20);
}

#[test]
fn each_plugin_is_created_once_and_shared_across_its_points() {
    let p = resolve(&SchedulerConfig::default(), 0).unwrap();
    let at = |point: P, name: &str| -> PluginRef {
        p.points[&point]
            .iter()
            .find(|(pl, _)| pl.name() == name)
            .unwrap()
            .0
            .clone()
    };
    assert!(Arc::ptr_eq(
        &at(P::Filter, "NodeAffinity"),
        &at(P::Score, "NodeAffinity")
    ));
    assert!(Arc::ptr_eq(
        &at(P::PreFilter, "NodeResourcesFit"),
        &at(P::Score, "NodeResourcesFit")
    ));
}

#[test]
fn an_upstream_shaped_configuration_parses_and_resolves() {
    let c = parse(
        r#"
parallelism: 8
percentageOfNodesToScore: 30
podInitialBackoffSeconds: 2
podMaxBackoffSeconds: 20
leaderElection:
  leaderElect: false
  leaseDuration: 30s
clientConnection:
  kubeconfig: /etc/kubernetes/scheduler.conf
profiles:
  - schedulerName: default-scheduler
  - schedulerName: bin-packing
    percentageOfNodesToScore: 100
    plugins:
      queueSort:
        enabled:
          - name: PrioritySort
      score:
        disabled:
          - name: TaintToleration
        enabled:
          - name: NodeResourcesFit
            weight: 5
    pluginConfig:
      - name: NodeResourcesFit
        args:
          apiVersion: kubescheduler.config.k8s.io/v1
          kind: NodeResourcesFitArgs
          scoringStrategy:
            type: MostAllocated
            resources:
              - {name: cpu, weight: 1}
              - {name: memory, weight: 1}
"#,
    )
    .unwrap();
    assert_eq!(
        (c.parallelism, c.percentage_of_nodes_to_score),
        (8, Some(30))
    );
    assert_eq!(
        (c.pod_initial_backoff_seconds, c.pod_max_backoff_seconds),
        (2, 20)
    );
    assert!(!c.leader_election.leader_elect);
    assert_eq!(
        c.leader_election.lease_duration,
        std::time::Duration::from_secs(30)
    );
    assert_eq!(
        c.client_connection.kubeconfig.as_deref(),
        Some(std::path::Path::new("/etc/kubernetes/scheduler.conf"))
    );
    assert_eq!(c.profiles.len(), 2);
    let packing = resolve(&c, 1).unwrap();
    assert_eq!(packing.percentage_of_nodes_to_score, Some(100));
    // The score list re-configures NodeResourcesFit (weight 5) and comes first; TaintToleration
    // is disabled at Score but still filters.
    assert_eq!(
        weights(&packing),
        [
            ("NodeResourcesFit", 5),
            ("NodeAffinity", 2),
            ("VolumeBinding", 1),
            ("PodTopologySpread", 2),
            ("InterPodAffinity", 2),
            ("NodeResourcesBalancedAllocation", 1),
            ("ImageLocality", 1)
        ]
    );
    assert!(packing.names_at(P::Filter).contains(&"TaintToleration"));
    assert_eq!(weights(&resolve(&c, 0).unwrap()).len(), 8);
}

#[test]
fn disabling_star_at_a_point_keeps_only_the_plugins_enabled_there() {
    let c = parse(
        r#"
profiles:
  - plugins:
      filter:
        disabled: [{name: "*"}]
        enabled: [{name: NodeName}, {name: NodeResourcesFit}]
"#,
    )
    .unwrap();
    let p = resolve(&c, 0).unwrap();
    assert_eq!(p.names_at(P::Filter), ["NodeName", "NodeResourcesFit"]);
    assert_eq!(
        p.names_at(P::PreFilter),
        [
            "NodeAffinity",
            "NodeResourcesFit",
            "VolumeBinding",
            "PodTopologySpread",
            "InterPodAffinity",
            "ImageLocality"
        ],
        "other points keep the defaults"
    );
}

#[test]
fn disabling_star_in_multi_point_replaces_the_defaults() {
    let c = parse(
        r#"
profiles:
  - plugins:
      multiPoint:
        disabled: [{name: "*"}]
        enabled:
          - name: NodeResourcesFit
          - name: DefaultBinder
"#,
    )
    .unwrap();
    let p = resolve(&c, 0).unwrap();
    assert_eq!(p.names_at(P::Filter), ["NodeResourcesFit"]);
    assert_eq!(weights(&p), [("NodeResourcesFit", 1)]);
    assert_eq!(p.plugins.len(), 2);
}

#[test]
fn multi_point_weights_apply_and_zero_means_one() {
    let c = parse(
        r#"
profiles:
  - plugins:
      multiPoint:
        enabled:
          - {name: TaintToleration, weight: 10}
          - {name: NodeAffinity, weight: 0}
"#,
    )
    .unwrap();
    let p = resolve(&c, 0).unwrap();
    assert_eq!(
        weights(&p),
        [
            ("TaintToleration", 10),
            ("NodeAffinity", 1),
            ("NodeResourcesFit", 1),
            ("VolumeBinding", 1),
            ("PodTopologySpread", 2),
            ("InterPodAffinity", 2),
            ("NodeResourcesBalancedAllocation", 1),
            ("ImageLocality", 1)
        ]
    );
}

/// A stand-in for the DRA plugin the Wasm runtime registers.
struct FakeDra;

impl Plugin for FakeDra {
    fn name(&self) -> &str {
        "DynamicResources"
    }
    fn extension_points(&self) -> Vec<P> {
        vec![P::PreFilter, P::Filter, P::Reserve, P::PreBind]
    }
}

#[test]
fn dynamic_resources_is_a_default_when_registered() {
    let mut registry = Registry::with_builtins();
    let f: PluginFactory = Arc::new(|_, _| Ok(Arc::new(FakeDra) as PluginRef));
    registry.register("DynamicResources", f).unwrap();
    let p = resolve_profile(&Profile::default(), &registry, &FactoryContext::empty()).unwrap();
    assert_eq!(p.names_at(P::Filter).last(), Some(&"DynamicResources"));
    assert_eq!(p.names_at(P::Reserve), ["DynamicResources"]);
    assert_eq!(p.names_at(P::PreBind), ["DynamicResources"]);
    assert!(
        !resolve(&SchedulerConfig::default(), 0)
            .unwrap()
            .names_at(P::Filter)
            .contains(&"DynamicResources")
    );
}

#[test]
fn errors_when_a_plugin_is_unknown() {
    let e = resolve_err(
        r#"
profiles:
  - plugins:
      filter:
        enabled:
          - name: NodeName
          - name: Foo
"#,
    );
    assert_eq!(
        e,
        "config.yaml: profiles[0].plugins.filter.enabled[1]: unknown plugin \"Foo\" (known: DefaultBinder, \
         DefaultPreemption, ImageLocality, InterPodAffinity, NodeAffinity, NodeName, NodePorts, NodeResourcesBalancedAllocation, NodeResourcesFit, NodeUnschedulable, PodTopologySpread, SchedulingGates, TaintToleration, VolumeBinding) at line 9 column 13"
    );
}

#[test]
fn errors_when_a_plugin_is_enabled_at_a_point_it_does_not_implement() {
    let e =
        resolve_err("profiles:\n  - plugins:\n      score:\n        enabled: [{name: NodeName}]\n");
    assert_eq!(
        e,
        "config.yaml: profiles[0].plugins.score.enabled[0]: plugin \"NodeName\" does not implement score \
         (it implements: filter) at line 6 column 19"
    );
}

#[test]
fn errors_when_a_plugin_is_enabled_twice_at_one_point() {
    let e = resolve_err(
        "profiles:\n  - plugins:\n      filter:\n        enabled: [{name: NodeName}, {name: NodeName}]\n",
    );
    assert_eq!(
        e,
        "config.yaml: profiles[0].plugins.filter.enabled[1]: plugin \"NodeName\" is enabled twice at filter at line 6 column 37"
    );
}

#[test]
fn errors_when_a_weight_is_negative() {
    let e = resolve_err(
        "profiles:\n  - plugins:\n      score:\n        enabled: [{name: NodeAffinity, weight: -2}]\n",
    );
    assert_eq!(
        e,
        "config.yaml: profiles[0].plugins.score.enabled[0]: weight of plugin \"NodeAffinity\" must not be negative at line 6 column 19"
    );
}

#[test]
fn errors_when_plugin_args_are_rejected_point_at_the_args() {
    let e = resolve_err(
        r#"
profiles:
  - pluginConfig:
      - name: NodeResourcesFit
        args:
          scoringStrategy: {type: Sideways}
"#,
    );
    assert!(
        e.starts_with(
            "config.yaml: profiles[0].pluginConfig[0].args: plugin \"NodeResourcesFit\": invalid args: unknown variant `Sideways`"
        ),
        "{e}"
    );
    assert!(e.ends_with("at line 8 column 11"), "{e}");
}

#[test]
fn errors_when_plugin_config_is_repeated_or_names_an_unknown_plugin() {
    let e = resolve_err(
        "profiles:\n  - pluginConfig:\n      - {name: NodeAffinity}\n      - {name: NodeAffinity}\n",
    );
    assert_eq!(
        e,
        "config.yaml: profiles[0].pluginConfig[1]: plugin \"NodeAffinity\" has more than one pluginConfig entry at line 6 column 9"
    );
    let e = resolve_err("profiles:\n  - pluginConfig:\n      - {name: NodeAfinity}\n");
    assert!(
        e.starts_with(
            "config.yaml: profiles[0].pluginConfig[0]: unknown plugin \"NodeAfinity\" (known: "
        ),
        "{e}"
    );
}

#[test]
fn errors_when_a_field_is_unknown() {
    let e = err("profiles:\n  - plugins:\n      filter:\n        enabledd: []\n");
    assert_eq!(
        e,
        "config.yaml: profiles[0].plugins.filter: unknown field `enabledd`, expected `enabled` or `disabled` at line 6 column 9"
    );
    let e = err("extenders: []\n");
    assert!(
        e.starts_with(
            "config.yaml: unknown field `extenders`, expected one of `apiVersion`, `kind`,"
        ),
        "{e}"
    );
    assert!(e.ends_with("at line 3 column 1"), "{e}");
}

#[test]
fn errors_when_a_field_has_the_wrong_type() {
    assert_eq!(
        err("parallelism: many\n"),
        "config.yaml: parallelism: invalid type: string \"many\", expected an integer from 1 to 18446744073709551615 at line 3 column 14"
    );
    assert_eq!(
        err(
            "profiles:\n  - plugins:\n      score:\n        enabled: [{name: NodeAffinity, weight: heavy}]\n"
        ),
        "config.yaml: profiles[0].plugins.score.enabled[0].weight: invalid type: string \"heavy\", expected i32 at line 6 column 48"
    );
}

#[test]
fn errors_when_a_value_is_out_of_range() {
    assert_eq!(
        err("percentageOfNodesToScore: 150\n"),
        "config.yaml: percentageOfNodesToScore: 150 is out of range: expected an integer from 0 to 100 at line 3 column 27"
    );
    assert_eq!(
        err("podInitialBackoffSeconds: 5\npodMaxBackoffSeconds: 2\n"),
        "config.yaml: podMaxBackoffSeconds (2) must not be less than podInitialBackoffSeconds (5)"
    );
    assert_eq!(
        err("parallelism: 0\n"),
        "config.yaml: parallelism: 0 is out of range: expected an integer from 1 to 18446744073709551615 at line 3 column 14"
    );
}

#[test]
fn errors_when_api_version_or_kind_is_wrong_or_missing() {
    let e = SchedulerConfig::from_yaml_str(
        "c.yaml",
        "apiVersion: kubescheduler.config.k8s.io/v1beta3\nkind: KubeSchedulerConfiguration\n",
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "c.yaml: apiVersion: unsupported apiVersion \"kubescheduler.config.k8s.io/v1beta3\", expected \
         \"kubescheduler.config.k8s.io/v1\" at line 1 column 13"
    );
    let e = SchedulerConfig::from_yaml_str("c.yaml", "kind: KubeSchedulerConfiguration\n")
        .unwrap_err()
        .to_string();
    assert_eq!(e, "c.yaml: missing field `apiVersion`");
    let e = SchedulerConfig::from_yaml_str("c.yaml", "# nothing\n")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "c.yaml: the configuration is empty; it needs apiVersion: kubescheduler.config.k8s.io/v1 and kind: KubeSchedulerConfiguration"
    );
}

#[test]
fn errors_when_the_yaml_is_malformed() {
    let e = err("profiles: [\n");
    assert!(e.starts_with("config.yaml: "), "{e}");
    assert!(e.contains("line"), "{e}");
}

#[test]
fn errors_when_profiles_share_a_scheduler_name_or_lack_one() {
    assert_eq!(
        err("profiles:\n  - schedulerName: a\n  - schedulerName: a\n"),
        "config.yaml: profiles[1].schedulerName: duplicate schedulerName \"a\" (also profiles[0]) at line 5 column 20"
    );
    assert_eq!(
        err("profiles:\n  - schedulerName: a\n  - plugins: {}\n"),
        "config.yaml: profiles[1].schedulerName: required when there are several profiles"
    );
    assert_eq!(
        parse("profiles:\n  - plugins: {}\n").unwrap().profiles[0].scheduler_name,
        "default-scheduler"
    );
}

#[test]
fn errors_when_the_queue_sort_is_not_priority_sort() {
    let e =
        resolve_err("profiles:\n  - plugins:\n      queueSort:\n        enabled: [{name: Fifo}]\n");
    assert!(
        e.starts_with("config.yaml: profiles[0].plugins.queueSort.enabled[0]: queue sort plugin \"Fifo\" is not supported"),
        "{e}"
    );
}

#[test]
fn errors_when_no_bind_plugin_is_left() {
    let e = resolve_err(
        "profiles:\n  - schedulerName: x\n    plugins:\n      bind:\n        disabled: [{name: DefaultBinder}]\n",
    );
    assert_eq!(
        e,
        "config.yaml: profiles[0].plugins: at least one bind plugin is needed for profile with scheduler name \"x\" (enable DefaultBinder)"
    );
}

#[test]
fn profiles_built_in_code_name_themselves_in_errors() {
    let mut p = Profile::new("custom");
    p.plugins.filter.enabled.push(PluginEntry::new("Foo", None));
    let e = resolve_profile(&p, &Registry::with_builtins(), &FactoryContext::empty())
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("profile \"custom\": plugins.filter: unknown plugin \"Foo\""),
        "{e}"
    );
}

#[test]
fn wasm_plugins_resolve_paths_against_the_config_folder() {
    let c = SchedulerConfig::from_yaml_str(
        "/etc/scheduler/config.yaml",
        &format!(
            "{HEAD}wasmPlugins:\n  - name: NodeLabel\n    path: plugins/node_label.wasm\n    sha256: {}\n  - name: Abs\n    path: /opt/abs.wasm\nwasmRuntime:\n  callTimeoutMs: 50\n  memoryLimitBytes: 1048576\n  cacheDir: cache\n  adminAddr: 127.0.0.1:9901\n",
            "AB".repeat(32)
        ),
    )
    .unwrap();
    let w = &c.wasm;
    assert_eq!(
        w.plugins[0].path,
        std::path::Path::new("/etc/scheduler/plugins/node_label.wasm")
    );
    assert_eq!(
        w.plugins[0].sha256.as_deref(),
        Some("ab".repeat(32).as_str())
    );
    assert_eq!(w.plugins[1].path, std::path::Path::new("/opt/abs.wasm"));
    assert_eq!((w.call_timeout_ms, w.memory_limit_bytes), (50, 1 << 20));
    assert_eq!(
        w.cache_dir.as_deref(),
        Some(std::path::Path::new("/etc/scheduler/cache"))
    );
    assert_eq!(w.admin_addr, Some("127.0.0.1:9901".parse().unwrap()));
}

#[test]
fn errors_when_wasm_plugins_are_malformed() {
    assert_eq!(
        err("wasmPlugins:\n  - {name: A, path: a.wasm, sha256: xyz}\n"),
        "config.yaml: wasmPlugins[0].sha256: \"xyz\" is not a SHA-256 (64 hex digits) at line 4 column 37"
    );
    assert_eq!(
        err("wasmPlugins:\n  - {name: A, path: a.wasm}\n  - {name: A, path: b.wasm}\n"),
        "config.yaml: wasmPlugins[1]: duplicate Wasm plugin name \"A\" (also wasmPlugins[0]) at line 5 column 5"
    );
    assert_eq!(
        err("wasmPlugins:\n  - {name: A}\n"),
        "config.yaml: wasmPlugins[0]: missing field `path` at line 4 column 5"
    );
    assert!(
        err("wasmRuntime: {adminAddr: nowhere}\n")
            .starts_with("config.yaml: wasmRuntime.adminAddr: invalid socket address")
    );
}

#[test]
fn a_wasm_plugin_named_like_a_built_in_replaces_it() {
    struct MyFit;
    impl Plugin for MyFit {
        fn name(&self) -> &str {
            "NodeResourcesFit"
        }
        fn extension_points(&self) -> Vec<P> {
            vec![P::Filter]
        }
    }
    let mut registry = Registry::with_builtins();
    assert!(
        registry
            .replace(
                "NodeResourcesFit",
                Arc::new(|_, _| Ok(Arc::new(MyFit) as PluginRef))
            )
            .is_some()
    );
    let p = resolve_profile(&Profile::default(), &registry, &FactoryContext::empty()).unwrap();
    // The replacement implements only Filter, so multiPoint places it only there.
    assert_eq!(
        p.names_at(P::PreFilter),
        [
            "NodeAffinity",
            "VolumeBinding",
            "PodTopologySpread",
            "InterPodAffinity",
            "ImageLocality"
        ]
    );
    assert!(p.names_at(P::Filter).contains(&"NodeResourcesFit"));
    assert_eq!(
        weights(&p),
        [
            ("TaintToleration", 3),
            ("NodeAffinity", 2),
            ("VolumeBinding", 1),
            ("PodTopologySpread", 2),
            ("InterPodAffinity", 2),
            ("NodeResourcesBalancedAllocation", 1),
            ("ImageLocality", 1)
        ]
    );
}

#[test]
fn load_reads_a_file_and_reports_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scheduler.yaml");
    std::fs::write(
        &path,
        format!("{HEAD}wasmPlugins:\n  - {{name: X, path: x.wasm}}\n"),
    )
    .unwrap();
    let c = SchedulerConfig::load(&path).unwrap();
    assert_eq!(c.wasm.plugins[0].path, dir.path().join("x.wasm"));
    let missing = dir.path().join("missing.yaml");
    let e = SchedulerConfig::load(&missing).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "cannot read configuration file {}: ",
            missing.display()
        )),
        "{e}"
    );
}

/// The example of the README's Configuration section.
const README_EXAMPLE: &str = r#"
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
parallelism: 16
percentageOfNodesToScore: 0
podInitialBackoffSeconds: 1
podMaxBackoffSeconds: 10
bindConcurrency: 64
leaderElection:
  leaderElect: true
  resourceName: wasm-scheduler
  resourceNamespace: kube-system
clientConnection:
  kubeconfig: /etc/kubernetes/scheduler.conf
wasmPlugins:
  - name: NodeLabel
    path: plugins/node_label_plugin.wasm
wasmRuntime:
  callTimeoutMs: 200
  memoryLimitBytes: 67108864
  cacheDir: .wasm-cache
  adminAddr: 127.0.0.1:10260
profiles:
  - schedulerName: default-scheduler
    plugins:
      multiPoint:
        enabled:
          - name: NodeLabel
            weight: 2
  - schedulerName: bin-packing
    plugins:
      score:
        disabled:
          - name: TaintToleration
        enabled:
          - name: NodeResourcesFit
            weight: 5
    pluginConfig:
      - name: NodeResourcesFit
        args:
          scoringStrategy:
            type: MostAllocated
            resources:
              - {name: cpu, weight: 1}
              - {name: memory, weight: 1}
              - {name: example.com/gpu, weight: 3}
"#;

#[test]
fn the_readme_example_parses_and_resolves() {
    /// Stands in for the NodeLabel Wasm component the runtime registers.
    struct NodeLabel;
    impl Plugin for NodeLabel {
        fn name(&self) -> &str {
            "NodeLabel"
        }
        fn extension_points(&self) -> Vec<P> {
            vec![P::Filter, P::Score]
        }
    }
    let c = SchedulerConfig::from_yaml_str("/etc/scheduler/config.yaml", README_EXAMPLE).unwrap();
    assert_eq!(
        c.wasm.plugins[0].path,
        std::path::Path::new("/etc/scheduler/plugins/node_label_plugin.wasm")
    );
    let mut registry = Registry::with_builtins();
    registry
        .register(
            "NodeLabel",
            Arc::new(|_, _| Ok(Arc::new(NodeLabel) as PluginRef)),
        )
        .unwrap();
    let ctx = FactoryContext::empty();
    let default = resolve_profile(&c.profiles[0], &registry, &ctx).unwrap();
    assert_eq!(
        weights(&default),
        [
            ("TaintToleration", 3),
            ("NodeAffinity", 2),
            ("NodeResourcesFit", 1),
            ("VolumeBinding", 1),
            ("PodTopologySpread", 2),
            ("InterPodAffinity", 2),
            ("NodeResourcesBalancedAllocation", 1),
            ("ImageLocality", 1),
            ("NodeLabel", 2)
        ]
    );
    assert_eq!(default.names_at(P::Filter).last(), Some(&"NodeLabel"));
    let packing = resolve_profile(&c.profiles[1], &registry, &ctx).unwrap();
    assert_eq!(
        weights(&packing),
        [
            ("NodeResourcesFit", 5),
            ("NodeAffinity", 2),
            ("VolumeBinding", 1),
            ("PodTopologySpread", 2),
            ("InterPodAffinity", 2),
            ("NodeResourcesBalancedAllocation", 1),
            ("ImageLocality", 1)
        ]
    );
}
