//! The devices the cluster offers, built from ResourceSlices: complete pools only, in a
//! deterministic order, with each device's reach (one node, a node selector, or all nodes), its
//! CEL view and its attributes for `matchAttribute` constraints.
//!
//! Pools follow upstream (k8s.io/dynamic-resource-allocation/structured/pools.go): the slices
//! of a pool with the highest `pool.generation` replace older ones, and a pool is complete when
//! as many slices of that generation exist as `pool.resourceSliceCount` says. Incomplete pools
//! are not used; a pool where a device name appears twice is invalid and not used either.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::NodeSelector;
use k8s_openapi::api::resource::v1::{DeviceTaint, ResourceSliceSpec};
use rustc_hash::FxHashMap;

use crate::cel_env::CelDevice;

/// Where a device can be used from.
#[derive(Debug, Clone)]
pub enum Reach {
    /// Only from this node (`spec.nodeName`).
    Node(String),
    /// From nodes matching the selector (`spec.nodeSelector`).
    Selector(NodeSelector),
    /// From every node (`spec.allNodes`).
    AllNodes,
}

/// A typed attribute value, compared by `matchAttribute` / `distinctAttribute` constraints.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AttrValue {
    /// `int`.
    Int(i64),
    /// `bool`.
    Bool(bool),
    /// `string`.
    Str(String),
    /// `version` (compared as written, as upstream does).
    Version(String),
}

/// One device of a complete pool.
#[derive(Debug)]
pub struct Device {
    /// `driver`, `pool` and `device` joined by NUL: the identity allocations refer to.
    pub key: String,
    /// The driver.
    pub driver: String,
    /// The pool.
    pub pool: String,
    /// The device name.
    pub name: String,
    /// Where it can be used from.
    pub reach: Reach,
    /// For a node-local device, its node's index in [`Inventory::node_ids`].
    pub node: Option<u32>,
    /// The CEL view of it, or why it has none (then no selector matches it).
    pub cel: Result<CelDevice, String>,
    /// Attributes by fully qualified name (`domain/name`; the driver's domain when none).
    pub attributes: HashMap<String, AttrValue>,
    /// Taints with effect `NoSchedule` or `NoExecute`.
    pub taints: Vec<DeviceTaint>,
    /// Shared counters this device consumes (KEP-4815): (counter id, amount in nano-units).
    pub consumes: Vec<(u32, i128)>,
    /// Capacity as published (name, value in nano-units), sorted by name.
    pub capacity: Vec<(String, i128)>,
    /// Consumable capacity (KEP-5075): `allowMultipleAllocations` is set, so several claims may
    /// share the device, each consuming part of its capacity.
    pub multi: bool,
    /// Per entry of `capacity`: its `requestPolicy` (only with `multi`).
    pub policies: Vec<Option<RequestPolicy>>,
    /// The quantity format of each `capacity` entry, for `consumedCapacity` in allocations.
    pub formats: Vec<kube_quantity::Format>,
    /// `bindingConditions` (KEP-5007): the pod binds only once all are `True` on the claim.
    pub binding_conditions: Vec<String>,
    /// `bindingFailureConditions` (KEP-5007): any `True` fails the binding.
    pub binding_failure_conditions: Vec<String>,
    /// `bindsToNode` (KEP-5007): the allocation is limited to the node it was made for.
    pub binds_to_node: bool,
}

/// A capacity's `requestPolicy` (KEP-5075), in nano-units.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestPolicy {
    /// `default`: consumed when the request names no amount.
    pub default: Option<i128>,
    /// `validRange`: (`min`, `max`, `step`).
    pub range: Option<(i128, Option<i128>, Option<i128>)>,
    /// `validValues`, ascending.
    pub values: Vec<i128>,
}

