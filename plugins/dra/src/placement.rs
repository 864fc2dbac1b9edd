//! Placement that keeps scarce devices free: a rank for every device, lowest for the devices
//! whose loss costs future pods least.
//!
//! Upstream's allocator takes the first devices that fit, in slice order, and DRA scores nodes
//! only by `firstAvailable` choices. So a generic request ("any GPU") takes a specially capable
//! device (say, the one GPU with 80Gi) when it comes first, and the pod that needs exactly that
//! device stays pending. Here every device gets a *value*, compared lexicographically:
//!
//! 1. how many known request *shapes* it satisfies — a shape is the set of CEL selectors of a
//!    request alternative (its class's and its own), taken from every DeviceClass (alone),
//!    every ResourceClaimTemplate and every unallocated ResourceClaim the plugin has seen (at
//!    most [`MAX_SHAPES`]); a device that serves more kinds of requests is worth more;
//! 2. how many attributes and capacities it publishes (a richer device is more special);
//! 3. its capacities, name by name (best fit: a smaller device first);
//! 4. how much of shared counters (KEP-4815) it consumes (a partition before the whole device).
//!
//! Devices with equal values share a dense rank ([`Placement::value`]). The allocator tries a
//! request's candidates in rank order (then inventory order), and Score prefers nodes where the
//! allocation uses low ranks. Everything is deterministic and recomputed only when the
//! inventory or the set of shapes changes (CEL results are cached per selector and device).

use crate::cel_env::{SelectorId, Selectors};
use crate::inventory::Inventory;

/// The most request shapes tracked (later ones are ignored).
pub const MAX_SHAPES: usize = 64;

/// Device values for one inventory and one set of shapes.
#[derive(Default)]
pub struct Placement {
    /// (shapes generation, inventory epoch) the values were computed for.
    built_for: Option<(u64, u64)>,
    /// Per device index: the dense rank of its value (0 = least valuable).
    pub value: Vec<u32>,
    /// Number of distinct values; 1 or 0 means every device is alike.
    pub distinct: u32,
    /// Resolved shapes (sorted selector ids), with whether the devices each matches all have
    /// one value (then placement cannot tell them apart).
    shapes: Vec<(Vec<SelectorId>, bool)>,
    /// Bumped whenever the values change, so cached scores can tell they are stale.
    pub version: u64,
}

impl Placement {
    /// Recomputes the values if the inventory (`epoch`) or the shapes (`generation`) changed.
    /// `keys` are the shapes as (DeviceClass name, request selector expressions); a class that
    /// does not exist or an expression that does not compile drops its shape.
    pub fn refresh(
        &mut self,
        inv: &Inventory,
        selectors: &mut Selectors,
        classes: &std::collections::HashMap<String, Vec<String>>,
        keys: &[(String, Vec<String>)],
        generation: u64,
        epoch: u64,
    ) {
        if self.built_for == Some((generation, epoch)) {
            return;
        }
        self.built_for = Some((generation, epoch));
        self.version += 1;
        let mut shapes: Vec<Vec<SelectorId>> = Vec::new();
        for (class, exprs) in keys {
            let Some(class_exprs) = classes.get(class) else {
                continue;
            };
            let ids: Result<Vec<SelectorId>, String> = class_exprs
                .iter()
                .chain(exprs)
                .map(|e| selectors.compile(e))
                .collect();
            let Ok(mut ids) = ids else { continue };
            ids.sort_unstable();
            ids.dedup();
            if !shapes.contains(&ids) && shapes.len() < MAX_SHAPES {
                shapes.push(ids);
            }
        }
        // Which shapes each device satisfies (bit k: shape k).
        let masks: Vec<u64> = inv
            .devices
            .iter()
            .enumerate()
            .map(|(d, dev)| {
                let Ok(cel) = &dev.cel else { return 0 };
                let mut mask = 0u64;
                for (k, ids) in shapes.iter().enumerate() {
                    if ids
                        .iter()
                        .all(|&s| selectors.matches(s, d as u32, cel) == Ok(true))
                    {
                        mask |= 1 << k;
                    }
                }
                mask
            })
            .collect();
        let key = |d: usize| {
            let dev = &inv.devices[d];
            (
                masks[d].count_ones(),
                dev.attributes.len() + dev.capacity.len(),
                &dev.capacity,
                dev.consumes.iter().map(|&(_, n)| n).sum::<i128>(),
            )
        };
        let mut by_value: Vec<usize> = (0..inv.devices.len()).collect();
        by_value.sort_by(|&a, &b| key(a).cmp(&key(b)));
        self.value = vec![0; inv.devices.len()];
        let mut rank = 0u32;
        for (i, &d) in by_value.iter().enumerate() {
            if i > 0 && key(by_value[i - 1]) != key(d) {
                rank += 1;
            }
            self.value[d] = rank;
        }
        self.distinct = if inv.devices.is_empty() { 0 } else { rank + 1 };
        self.shapes = shapes
            .into_iter()
            .enumerate()
            .map(|(k, ids)| {
                let mut values = (0..inv.devices.len())
                    .filter(|&d| masks[d] & (1 << k) != 0)
                    .map(|d| self.value[d]);
                let first = values.next();
                let uniform = values.all(|v| Some(v) == first);
                (ids, uniform)
            })
            .collect();
    }

