//! From a profile as written to plugin instances per extension point, as upstream's defaulting
//! (`mergePlugins` in `apis/config/v1/default_plugins.go`) and framework construction
//! (`NewFramework`, `expandMultiPointPlugins`, `getScoreWeights`) do it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use super::ConfigError;
use super::types::{POINTS, PluginEntry, PluginList, PluginSet, Profile};
use crate::framework::{ExtensionPoint, PluginRef};
use crate::plugins::{FactoryContext, Registry};

/// The queue's sort; accepted in `queueSort` and `multiPoint`, and never instantiated.
pub const PRIORITY_SORT: &str = "PrioritySort";
/// The name the DRA plugin is registered under; in the defaults when the registry has it.
pub const DYNAMIC_RESOURCES: &str = "DynamicResources";

/// Upstream's default `multiPoint` list restricted to the plugins this scheduler has, in
/// upstream order, with upstream score weights (`getDefaultPlugins`).
pub const DEFAULT_MULTI_POINT: [(&str, Option<i32>); 16] = [
    ("SchedulingGates", None),
    (PRIORITY_SORT, None),
    ("NodeUnschedulable", None),
    ("NodeName", None),
    ("TaintToleration", Some(3)),
    ("NodeAffinity", Some(2)),
    ("NodePorts", None),
    ("NodeResourcesFit", Some(1)),
    // Upstream's VolumeRestrictions and NodeVolumeLimits come before, VolumeZone after.
    ("VolumeBinding", None),
    ("PodTopologySpread", Some(2)),
    ("InterPodAffinity", Some(2)),
    // Upstream's feature gate puts DynamicResources just before DefaultPreemption.
    (DYNAMIC_RESOURCES, None),
    ("DefaultPreemption", None),
    ("NodeResourcesBalancedAllocation", Some(1)),
    ("ImageLocality", Some(1)),
    ("DefaultBinder", None),
];

/// The default plugins: [`DEFAULT_MULTI_POINT`] minus the names the registry lacks (so
/// `DynamicResources` is a default exactly when it is registered).
pub fn default_plugins(registry: &Registry) -> PluginSet {
    let mut set = PluginSet::default();
    set.multi_point.enabled = DEFAULT_MULTI_POINT
        .iter()
        .filter(|(name, _)| *name == PRIORITY_SORT || registry.contains(name))
        .map(|(name, weight)| PluginEntry::new(*name, *weight))
        .collect();
    set
}

/// A profile's plugins, instantiated once each and listed per extension point.
#[derive(Clone)]
pub struct ResolvedProfile {
    /// Pods with this `spec.schedulerName` use the profile.
    pub scheduler_name: String,
    /// The profile's own `percentageOfNodesToScore`, if set.
    pub percentage_of_nodes_to_score: Option<u32>,
    /// Every plugin instance, in the order they were created.
    pub plugins: Vec<PluginRef>,
    /// Plugins per extension point, in run order, with their score weight (1 outside Score).
    pub points: BTreeMap<ExtensionPoint, Vec<(PluginRef, i64)>>,
}

impl ResolvedProfile {
    /// The plugin names at one point, in order.
    pub fn names_at(&self, p: ExtensionPoint) -> Vec<&str> {
        self.points
            .get(&p)
            .map(|v| v.iter().map(|(pl, _)| pl.name()).collect())
            .unwrap_or_default()
    }
}

impl fmt::Debug for ResolvedProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let points: BTreeMap<_, Vec<(&str, i64)>> = self
            .points
            .iter()
            .map(|(p, v)| (p, v.iter().map(|(pl, w)| (pl.name(), *w)).collect()))
            .collect();
        f.debug_struct("ResolvedProfile")
            .field("scheduler_name", &self.scheduler_name)
            .field(
                "plugins",
                &self.plugins.iter().map(|p| p.name()).collect::<Vec<_>>(),
            )
            .field("points", &points)
            .finish()
    }
}

/// Merges the profile's plugins into the defaults, per list: `disabled` removes defaults
/// (`"*"` all of them), an enabled default named again is re-configured in place, and other
/// enabled plugins are appended (upstream `mergePluginSet`).
pub fn merge_plugins(defaults: &PluginSet, custom: &PluginSet) -> PluginSet {
    let mut out = PluginSet {
        multi_point: merge_list(&defaults.multi_point, &custom.multi_point),
        queue_sort: merge_list(&defaults.queue_sort, &custom.queue_sort),
        ..PluginSet::default()
    };
    for (p, _) in POINTS {
        *out.point_mut(p) = merge_list(defaults.point(p), custom.point(p));
    }
    out
}