impl RequestPolicy {
    /// The amount consumed for a request of `requested` (`None`: the request names none), as
    /// upstream `calculateConsumedCapacity`: the default (else all of `total`) when none is
    /// named; rounded up to `min` and then to the next step from `min`, or to the first valid
    /// value at least as large; `None` if the result violates the policy (above `max`, not on
    /// a step, not a valid value).
    pub fn consumed(
        policy: Option<&RequestPolicy>,
        requested: Option<i128>,
        total: i128,
    ) -> Option<i128> {
        let Some(p) = policy else {
            return Some(requested.unwrap_or(total));
        };
        let Some(r) = requested else {
            return Some(p.default.unwrap_or(total));
        };
        let amount = if let Some((min, _, step)) = p.range {
            match step {
                _ if r < min => min,
                Some(step) if step > 0 => {
                    let n = (r - min + step - 1) / step;
                    min + n * step
                }
                _ => r,
            }
        } else if !p.values.is_empty() {
            p.values.iter().copied().find(|&v| r <= v).unwrap_or(r)
        } else {
            r
        };
        (!p.violated_by(amount)).then_some(amount)
    }

    /// Upstream `violatesPolicy`.
    fn violated_by(&self, amount: i128) -> bool {
        if self.default == Some(amount) {
            return false;
        }
        if let Some((min, max, step)) = self.range {
            return max.is_some_and(|m| amount > m)
                || step.is_some_and(|s| s > 0 && (amount - min) % s != 0);
        }
        !self.values.is_empty() && !self.values.contains(&amount)
    }
}

/// The identity string of a device, as stored in [`Device::key`].
pub fn device_key(driver: &str, pool: &str, device: &str) -> String {
    let mut k = String::with_capacity(driver.len() + pool.len() + device.len() + 2);
    k.push_str(driver);
    k.push('\0');
    k.push_str(pool);
    k.push('\0');
    k.push_str(device);
    k
}

/// A pool that cannot be used right now, and why.
#[derive(Debug, Clone)]
pub struct UnusablePool {
    /// The driver.
    pub driver: String,
    /// The pool name.
    pub pool: String,
    /// Nodes of its slices (for node-local slices), so only those nodes report it.
    pub node: Option<String>,
    /// "is currently being updated" or "is invalid: ...".
    pub reason: String,
}

/// All usable devices, indexed by node.
#[derive(Debug, Default)]
pub struct Inventory {
    /// Devices in (driver, pool, slice name, position) order.
    pub devices: Vec<Device>,
    /// Node-local devices by node name, in index order.
    pub by_node: FxHashMap<String, Vec<u32>>,
    /// Device index by [`Device::key`], to turn allocations into indices.
    pub index: FxHashMap<String, u32>,
    /// A dense index per node that has node-local devices (see [`Device::node`]).
    pub node_ids: FxHashMap<String, u32>,
    /// Devices with a node selector or for all nodes.
    pub shared: Vec<u32>,
    /// Pools skipped because they are incomplete or invalid.
    pub unusable: Vec<UnusablePool>,
    /// Capacity of each shared counter (KEP-4815), by counter id, in nano-units.
    pub counters: Vec<i128>,
    /// Per counter id: the devices that consume it.
    pub counter_consumers: Vec<Vec<u32>>,
}

