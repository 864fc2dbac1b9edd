//! Label and field selectors for list and watch (`labelSelector=`, `fieldSelector=`).

use std::collections::BTreeSet;

use serde_json::Value;

use crate::resources::Kind;
use crate::status::ApiError;
use crate::store::Meta;

/// One label requirement.
#[derive(Clone, Debug, PartialEq)]
enum LabelReq {
    Exists(String),
    NotExists(String),
    Eq(String, String),
    NotEq(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Gt(String, i64),
    Lt(String, i64),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct LabelSelector(Vec<LabelReq>);

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')
}

/// Splits at commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn parse_err(found: &str, expected: &str) -> ApiError {
    ApiError::bad_request(format!(
        "unable to parse requirement: found '{found}', expected: {expected}"
    ))
}

fn parse_value(v: &str) -> Result<String, ApiError> {
    let v = v.trim();
    if let Some(c) = v
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(parse_err(&c.to_string(), "identifier"));
    }
    Ok(v.to_string())
}

fn parse_key(k: &str) -> Result<String, ApiError> {
    let k = k.trim();
    if k.is_empty() {
        return Err(ApiError::bad_request(
            "unable to parse requirement: found '', expected: identifier",
        ));
    }
    if let Some(c) = k.chars().find(|c| !is_key_char(*c)) {
        return Err(parse_err(&c.to_string(), "identifier"));
    }
    Ok(k.to_string())
}

fn parse_set(rest: &str) -> Result<BTreeSet<String>, ApiError> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| parse_err(rest, "'('"))?;
    inner
        .split(',')
        .map(parse_value)
        .filter(|v| !matches!(v, Ok(s) if s.is_empty()))
        .collect()
}

impl LabelSelector {
    /// Parses the `labelSelector` query syntax (`a=b,c!=d,e in (f,g),!h`).
    pub(crate) fn parse(s: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(LabelSelector(reqs));
        }
        for part in split_top_level(s) {
            let part = part.trim();
            if let Some(k) = part.strip_prefix('!') {
                reqs.push(LabelReq::NotExists(parse_key(k)?));
                continue;
            }
            if let Some(i) = part.find("!=") {
                reqs.push(LabelReq::NotEq(
                    parse_key(&part[..i])?,
                    parse_value(&part[i + 2..])?,
                ));
                continue;
            }
            if let Some(i) = part.find("==") {
                reqs.push(LabelReq::Eq(
                    parse_key(&part[..i])?,
                    parse_value(&part[i + 2..])?,
                ));
                continue;
            }
            if let Some(i) = part.find('=') {
                reqs.push(LabelReq::Eq(
                    parse_key(&part[..i])?,
                    parse_value(&part[i + 1..])?,
                ));
                continue;
            }
            if let Some(i) = part.find('>') {
                let n = part[i + 1..]
                    .trim()
                    .parse()
                    .map_err(|_| parse_err(part[i + 1..].trim(), "integer"))?;
                reqs.push(LabelReq::Gt(parse_key(&part[..i])?, n));
                continue;
            }
            if let Some(i) = part.find('<') {
                let n = part[i + 1..]
                    .trim()
                    .parse()
                    .map_err(|_| parse_err(part[i + 1..].trim(), "integer"))?;
                reqs.push(LabelReq::Lt(parse_key(&part[..i])?, n));
                continue;
            }
            let mut words = part.splitn(2, char::is_whitespace);
            let key = parse_key(words.next().unwrap_or_default())?;
            match words.next().map(str::trim) {
                None => reqs.push(LabelReq::Exists(key)),
                Some(rest) if rest.starts_with("notin") => {
                    reqs.push(LabelReq::NotIn(key, parse_set(&rest[5..])?))
                }
                Some(rest) if rest.starts_with("in") => {
                    reqs.push(LabelReq::In(key, parse_set(&rest[2..])?))
                }
                Some(rest) => {
                    return Err(parse_err(
                        rest,
                        "'in', 'notin', '=', '==', '!=', 'gt', 'lt'",
                    ));
                }
            }
        }
        Ok(LabelSelector(reqs))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub(crate) fn matches(&self, meta: &Meta) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let get = |k: &str| meta.label(k);
        self.0.iter().all(|r| match r {
            LabelReq::Exists(k) => get(k).is_some(),
            LabelReq::NotExists(k) => get(k).is_none(),
            LabelReq::Eq(k, v) => get(k) == Some(v.as_str()),
            LabelReq::NotEq(k, v) => get(k) != Some(v.as_str()),
            LabelReq::In(k, set) => get(k).is_some_and(|x| set.contains(x)),
            LabelReq::NotIn(k, set) => get(k).is_none_or(|x| !set.contains(x)),
            LabelReq::Gt(k, n) => get(k)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x > *n),
            LabelReq::Lt(k, n) => get(k)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x < *n),
        })
    }
}

/// One field selector term: the field, its index in [`supported_fields`], `!=`, the value.
#[derive(Clone, Debug)]
struct FieldTerm {
    field: String,
    index: usize,
    negated: bool,
    value: String,
}

/// A parsed field selector: `field=value` / `field!=value` terms joined by commas.
#[derive(Clone, Debug, Default)]
pub(crate) struct FieldSelector(Vec<FieldTerm>);

