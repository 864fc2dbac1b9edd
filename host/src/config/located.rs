//! Pointing errors found after parsing at a line of the file.
//!
//! serde_yaml_ng reports the path and line of errors raised while it deserializes, but keeps
//! no positions afterwards. So nodes wrapped in [`Located`] are numbered in document order as
//! they are parsed; to report a later error (an unknown plugin, a duplicate name) about node
//! `n`, the same text is parsed again with a probe that fails at node `n`, and the parser's own
//! error supplies the path and line: `profiles[0].plugins.filter.enabled[1]: ... at line 9
//! column 11`. Parsing is deterministic, so the numbering is the same both times.

use std::cell::RefCell;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};

/// A value with the number of its node in the document.
#[derive(Debug, Clone)]
pub(crate) struct Located<T> {
    pub value: T,
    pub node: usize,
}

#[derive(Default)]
struct Probe {
    next: usize,
    fail_at: Option<(usize, String)>,
}

thread_local! {
    static PROBE: RefCell<Probe> = RefCell::new(Probe::default());
}

/// Resets the probe when a parse ends, even by panic.
struct Reset;

impl Drop for Reset {
    fn drop(&mut self) {
        PROBE.with(|p| *p.borrow_mut() = Probe::default());
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Located<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (node, fail) = PROBE.with(|p| {
            let mut p = p.borrow_mut();
            let node = p.next;
            p.next += 1;
            let fail = match &p.fail_at {
                Some((n, msg)) if *n == node => Some(msg.clone()),
                _ => None,
            };
            (node, fail)
        });
        if let Some(message) = fail {
            // Failing inside the deserializer lets it attach this node's path and position.
            return Err(d
                .deserialize_any(Fail(message))
                .err()
                .unwrap_or_else(|| de::Error::custom("probe")));
        }
        Ok(Located {
            value: T::deserialize(d)?,
            node,
        })
    }
}

/// A visitor that rejects whatever it is shown with a fixed message.
struct Fail(String);

impl<'de> Visitor<'de> for Fail {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(self.0))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(self.0))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(self.0))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(self.0))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(self.0))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(self.0))
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(self.0))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(self.0))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(self.0))
    }
}

/// Parses a document, numbering its [`Located`] nodes from 0.
pub(crate) fn parse<T: DeserializeOwned>(yaml: &str) -> Result<T, serde_yaml_ng::Error> {
    let _reset = Reset;
    PROBE.with(|p| *p.borrow_mut() = Probe::default());
    serde_yaml_ng::from_str(yaml)
}

/// Parses the document again, failing at node `node` with `message`; returns the parser's
/// error text (`path: message at line L column C`), or `None` if the node was not reached.
pub(crate) fn locate<T: DeserializeOwned>(
    yaml: &str,
    node: usize,
    message: &str,
) -> Option<String> {
    let _reset = Reset;
    PROBE.with(|p| {
        *p.borrow_mut() = Probe {
            next: 0,
            fail_at: Some((node, message.to_string())),
        }
    });
    serde_yaml_ng::from_str::<T>(yaml)
        .err()
        .map(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Doc {
        items: Vec<Located<Item>>,
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Item {
        name: String,
    }

    const DOC: &str = "items:\n  - name: a\n  - name: b\n";

    #[test]
    fn nodes_are_numbered_in_document_order() {
        let d: Doc = parse(DOC).unwrap();
        assert_eq!(d.items.iter().map(|i| i.node).collect::<Vec<_>>(), [0, 1]);
    }

    #[test]
    fn a_probe_reports_the_path_and_line_of_a_node() {
        assert_eq!(
            locate::<Doc>(DOC, 1, "bad item").unwrap(),
            "items[1]: bad item at line 3 column 5"
        );
        assert_eq!(locate::<Doc>(DOC, 7, "nowhere"), None);
    }
}
