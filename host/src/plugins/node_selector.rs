//! Node selector terms compiled once per pod and matched against many nodes without
//! allocating (upstream `k8s.io/component-helpers/scheduling/corev1/nodeaffinity`).
//!
//! Terms are ORed, the requirements inside a term ANDed. A term with no requirements, or with
//! an invalid one, matches no node.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, PreferredSchedulingTerm,
};

/// The only field `matchFields` supports.
pub const OBJECT_NAME_FIELD: &str = "metadata.name";

/// One label requirement.
#[derive(Debug, Clone)]
enum LabelOp {
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

#[derive(Debug, Clone)]
struct LabelRequirement {
    key: String,
    op: LabelOp,
}

/// One field requirement: the field equals (or does not equal) a value.
#[derive(Debug, Clone)]
struct FieldRequirement {
    key: String,
    value: String,
    equal: bool,
}

/// A compiled `NodeSelectorTerm`.
#[derive(Debug, Clone)]
pub struct Term {
    labels: Vec<LabelRequirement>,
    fields: Vec<FieldRequirement>,
    /// Why the term is invalid, if it is.
    error: Option<String>,
}

impl Term {
    /// Compiles a term; invalid requirements make it match nothing (see [`Term::error`]).
    pub fn new(term: &NodeSelectorTerm) -> Self {
        let mut t = Term {
            labels: Vec::new(),
            fields: Vec::new(),
            error: None,
        };
        for r in term.match_expressions.iter().flatten() {
            match label_requirement(r) {
                Ok(req) => t.labels.push(req),
                Err(e) => t.error = Some(e),
            }
        }
        for r in term.match_fields.iter().flatten() {
            match field_requirement(r) {
                Ok(req) => t.fields.push(req),
                Err(e) => t.error = Some(e),
            }
        }
        t
    }

    /// Why the term cannot match, if one of its requirements is invalid.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Whether the node matches every requirement of the term.
    pub fn matches(&self, node: &Node, node_name: &str) -> bool {
        if self.error.is_some() || (self.labels.is_empty() && self.fields.is_empty()) {
            return false;
        }
        let labels = node.metadata.labels.as_ref();
        self.labels.iter().all(|r| r.matches(labels))
            && self.fields.iter().all(|r| r.matches(node_name))
    }

    /// Node names this term pins the pod to: the intersection of its `metadata.name In`
    /// requirements, or `None` if it has none (upstream NodeAffinity PreFilter).
    pub fn pinned_node_names(term: &NodeSelectorTerm) -> Option<Vec<String>> {
        let mut names: Option<Vec<String>> = None;
        for r in term.match_fields.iter().flatten() {
            if r.key == OBJECT_NAME_FIELD && r.operator == "In" {
                let values = r.values.clone().unwrap_or_default();
                names = Some(match names {
                    None => values,
                    Some(prev) => prev.into_iter().filter(|n| values.contains(n)).collect(),
                });
            }
        }
        names
    }
}

impl LabelRequirement {
    fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let value = labels.and_then(|l| l.get(&self.key));
        match &self.op {
            LabelOp::In(values) => value.is_some_and(|v| values.contains(v)),
            LabelOp::NotIn(values) => !value.is_some_and(|v| values.contains(v)),
            LabelOp::Exists => value.is_some(),
            LabelOp::DoesNotExist => value.is_none(),
            LabelOp::Gt(n) => value
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v > *n),
            LabelOp::Lt(n) => value
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v < *n),
        }
    }
}

impl FieldRequirement {
    fn matches(&self, node_name: &str) -> bool {
        let actual = if self.key == OBJECT_NAME_FIELD {
            node_name
        } else {
            ""
        };
        (actual == self.value) == self.equal
    }
}

fn label_requirement(r: &NodeSelectorRequirement) -> Result<LabelRequirement, String> {
    let values = r.values.clone().unwrap_or_default();
    let one_integer = || -> Result<i64, String> {
        match values.as_slice() {
            [v] => v
                .parse::<i64>()
                .map_err(|_| format!("{}: value {v:?} is not an integer", r.key)),
            _ => Err(format!(
                "{}: operator {} needs exactly one value",
                r.key, r.operator
            )),
        }
    };
    let op = match r.operator.as_str() {
        "In" | "NotIn" if values.is_empty() => {
            return Err(format!("{}: operator {} needs values", r.key, r.operator));
        }
        "In" => LabelOp::In(values),
        "NotIn" => LabelOp::NotIn(values),
        "Exists" | "DoesNotExist" if !values.is_empty() => {
            return Err(format!(
                "{}: operator {} takes no values",
                r.key, r.operator
            ));
        }
        "Exists" => LabelOp::Exists,
        "DoesNotExist" => LabelOp::DoesNotExist,
        "Gt" => LabelOp::Gt(one_integer()?),
        "Lt" => LabelOp::Lt(one_integer()?),
        other => return Err(format!("{}: unsupported operator {other:?}", r.key)),
    };
    Ok(LabelRequirement {
        key: r.key.clone(),
        op,
    })
}

fn field_requirement(r: &NodeSelectorRequirement) -> Result<FieldRequirement, String> {
    let equal = match r.operator.as_str() {
        "In" => true,
        "NotIn" => false,
        other => return Err(format!("{}: unsupported field operator {other:?}", r.key)),
    };
    match r.values.as_deref() {
        Some([v]) => Ok(FieldRequirement {
            key: r.key.clone(),
            value: v.clone(),
            equal,
        }),
        _ => Err(format!(
            "{}: field requirement needs exactly one value",
            r.key
        )),
    }
}