/// The fields a kind can be selected by, as the real server registers them. Stored objects keep
/// their values in this order ([`crate::store::Meta`]).
pub(crate) fn supported_fields(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Pod => &[
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        Kind::Node => &["metadata.name", "spec.unschedulable"],
        Kind::Namespace => &["metadata.name", "status.phase"],
        Kind::Event => &[
            "metadata.name",
            "metadata.namespace",
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        Kind::ResourceSlice => &[
            "metadata.name",
            "spec.driver",
            "spec.nodeName",
            "spec.pool.name",
        ],
        Kind::DeviceClass
        | Kind::PriorityClass
        | Kind::PersistentVolume
        | Kind::StorageClass
        | Kind::DeviceTaintRule => &["metadata.name"],
        Kind::Service => &[
            "metadata.name",
            "metadata.namespace",
            "spec.clusterIP",
            "spec.type",
        ],
        Kind::ReplicationController | Kind::ReplicaSet => {
            &["metadata.name", "metadata.namespace", "status.replicas"]
        }
        Kind::PodDisruptionBudget
        | Kind::StatefulSet
        | Kind::Lease
        | Kind::ResourceClaim
        | Kind::ResourceClaimTemplate
        | Kind::PersistentVolumeClaim => &["metadata.name", "metadata.namespace"],
    }
}

/// The value of a selectable field (missing fields select as the empty string).
pub(crate) fn field_value(kind: Kind, obj: &Value, field: &str) -> String {
    let ptr = match (kind, field) {
        (Kind::Event, "source") => "/source/component".to_string(),
        _ => format!("/{}", field.replace('.', "/")),
    };
    match obj.pointer(&ptr) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ if field == "spec.hostNetwork" || field == "spec.unschedulable" => "false".into(),
        _ => String::new(),
    }
}

impl FieldSelector {
    /// Parses a field selector and checks that every field is selectable for `kind`.
    pub(crate) fn parse(s: &str, kind: Kind, core: bool) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector(terms));
        }
        for part in s.split(',') {
            let (field, neg, value) = if let Some(i) = part.find("!=") {
                (&part[..i], true, &part[i + 2..])
            } else if let Some(i) = part.find("==") {
                (&part[..i], false, &part[i + 2..])
            } else if let Some(i) = part.find('=') {
                (&part[..i], false, &part[i + 1..])
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            let field = field.trim();
            let fields = supported_fields(kind);
            let Some(index) = fields.iter().position(|f| *f == field) else {
                return Err(if core {
                    ApiError::bad_request(format!("field label not supported: {field}"))
                } else {
                    let only: Vec<String> = fields.iter().map(|f| format!("\"{f}\"")).collect();
                    ApiError::bad_request(format!(
                        "\"{field}\" is not a known field selector: only {}",
                        only.join(", ")
                    ))
                });
            };
            terms.push(FieldTerm {
                field: field.to_string(),
                index,
                negated: neg,
                value: value.trim().to_string(),
            });
        }
        Ok(FieldSelector(terms))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a stored object's field values satisfy every term (the selector was parsed for
    /// the object's kind).
    pub(crate) fn matches(&self, meta: &Meta) -> bool {
        self.0
            .iter()
            .all(|t| (meta.field(t.index, &t.field) == t.value) != t.negated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: Value) -> Meta {
        let v = json!({"metadata": {"name": "p", "namespace": "demo", "labels": labels}, "spec": {}, "status": {"phase": "Pending"}});
        crate::store::Stored::new(Kind::Pod, &v, 1).meta().clone()
    }

    #[test]
    fn label_selector_supports_every_operator() {
        let p = pod(json!({"app": "web", "tier": "frontend"}));
        for (sel, want) in [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app!=db", true),
            ("tier in (frontend,backend),app!=db", true),
            ("tier notin (frontend)", false),
            ("tier", true),
            ("!tier", false),
            ("!missing", true),
            ("missing!=x", true),
        ] {
            assert_eq!(
                LabelSelector::parse(sel).unwrap().matches(&p),
                want,
                "{sel}"
            );
        }
    }

    #[test]
    fn malformed_label_selector_is_a_bad_request() {
        let err = LabelSelector::parse("app===x").unwrap_err();
        assert_eq!(
            err.message,
            "unable to parse requirement: found '=', expected: identifier"
        );
    }

    #[test]
    fn field_selector_treats_missing_fields_as_empty() {
        let p = pod(json!({}));
        assert!(
            FieldSelector::parse("spec.nodeName=", Kind::Pod, true)
                .unwrap()
                .matches(&p)
        );
        let sel = FieldSelector::parse(
            "status.phase!=Succeeded,status.phase!=Failed",
            Kind::Pod,
            true,
        )
        .unwrap();
        assert!(sel.matches(&p));
    }

    #[test]
    fn unsupported_fields_are_rejected_with_the_real_messages() {
        let e = FieldSelector::parse("spec.priority=0", Kind::Pod, true).unwrap_err();
        assert_eq!(e.message, "field label not supported: spec.priority");
        let e = FieldSelector::parse("spec.devices=x", Kind::ResourceClaim, false).unwrap_err();
        assert_eq!(
            e.message,
            "\"spec.devices\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );
    }
}