impl Inventory {
    /// Builds the inventory from all ResourceSlice specs.
    pub fn build<'a>(
        slices: impl IntoIterator<Item = (&'a str, &'a ResourceSliceSpec)>,
    ) -> Inventory {
        let mut pools: BTreeMap<(&str, &str), Vec<(&str, &ResourceSliceSpec)>> = BTreeMap::new();
        for (name, spec) in slices {
            pools
                .entry((spec.driver.as_str(), spec.pool.name.as_str()))
                .or_default()
                .push((name, spec));
        }
        let mut inv = Inventory::default();
        for ((driver, pool), mut slices) in pools {
            let generation = slices
                .iter()
                .map(|(_, s)| s.pool.generation)
                .max()
                .unwrap_or(0);
            slices.retain(|(_, s)| s.pool.generation == generation);
            slices.sort_by(|a, b| a.0.cmp(b.0));
            let expected = slices[0].1.pool.resource_slice_count;
            let node = slices[0].1.node_name.clone();
            if slices.len() as i64 != expected {
                inv.unusable.push(UnusablePool {
                    driver: driver.to_owned(),
                    pool: pool.to_owned(),
                    node,
                    reason: "is currently being updated".to_owned(),
                });
                continue;
            }
            let mut names = std::collections::HashSet::new();
            let duplicate = slices
                .iter()
                .flat_map(|(_, s)| s.devices.iter().flatten())
                .find(|d| !names.insert(d.name.as_str()))
                .map(|d| d.name.clone());
            if let Some(dup) = duplicate {
                inv.unusable.push(UnusablePool {
                    driver: driver.to_owned(),
                    pool: pool.to_owned(),
                    node,
                    reason: format!("is invalid: duplicate device name {dup}"),
                });
                continue;
            }
            // Counter sets may be published in another slice of the pool than their consumers.
            let mut pool_counters: HashMap<(&str, &str), u32> = HashMap::new();
            for (_, spec) in &slices {
                for set in spec.shared_counters.iter().flatten() {
                    for (counter, c) in &set.counters {
                        let id = inv.counters.len() as u32;
                        let value = kube_quantity::Quantity::parse_json(&c.value.0)
                            .map_or(0, |q| q.nanos());
                        inv.counters.push(value);
                        inv.counter_consumers.push(Vec::new());
                        pool_counters.insert((set.name.as_str(), counter.as_str()), id);
                    }
                }
            }
            for (_, spec) in slices {
                inv.add_slice(spec, &pool_counters);
            }
        }
        inv
    }

    fn add_slice(&mut self, spec: &ResourceSliceSpec, pool_counters: &HashMap<(&str, &str), u32>) {
        let slice_reach = if let Some(n) = &spec.node_name {
            Some(Reach::Node(n.clone()))
        } else if let Some(sel) = &spec.node_selector {
            Some(Reach::Selector(sel.clone()))
        } else if spec.all_nodes == Some(true) {
            Some(Reach::AllNodes)
        } else {
            None // perDeviceNodeSelection: each device says
        };
        for d in spec.devices.iter().flatten() {
            let reach = match &slice_reach {
                Some(r) => r.clone(),
                None => {
                    if let Some(n) = &d.node_name {
                        Reach::Node(n.clone())
                    } else if let Some(sel) = &d.node_selector {
                        Reach::Selector(sel.clone())
                    } else if d.all_nodes == Some(true) {
                        Reach::AllNodes
                    } else {
                        continue; // not usable from any node
                    }
                }
            };
            let attributes = d
                .attributes
                .iter()
                .flatten()
                .filter_map(|(name, a)| {
                    let value = if let Some(v) = a.int {
                        AttrValue::Int(v)
                    } else if let Some(v) = a.bool {
                        AttrValue::Bool(v)
                    } else if let Some(v) = &a.string {
                        AttrValue::Str(v.clone())
                    } else {
                        AttrValue::Version(a.version.clone()?)
                    };
                    Some((qualified_name(name, &spec.driver), value))
                })
                .collect();
            let taints = d
                .taints
                .iter()
                .flatten()
                .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
                .cloned()
                .collect();
            // A device consuming a counter its pool does not define cannot be allocated
            // (upstream's allocator fails on it too).
            let mut consumes = Vec::new();
            let mut missing_counter = false;
            for c in d.consumes_counters.iter().flatten() {
                for (counter, amount) in &c.counters {
                    match pool_counters.get(&(c.counter_set.as_str(), counter.as_str())) {
                        Some(&id) => consumes.push((
                            id,
                            kube_quantity::Quantity::parse_json(&amount.value.0)
                                .map_or(0, |q| q.nanos()),
                        )),
                        None => missing_counter = true,
                    }
                }
            }
            if missing_counter {
                continue;
            }
            let multi = d.allow_multiple_allocations == Some(true);
            let nanos = |q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity| {
                kube_quantity::Quantity::parse_json(&q.0).map_or(0, |q| q.nanos())
            };
            let (mut capacity, mut policies, mut formats) = (Vec::new(), Vec::new(), Vec::new());
            // A BTreeMap: already sorted by name.
            for (name, c) in d.capacity.iter().flatten() {
                capacity.push((name.clone(), nanos(&c.value)));
                formats.push(
                    kube_quantity::Quantity::parse_json(&c.value.0)
                        .map_or(kube_quantity::Format::DecimalSI, |q| q.format()),
                );
                policies.push(
                    c.request_policy
                        .as_ref()
                        .filter(|_| multi)
                        .map(|p| RequestPolicy {
                            default: p.default.as_ref().map(nanos),
                            range: p.valid_range.as_ref().map(|r| {
                                (
                                    nanos(&r.min),
                                    r.max.as_ref().map(nanos),
                                    r.step.as_ref().map(nanos),
                                )
                            }),
                            values: p.valid_values.iter().flatten().map(nanos).collect(),
                        }),
                );
            }
            let index = self.devices.len() as u32;
            for &(id, _) in &consumes {
                self.counter_consumers[id as usize].push(index);
            }
            let node = match &reach {
                Reach::Node(n) => {
                    self.by_node.entry(n.clone()).or_default().push(index);
                    let next = self.node_ids.len() as u32;
                    Some(*self.node_ids.entry(n.clone()).or_insert(next))
                }
                _ => {
                    self.shared.push(index);
                    None
                }
            };
            let key = device_key(&spec.driver, &spec.pool.name, &d.name);
            self.index.insert(key.clone(), index);
            self.devices.push(Device {
                key,
                driver: spec.driver.clone(),
                pool: spec.pool.name.clone(),
                name: d.name.clone(),
                reach,
                node,
                cel: CelDevice::new(&spec.driver, d.attributes.as_ref(), d.capacity.as_ref())
                    .map(|c| c.with_multiple_allocations(multi)),
                attributes,
                taints,
                consumes,
                capacity,
                multi,
                policies,
                formats,
                binding_conditions: d.binding_conditions.clone().unwrap_or_default(),
                binding_failure_conditions: d
                    .binding_failure_conditions
                    .clone()
                    .unwrap_or_default(),
                binds_to_node: d.binds_to_node == Some(true),
            });
        }
    }
}

