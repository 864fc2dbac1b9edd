//! Node indices for WIT 0.2.0 and later: every node name the host passes to a plugin gets a `u32` once,
//! for the life of the process, and each instance is told the names it has not heard yet
//! before a call uses them ([`names_from`]). Indices are never reused, so an index an instance
//! holds always means the same node; a deleted node's entry stays (a few bytes per name ever
//! seen).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;

#[derive(Default)]
struct Table {
    by_name: HashMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
}

fn table() -> &'static RwLock<Table> {
    static TABLE: OnceLock<RwLock<Table>> = OnceLock::new();
    TABLE.get_or_init(Default::default)
}

/// The index of each name, in order, giving new names the next indices.
pub fn indices<'a>(names: impl Iterator<Item = &'a str> + Clone) -> Vec<u32> {
    {
        let t = table().read();
        let found: Option<Vec<u32>> = names.clone().map(|n| t.by_name.get(n).copied()).collect();
        if let Some(found) = found {
            return found;
        }
    }
    let mut t = table().write();
    names
        .map(|n| match t.by_name.get(n) {
            Some(&i) => i,
            None => {
                let i = u32::try_from(t.names.len()).expect("fewer than 2^32 node names");
                let name: Arc<str> = n.into();
                t.names.push(name.clone());
                t.by_name.insert(name, i);
                i
            }
        })
        .collect()
}

/// The index of one name.
pub fn index(name: &str) -> u32 {
    indices(std::iter::once(name))[0]
}

/// How many indices exist: an instance that has heard fewer is behind.
pub fn len() -> u32 {
    table().read().names.len() as u32
}

/// The names of indices `first..`, in order.
pub fn names_from(first: u32) -> Vec<String> {
    let t = table().read();
    t.names
        .get(first as usize..)
        .unwrap_or_default()
        .iter()
        .map(|n| n.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_keeps_its_index_and_new_names_come_after() {
        let a = index("node-index-test-a");
        let both = indices(["node-index-test-a", "node-index-test-b"].into_iter());
        assert_eq!(both[0], a);
        assert!(both[1] > a);
        assert_eq!(index("node-index-test-b"), both[1]);
        let names = names_from(a);
        assert_eq!(names[0], "node-index-test-a");
        assert_eq!(names[(both[1] - a) as usize], "node-index-test-b");
        assert!(len() > both[1]);
    }
}
