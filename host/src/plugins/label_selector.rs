//! Label selectors compiled once per cycle, with apimachinery's semantics
//! (`metav1.LabelSelectorAsSelector` and `labels.Selector`): a missing selector selects
//! nothing, an empty one selects everything.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The label key.
    pub key: String,
    /// What the label's value must satisfy.
    pub op: Operator,
}

/// The operator of a [`Requirement`], with its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operator {
    /// The label exists and its value is one of these.
    In(Vec<String>),
    /// The label is absent or its value is none of these.
    NotIn(Vec<String>),
    /// The label exists.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

/// A compiled label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Selects nothing (`labels.Nothing()`, what a nil `LabelSelector` means).
    Nothing,
    /// Selects the label sets meeting every requirement; none selects everything.
    Requirements(Vec<Requirement>),
}

impl Selector {
    /// Selects every label set (`labels.Everything()`).
    pub fn everything() -> Self {
        Selector::Requirements(Vec::new())
    }

    /// Compiles a `LabelSelector` (`None`: selects nothing).
    ///
    /// # Errors
    /// An unknown operator, or values that do not fit the operator, as apimachinery words it.
    pub fn new(selector: Option<&LabelSelector>) -> Result<Self, String> {
        let Some(sel) = selector else {
            return Ok(Selector::Nothing);
        };
        let mut reqs = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            reqs.push(Requirement {
                key: k.clone(),
                op: Operator::In(vec![v.clone()]),
            });
        }
        for e in sel.match_expressions.iter().flatten() {
            let values = e.values.clone().unwrap_or_default();
            let op = match e.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(format!(
                        "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty (key {:?})",
                        e.key
                    ));
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(format!(
                        "values: Invalid value: {values:?}: values set must be empty for exists and does not exist (key {:?})",
                        e.key
                    ));
                }
                "In" => Operator::In(values),
                "NotIn" => Operator::NotIn(values),
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => return Err(format!("{other:?} is not a valid label selector operator")),
            };
            reqs.push(Requirement {
                key: e.key.clone(),
                op,
            });
        }
        Ok(Selector::Requirements(reqs))
    }

    /// Whether it has no requirements (`labels.Selector.Empty()`; `Nothing` is not empty).
    pub fn is_empty(&self) -> bool {
        matches!(self, Selector::Requirements(r) if r.is_empty())
    }

    /// Adds `key In (value)` for each pair (upstream `mergeLabelSetWithSelector`); a
    /// `Nothing` selector stays `Nothing`.
    pub fn with_labels(mut self, labels: impl IntoIterator<Item = (String, String)>) -> Self {
        if let Selector::Requirements(reqs) = &mut self {
            for (key, value) in labels {
                reqs.push(Requirement {
                    key,
                    op: Operator::In(vec![value]),
                });
            }
        }
        self
    }

    /// Whether a label set is selected.
    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let Selector::Requirements(reqs) = self else {
            return false;
        };
        reqs.iter().all(|r| {
            let value = labels.and_then(|l| l.get(&r.key));
            match &r.op {
                Operator::In(vs) => value.is_some_and(|v| vs.contains(v)),
                Operator::NotIn(vs) => value.is_none_or(|v| !vs.contains(v)),
                Operator::Exists => value.is_some(),
                Operator::DoesNotExist => value.is_none(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sel(yaml: &str) -> Selector {
        Selector::new(Some(&serde_yaml_ng::from_str(yaml).unwrap())).unwrap()
    }

    #[test]
    fn a_missing_selector_selects_nothing_and_an_empty_one_everything() {
        let l = labels(&[("app", "web")]);
        assert!(!Selector::new(None).unwrap().matches(Some(&l)));
        assert!(sel("{}").matches(Some(&l)));
        assert!(sel("{}").matches(None));
        assert!(sel("{}").is_empty());
        assert!(!Selector::Nothing.is_empty());
    }

    #[test]
    fn requirements_match_as_apimachinery() {
        let s = sel(
            "matchLabels: {app: web}\nmatchExpressions: [{key: tier, operator: NotIn, values: [db]}, {key: env, operator: Exists}]",
        );
        assert!(s.matches(Some(&labels(&[("app", "web"), ("env", "x")]))));
        assert!(!s.matches(Some(&labels(&[
            ("app", "web"),
            ("env", "x"),
            ("tier", "db")
        ]))));
        assert!(!s.matches(Some(&labels(&[("app", "web")]))));
        let merged = sel("{}").with_labels([("hash".to_string(), "1".to_string())]);
        assert!(!merged.matches(Some(&labels(&[("hash", "2")]))));
        assert_eq!(
            Selector::Nothing.with_labels([("a".into(), "b".into())]),
            Selector::Nothing
        );
    }

    #[test]
    fn errors_when_values_do_not_fit_the_operator() {
        let bad: LabelSelector =
            serde_yaml_ng::from_str("matchExpressions: [{key: a, operator: In}]").unwrap();
        assert!(Selector::new(Some(&bad)).is_err());
        let bad: LabelSelector =
            serde_yaml_ng::from_str("matchExpressions: [{key: a, operator: Gt, values: ['1']}]")
                .unwrap();
        assert!(Selector::new(Some(&bad)).is_err());
    }
}