impl Inventory {
    /// Adds the taints of DeviceTaintRules (KEP-5055) to the devices they select, as upstream's
    /// ResourceSlice tracker does before allocation: a rule's taint then counts exactly like one
    /// published in the slice. Only `NoSchedule`/`NoExecute` taints are kept (see
    /// [`Device::taints`]).
    pub fn add_rule_taints<'a>(
        &mut self,
        rules: impl IntoIterator<Item = &'a crate::state::TaintRule>,
    ) {
        for rule in rules {
            if !matches!(rule.taint.effect.as_str(), "NoSchedule" | "NoExecute") {
                continue;
            }
            for d in &mut self.devices {
                if rule.selects(&d.driver, &d.pool, &d.name) {
                    d.taints.push(rule.taint.clone());
                }
            }
        }
    }
}

impl Device {
    /// The index in [`Device::capacity`] of the capacity a request names (`memory` and
    /// `driver/memory` are the same for the device's driver).
    pub fn capacity_index(&self, name: &str) -> Option<usize> {
        let bare = name
            .strip_prefix(self.driver.as_str())
            .and_then(|r| r.strip_prefix('/'))
            .unwrap_or(name);
        let qualified = |n: &str| {
            n.strip_prefix(self.driver.as_str())
                .and_then(|r| r.strip_prefix('/'))
                .unwrap_or(n)
                == bare
        };
        self.capacity
            .iter()
            .position(|(n, _)| n == name)
            .or_else(|| self.capacity.iter().position(|(n, _)| qualified(n)))
    }
}

