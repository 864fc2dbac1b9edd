//! The plugin's args: required label terms and weighted label preferences.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `pluginConfig` args of NodeLabel.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// Every term must hold for a node to pass Filter.
    #[serde(default)]
    pub require: Vec<Requirement>,
    /// Weighted `key=value` preferences for Score.
    #[serde(default)]
    pub prefer: Vec<Preference>,
}

/// One label requirement, as a node selector term of upstream node affinity.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    /// Label key.
    pub key: String,
    /// How the label is compared.
    pub operator: Operator,
    /// Values for `In` / `NotIn`.
    #[serde(default)]
    pub values: Vec<String>,
}

/// Comparison of a label against values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Operator {
    /// The label exists and its value is one of `values`.
    In,
    /// The label is absent or its value is none of `values`.
    NotIn,
    /// The label exists.
    Exists,
    /// The label does not exist.
    DoesNotExist,
}

/// A preferred label value and its weight.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preference {
    /// Label key.
    pub key: String,
    /// Preferred value.
    pub value: String,
    /// Weight, at least 1.
    #[serde(default = "one")]
    pub weight: i64,
}

fn one() -> i64 {
    1
}

impl Args {
    /// Parses and validates the JSON args.
    ///
    /// # Errors
    /// A message naming the bad field.
    pub fn parse(json: &str) -> Result<Args, String> {
        let args: Args = serde_json::from_str(json).map_err(|e| format!("NodeLabel args: {e}"))?;
        for (i, r) in args.require.iter().enumerate() {
            let needs_values = matches!(r.operator, Operator::In | Operator::NotIn);
            if needs_values == r.values.is_empty() {
                return Err(format!(
                    "NodeLabel args: require[{i}]: operator {:?} {} values",
                    r.operator,
                    if needs_values { "needs" } else { "takes no" }
                ));
            }
        }
        for (i, p) in args.prefer.iter().enumerate() {
            if p.weight < 1 {
                return Err(format!(
                    "NodeLabel args: prefer[{i}].weight must be at least 1"
                ));
            }
        }
        Ok(args)
    }
}

impl Requirement {
    /// Whether a node with these labels meets the requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}