/// A compiled required node selector: terms ORed.
#[derive(Debug, Clone)]
pub struct NodeSelector {
    terms: Vec<Term>,
}

impl NodeSelector {
    /// Compiles the terms.
    pub fn new(terms: &[NodeSelectorTerm]) -> Self {
        NodeSelector {
            terms: terms.iter().map(Term::new).collect(),
        }
    }

    /// The first invalid term's error, if any.
    pub fn error(&self) -> Option<&str> {
        self.terms.iter().find_map(Term::error)
    }

    /// Whether any term matches the node.
    pub fn matches(&self, node: &Node, node_name: &str) -> bool {
        self.terms.iter().any(|t| t.matches(node, node_name))
    }
}

/// Compiled preferred terms with their weights (terms of weight 0 are dropped).
#[derive(Debug, Clone, Default)]
pub struct PreferredTerms {
    terms: Vec<(i64, Term)>,
}

impl PreferredTerms {
    /// Compiles the terms.
    ///
    /// # Errors
    /// The first invalid term's error, as upstream `NewPreferredSchedulingTerms`.
    pub fn new(terms: &[PreferredSchedulingTerm]) -> Result<Self, String> {
        let mut out = Vec::with_capacity(terms.len());
        for t in terms.iter().filter(|t| t.weight != 0) {
            let term = Term::new(&t.preference);
            if let Some(e) = term.error() {
                return Err(e.to_string());
            }
            out.push((i64::from(t.weight), term));
        }
        Ok(PreferredTerms { terms: out })
    }

    /// True when no term has a weight.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The sum of the weights of the terms the node matches.
    pub fn score(&self, node: &Node, node_name: &str) -> i64 {
        self.terms
            .iter()
            .filter(|(_, t)| t.matches(node, node_name))
            .map(|(w, _)| w)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(labels: &[(&str, &str)]) -> Node {
        let mut n = Node::default();
        n.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        n
    }

    fn term(yaml: &str) -> Term {
        Term::new(&serde_yaml_ng::from_str(yaml).unwrap())
    }

    #[test]
    fn label_operators_match_as_upstream() {
        let n = node(&[("zone", "a"), ("cores", "8")]);
        let m = |y: &str| term(y).matches(&n, "n1");
        assert!(m(
            "matchExpressions: [{key: zone, operator: In, values: [a, b]}]"
        ));
        assert!(!m(
            "matchExpressions: [{key: zone, operator: In, values: [b]}]"
        ));
        assert!(m(
            "matchExpressions: [{key: zone, operator: NotIn, values: [b]}]"
        ));
        assert!(
            m("matchExpressions: [{key: missing, operator: NotIn, values: [b]}]"),
            "NotIn matches absent labels"
        );
        assert!(m("matchExpressions: [{key: zone, operator: Exists}]"));
        assert!(m(
            "matchExpressions: [{key: missing, operator: DoesNotExist}]"
        ));
        assert!(m(
            "matchExpressions: [{key: cores, operator: Gt, values: ['4']}]"
        ));
        assert!(!m(
            "matchExpressions: [{key: cores, operator: Lt, values: ['4']}]"
        ));
        assert!(
            !m("matchExpressions: [{key: zone, operator: Gt, values: ['4']}]"),
            "non-integer labels never match Gt"
        );
        assert!(!m(
            "matchExpressions: [{key: zone, operator: In, values: [a]}, {key: cores, operator: Lt, values: ['2']}]"
        ));
    }

    #[test]
    fn match_fields_compare_the_node_name() {
        let n = node(&[]);
        assert!(
            term("matchFields: [{key: metadata.name, operator: In, values: [n1]}]")
                .matches(&n, "n1")
        );
        assert!(
            !term("matchFields: [{key: metadata.name, operator: In, values: [n2]}]")
                .matches(&n, "n1")
        );
        assert!(
            term("matchFields: [{key: metadata.name, operator: NotIn, values: [n2]}]")
                .matches(&n, "n1")
        );
    }

    #[test]
    fn empty_and_invalid_terms_match_nothing() {
        let n = node(&[("zone", "a")]);
        assert!(!term("{}").matches(&n, "n1"));
        let bad = term("matchExpressions: [{key: zone, operator: Gt, values: [x]}]");
        assert!(!bad.matches(&n, "n1"));
        assert_eq!(bad.error(), Some("zone: value \"x\" is not an integer"));
        assert!(
            term("matchExpressions: [{key: zone, operator: Exists, values: [a]}]")
                .error()
                .is_some()
        );
    }

    #[test]
    fn preferred_terms_sum_the_weights_of_matching_terms() {
        let terms: Vec<PreferredSchedulingTerm> = serde_yaml_ng::from_str(
            r#"
- {weight: 5, preference: {matchExpressions: [{key: zone, operator: In, values: [a]}]}}
- {weight: 3, preference: {matchExpressions: [{key: disk, operator: Exists}]}}
- {weight: 0, preference: {matchExpressions: [{key: zone, operator: Exists}]}}
"#,
        )
        .unwrap();
        let p = PreferredTerms::new(&terms).unwrap();
        assert_eq!(p.score(&node(&[("zone", "a"), ("disk", "ssd")]), "n"), 8);
        assert_eq!(p.score(&node(&[("zone", "b")]), "n"), 0);
    }
}