/// `name` with the driver's domain when it has none: `model` → `gpu.example.com/model`.
pub fn qualified_name(name: &str, driver: &str) -> String {
    if name.contains('/') {
        name.to_owned()
    } else {
        format!("{driver}/{name}")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::resource::v1::{Device as K8sDevice, DeviceAttribute, ResourcePool};

    /// A node-local slice with devices `gpu-0..n` having an `index` attribute.
    pub fn slice(
        driver: &str,
        node: &str,
        pool: &str,
        generation: i64,
        count: i64,
        names: &[&str],
    ) -> ResourceSliceSpec {
        ResourceSliceSpec {
            driver: driver.into(),
            node_name: Some(node.into()),
            pool: ResourcePool {
                name: pool.into(),
                generation,
                resource_slice_count: count,
            },
            devices: Some(
                names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| K8sDevice {
                        name: n.to_string(),
                        attributes: Some(
                            [(
                                "index".to_string(),
                                DeviceAttribute {
                                    int: Some(i as i64),
                                    ..Default::default()
                                },
                            )]
                            .into(),
                        ),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn uses_only_complete_pools_of_the_latest_generation() {
        let a1 = slice("gpu.example.com", "node-a", "pool-a", 1, 1, &["old-0"]);
        let a2 = slice(
            "gpu.example.com",
            "node-a",
            "pool-a",
            2,
            1,
            &["new-0", "new-1"],
        );
        let b = slice("gpu.example.com", "node-b", "pool-b", 1, 2, &["gpu-0"]);
        let inv = Inventory::build([("a1", &a1), ("a2", &a2), ("b", &b)]);
        let names: Vec<_> = inv.devices.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["new-0", "new-1"]);
        assert_eq!(inv.by_node["node-a"], [0, 1]);
        assert_eq!(inv.unusable.len(), 1);
        assert_eq!(inv.unusable[0].pool, "pool-b");
        assert_eq!(inv.unusable[0].reason, "is currently being updated");
    }

    #[test]
    fn a_pool_becomes_complete_when_all_its_slices_exist() {
        let b1 = slice("gpu.example.com", "node-b", "pool-b", 1, 2, &["gpu-0"]);
        let b2 = slice("gpu.example.com", "node-b", "pool-b", 1, 2, &["gpu-1"]);
        let inv = Inventory::build([("b1", &b1), ("b2", &b2)]);
        assert_eq!(inv.devices.len(), 2);
        assert!(inv.unusable.is_empty());
    }

    #[test]
    fn a_pool_with_duplicate_device_names_is_invalid() {
        let b1 = slice("gpu.example.com", "node-b", "pool-b", 1, 2, &["gpu-0"]);
        let b2 = slice("gpu.example.com", "node-b", "pool-b", 1, 2, &["gpu-0"]);
        let inv = Inventory::build([("b1", &b1), ("b2", &b2)]);
        assert!(inv.devices.is_empty());
        assert!(
            inv.unusable[0]
                .reason
                .contains("duplicate device name gpu-0")
        );
    }

    #[test]
    fn request_policies_round_up_and_refuse_as_upstream() {
        let g: i128 = 1_000_000_000 * 1_000_000_000; // 1G in nano-units
        let range = RequestPolicy {
            default: Some(g),
            range: Some((g, Some(8 * g), Some(g))),
            values: Vec::new(),
        };
        let consumed = |p: Option<&RequestPolicy>, r| RequestPolicy::consumed(p, r, 10 * g);
        assert_eq!(consumed(Some(&range), None), Some(g), "the default");
        assert_eq!(
            consumed(Some(&range), Some(g * 5 / 2)),
            Some(3 * g),
            "next step"
        );
        assert_eq!(consumed(Some(&range), Some(g / 2)), Some(g), "at least min");
        assert_eq!(consumed(Some(&range), Some(9 * g)), None, "above max");
        let values = RequestPolicy {
            default: Some(2 * g),
            range: None,
            values: vec![2 * g, 4 * g],
        };
        assert_eq!(consumed(Some(&values), Some(3 * g)), Some(4 * g));
        assert_eq!(consumed(Some(&values), Some(5 * g)), None);
        assert_eq!(consumed(None, None), Some(10 * g), "no policy: all of it");
        assert_eq!(consumed(None, Some(g)), Some(g));
    }

    #[test]
    fn attributes_get_the_driver_domain() {
        let s = slice("gpu.example.com", "node-a", "p", 1, 1, &["gpu-0"]);
        let inv = Inventory::build([("s", &s)]);
        assert_eq!(
            inv.devices[0].attributes["gpu.example.com/index"],
            AttrValue::Int(0)
        );
    }
}