    /// Whether devices that satisfy an alternative with these selectors can differ in value
    /// (then the choice among them, and between nodes, matters). An unknown shape may.
    pub fn matters(&self, selectors: &[SelectorId]) -> bool {
        if self.distinct <= 1 {
            return false;
        }
        let mut ids = selectors.to_vec();
        ids.sort_unstable();
        ids.dedup();
        self.shapes
            .iter()
            .find(|(s, _)| *s == ids)
            .is_none_or(|(_, uniform)| !uniform)
    }

    /// The score of taking these devices (by index): 100 when all are among the least
    /// valuable devices, 0 when all are the most valuable; the mean over devices.
    pub fn score(&self, devices: impl IntoIterator<Item = u32>) -> i64 {
        let top = self.distinct.saturating_sub(1);
        let (mut sum, mut n) = (0f64, 0usize);
        for d in devices {
            let v = self.value.get(d as usize).copied().unwrap_or(top).min(top);
            sum += if top == 0 {
                1.0
            } else {
                f64::from(top - v) / f64::from(top)
            };
            n += 1;
        }
        if n == 0 {
            100
        } else {
            (100.0 * sum / n as f64).round() as i64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::resource::v1::ResourceSliceSpec;
    use serde_json::json;
    use std::collections::HashMap;

    fn inventory(devices: serde_json::Value) -> Inventory {
        let s: ResourceSliceSpec = serde_json::from_value(json!({
            "driver": "gpu.example.com", "nodeName": "a",
            "pool": {"name": "a", "generation": 1, "resourceSliceCount": 1},
            "devices": devices}))
        .unwrap();
        Inventory::build([("s", &s)])
    }

    fn classes() -> HashMap<String, Vec<String>> {
        [(
            "gpu".to_string(),
            vec![r#"device.driver == "gpu.example.com""#.to_string()],
        )]
        .into()
    }

    #[test]
    fn devices_serving_more_shapes_rank_higher() {
        let inv = inventory(json!([
            {"name": "big", "capacity": {"memory": {"value": "80Gi"}}},
            {"name": "small", "capacity": {"memory": {"value": "40Gi"}}}]));
        let mut sel = Selectors::new();
        let mut p = Placement::default();
        let big = r#"device.capacity["gpu.example.com"].memory.compareTo(quantity("80Gi")) >= 0"#;
        let keys = vec![
            ("gpu".to_string(), vec![]),
            ("gpu".to_string(), vec![big.to_string()]),
        ];
        p.refresh(&inv, &mut sel, &classes(), &keys, 1, 1);
        assert_eq!(p.value, [1, 0], "small first");
        assert_eq!(p.distinct, 2);
        let generic = sel.compile(&classes()["gpu"][0]).unwrap();
        assert!(p.matters(&[generic]), "a generic request sees both");
        let special = [generic, sel.compile(big).unwrap()];
        assert!(
            !p.matters(&special),
            "only one device serves the special one"
        );
        assert_eq!(p.score([1]), 100);
        assert_eq!(p.score([0]), 0);
    }

    #[test]
    fn smaller_capacity_breaks_ties_and_alike_devices_do_not_matter() {
        let inv = inventory(json!([
            {"name": "a", "capacity": {"memory": {"value": "2Gi"}}},
            {"name": "b", "capacity": {"memory": {"value": "1Gi"}}}]));
        let mut p = Placement::default();
        let keys = vec![("gpu".to_string(), vec![])];
        p.refresh(&inv, &mut Selectors::new(), &classes(), &keys, 1, 1);
        assert_eq!(p.value, [1, 0]);
        let alike = inventory(json!([{"name": "a"}, {"name": "b"}]));
        let mut sel = Selectors::new();
        p.refresh(&alike, &mut sel, &classes(), &keys, 1, 2);
        assert_eq!(p.distinct, 1);
        assert!(!p.matters(&[sel.compile(&classes()["gpu"][0]).unwrap()]));
    }
}
