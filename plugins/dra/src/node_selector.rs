//! Node selectors (`core/v1 NodeSelector`) evaluated against a node's name and labels, as
//! upstream `k8s.io/component-helpers/scheduling/corev1/nodeaffinity`: terms are ORed, the
//! requirements of a term ANDed, and a term without requirements matches nothing.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorRequirement, NodeSelectorTerm};

/// True if the node `name` with `labels` matches `selector`.
pub fn matches(selector: &NodeSelector, name: &str, labels: &BTreeMap<String, String>) -> bool {
    selector
        .node_selector_terms
        .iter()
        .any(|t| term_matches(t, name, labels))
}

fn term_matches(term: &NodeSelectorTerm, name: &str, labels: &BTreeMap<String, String>) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            // Only metadata.name is a supported field (upstream validation).
            r.key == "metadata.name" && requirement_matches(r, Some(name))
        })
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), [bound]) = (value.and_then(|v| v.parse::<i64>().ok()), values) else {
                return false;
            };
            let Ok(bound) = bound.parse::<i64>() else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// The selector for exactly one node: `matchFields metadata.name In [node]`, as the allocator
/// writes for node-local devices.
pub fn for_node(node: &str) -> NodeSelector {
    NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".to_owned(),
                operator: "In".to_owned(),
                values: Some(vec![node.to_owned()]),
            }]),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|s| s.to_string()).collect()),
        }
    }

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn works_with_match_fields_on_the_node_name() {
        let s = for_node("node-a");
        assert!(matches(&s, "node-a", &labels(&[])));
        assert!(!matches(&s, "node-b", &labels(&[])));
    }

    #[test]
    fn works_with_label_expressions_anded_in_a_term_and_terms_ored() {
        let s = NodeSelector {
            node_selector_terms: vec![
                NodeSelectorTerm {
                    match_expressions: Some(vec![
                        req("zone", "In", &["a", "b"]),
                        req("gpu", "Exists", &[]),
                    ]),
                    match_fields: None,
                },
                NodeSelectorTerm {
                    match_expressions: Some(vec![req("rank", "Gt", &["5"])]),
                    match_fields: None,
                },
            ],
        };
        assert!(matches(&s, "n", &labels(&[("zone", "a"), ("gpu", "")])));
        assert!(!matches(&s, "n", &labels(&[("zone", "a")])));
        assert!(matches(&s, "n", &labels(&[("rank", "7")])));
        assert!(!matches(&s, "n", &labels(&[("rank", "5")])));
    }

    #[test]
    fn an_empty_term_matches_nothing() {
        let s = NodeSelector {
            node_selector_terms: vec![NodeSelectorTerm::default()],
        };
        assert!(!matches(&s, "n", &labels(&[])));
    }
}