fn merge_list(default: &PluginList, custom: &PluginList) -> PluginList {
    let disabled: Vec<PluginEntry> = custom
        .disabled
        .iter()
        .chain(&default.disabled)
        .cloned()
        .collect();
    let disabled_names: HashSet<&str> = disabled.iter().map(|e| e.name.as_str()).collect();
    let custom_index: HashMap<&str, usize> = custom
        .enabled
        .iter()
        .enumerate()
        .map(|(i, e)| (e.name.as_str(), i))
        .collect();
    let mut replaced = HashSet::new();
    let mut enabled = Vec::new();
    if !disabled_names.contains("*") {
        for d in &default.enabled {
            if disabled_names.contains(d.name.as_str()) {
                continue;
            }
            match custom_index.get(d.name.as_str()) {
                Some(&i) => {
                    enabled.push(custom.enabled[i].clone());
                    replaced.insert(i);
                }
                None => enabled.push(d.clone()),
            }
        }
    }
    enabled.extend(
        custom
            .enabled
            .iter()
            .enumerate()
            .filter(|(i, _)| !replaced.contains(i))
            .map(|(_, e)| e.clone()),
    );
    PluginList { enabled, disabled }
}

/// Builds errors about a profile, pointing at the file's line when it has one.
struct Errors<'a> {
    profile: &'a Profile,
}

impl Errors<'_> {
    fn at(&self, node: Option<usize>, context: &str, message: impl Into<String>) -> ConfigError {
        let message = message.into();
        if let (Some(origin), Some(node)) = (&self.profile.origin, node)
            && let Some(located) = super::locate(origin, node, &message)
        {
            return ConfigError::Invalid {
                source_name: origin.source_name.clone(),
                message: located,
            };
        }
        let (source_name, prefix) = match &self.profile.origin {
            Some(o) => (
                o.source_name.clone(),
                format!("profiles[{}]", self.profile.index),
            ),
            None => (
                format!("profile {:?}", self.profile.scheduler_name),
                String::new(),
            ),
        };
        let path = [prefix.as_str(), context]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(".");
        ConfigError::Invalid {
            source_name,
            message: if path.is_empty() {
                message
            } else {
                format!("{path}: {message}")
            },
        }
    }
}

fn point_key(p: ExtensionPoint) -> &'static str {
    POINTS.iter().find(|(q, _)| *q == p).map_or("?", |(_, k)| k)
}

/// Instantiates a profile's plugins: merges the profile into the defaults, creates each
/// plugin once (with its `pluginConfig` args) and shares the instance across its points,
/// expands `multiPoint` over the points each plugin implements, and takes score weights from
/// the `score` list first, then `multiPoint` (unset or 0 means 1).
///
/// # Errors
/// [`ConfigError::Invalid`], pointing at the offending entry, for an unknown plugin, a plugin
/// enabled at a point it does not implement, a plugin enabled twice at one point, repeated or
/// rejected `pluginConfig` args, a negative weight, a queue sort other than `PrioritySort`, or a
/// profile without a bind plugin.
pub fn resolve_profile(
    profile: &Profile,
    registry: &Registry,
    ctx: &FactoryContext,
) -> Result<ResolvedProfile, ConfigError> {
    let errors = Errors { profile };
    let merged = merge_plugins(&default_plugins(registry), &profile.plugins);

    for e in &merged.queue_sort.enabled {
        if e.name != PRIORITY_SORT {
            return Err(errors.at(
                e.node,
                "plugins.queueSort",
                format!("queue sort plugin {:?} is not supported; the queue orders by priority, then age ({PRIORITY_SORT})", e.name),
            ));
        }
    }

    // Every plugin enabled anywhere, in order of first mention.
    let lists = std::iter::once(("multiPoint", &merged.multi_point))
        .chain(POINTS.iter().map(|(p, key)| (*key, merged.point(*p))));
    let mut needed: Vec<&PluginEntry> = Vec::new();
    for (key, list) in lists {
        for e in &list.enabled {
            if e.weight.is_some_and(|w| w < 0) {
                return Err(errors.at(
                    e.node,
                    &format!("plugins.{key}"),
                    format!("weight of plugin {:?} must not be negative", e.name),
                ));
            }
            if e.name == PRIORITY_SORT || needed.iter().any(|n| n.name == e.name) {
                continue;
            }
            if !registry.contains(&e.name) {
                return Err(errors.at(
                    e.node,
                    &format!("plugins.{key}"),
                    unknown_plugin(&e.name, registry),
                ));
            }
            needed.push(e);
        }
    }

    let mut args = HashMap::new();
    for (i, pc) in profile.plugin_config.iter().enumerate() {
        let context = format!("pluginConfig[{i}]");
        if !registry.contains(&pc.name) {
            return Err(errors.at(pc.node, &context, unknown_plugin(&pc.name, registry)));
        }
        if args.insert(pc.name.as_str(), pc).is_some() {
            return Err(errors.at(
                pc.node,
                &context,
                format!("plugin {:?} has more than one pluginConfig entry", pc.name),
            ));
        }
    }

    let mut instances: Vec<(&str, PluginRef, Vec<ExtensionPoint>)> =
        Vec::with_capacity(needed.len());
    for e in &needed {
        let config = args.get(e.name.as_str());
        let plugin_args = config.map_or(&serde_json::Value::Null, |c| &c.args);
        let plugin = registry
            .create(&e.name, plugin_args, ctx)
            .map_err(|err| match config {
                Some(c) => errors.at(c.args_node.or(c.node), "pluginConfig", err.to_string()),
                None => errors.at(e.node, "plugins", err.to_string()),
            })?;
        let points = plugin.extension_points();
        instances.push((e.name.as_str(), plugin, points));
    }
    let find = |name: &str| instances.iter().find(|(n, _, _)| *n == name);

    // Score weights: the score list wins over multiPoint.
    let mut weights: HashMap<&str, i64> = HashMap::new();
    for e in merged
        .score
        .enabled
        .iter()
        .chain(&merged.multi_point.enabled)
    {
        weights
            .entry(e.name.as_str())
            .or_insert_with(|| i64::from(e.weight.filter(|w| *w > 0).unwrap_or(1)));
    }

    let mut points = BTreeMap::new();
    for (p, key) in POINTS {
        let list = merged.point(p);
        let context = format!("plugins.{key}");
        let mut specific: Vec<&str> = Vec::new();
        for e in &list.enabled {
            let (_, _, implements) = find(&e.name).expect("every enabled plugin was instantiated");
            if !implements.contains(&p) {
                let has: Vec<&str> = implements.iter().map(|q| point_key(*q)).collect();
                return Err(errors.at(
                    e.node,
                    &context,
                    format!(
                        "plugin {:?} does not implement {key} (it implements: {})",
                        e.name,
                        has.join(", ")
                    ),
                ));
            }
            if specific.contains(&e.name.as_str()) {
                return Err(errors.at(
                    e.node,
                    &context,
                    format!("plugin {:?} is enabled twice at {key}", e.name),
                ));
            }
            specific.push(&e.name);
        }
        let disabled: HashSet<&str> = list.disabled.iter().map(|e| e.name.as_str()).collect();
        let mut overrides: Vec<&str> = Vec::new();
        let mut from_multi: Vec<&str> = Vec::new();
        if !disabled.contains("*") {
            for e in &merged.multi_point.enabled {
                let Some((_, _, implements)) = find(&e.name) else {
                    continue;
                }; // PrioritySort
                if !implements.contains(&p) || disabled.contains(e.name.as_str()) {
                    continue;
                }
                // Named at the point itself: the user re-configures it there.
                if specific.contains(&e.name.as_str()) {
                    overrides.push(&e.name);
                    continue;
                }
                if from_multi.contains(&e.name.as_str()) {
                    return Err(errors.at(
                        e.node,
                        "plugins.multiPoint",
                        format!("plugin {:?} is enabled twice in multiPoint", e.name),
                    ));
                }
                from_multi.push(&e.name);
            }
        }
        // Upstream order: overrides, then multiPoint plugins, then the point's own others.
        let mut order: Vec<&str> = overrides;
        for n in from_multi.into_iter().chain(specific) {
            if !order.contains(&n) {
                order.push(n);
            }
        }
        if order.is_empty() {
            continue;
        }
        let entries = order
            .into_iter()
            .map(|n| {
                let (_, plugin, _) = find(n).expect("instantiated");
                let weight = if p == ExtensionPoint::Score {
                    weights.get(n).copied().unwrap_or(1)
                } else {
                    1
                };
                (plugin.clone(), weight)
            })
            .collect();
        points.insert(p, entries);
    }

    if !points.contains_key(&ExtensionPoint::Bind) {
        return Err(errors.at(
            None,
            "plugins",
            format!(
                "at least one bind plugin is needed for profile with scheduler name {:?} (enable DefaultBinder)",
                profile.scheduler_name
            ),
        ));
    }

    Ok(ResolvedProfile {
        scheduler_name: profile.scheduler_name.clone(),
        percentage_of_nodes_to_score: profile.percentage_of_nodes_to_score,
        plugins: instances.into_iter().map(|(_, p, _)| p).collect(),
        points,
    })
}

fn unknown_plugin(name: &str, registry: &Registry) -> String {
    format!(
        "unknown plugin {name:?} (known: {})",
        registry.names().join(", ")
    )
}
