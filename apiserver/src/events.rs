//! Conversion between the two Event APIs. Events are stored once, in the `core/v1` shape; the
//! `events.k8s.io/v1` resource is a converted view of the same objects (reference capture 81).

use serde_json::{Map, Value};

/// `events.k8s.io/v1` field name -> `core/v1` field name.
const RENAMES: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn rename(obj: &Value, api_version: &str, to_core: bool) -> Value {
    let Some(m) = obj.as_object() else {
        return obj.clone();
    };
    let mut out = Map::new();
    for (k, v) in m {
        let key = RENAMES
            .iter()
            .find(|(new, old)| {
                if to_core {
                    *new == k.as_str()
                } else {
                    *old == k.as_str()
                }
            })
            .map(|(new, old)| if to_core { *old } else { *new })
            .unwrap_or(k.as_str());
        out.insert(key.to_string(), v.clone());
    }
    out.insert("apiVersion".into(), api_version.into());
    out.insert("kind".into(), "Event".into());
    Value::Object(out)
}

/// `events.k8s.io/v1` -> stored `core/v1`.
pub(crate) fn to_core(obj: &Value) -> Value {
    rename(obj, "v1", true)
}

/// Stored `core/v1` -> `events.k8s.io/v1`.
pub(crate) fn from_core(obj: &Value) -> Value {
    let mut v = rename(obj, "events.k8s.io/v1", false);
    if let Some(m) = v.as_object_mut() {
        m.entry("deprecatedSource")
            .or_insert_with(|| Value::Object(Map::new()));
        m.entry("deprecatedFirstTimestamp").or_insert(Value::Null);
        m.entry("deprecatedLastTimestamp").or_insert(Value::Null);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_round_trip_between_the_two_apis() {
        let new = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "regarding": {"kind": "Pod", "name": "web"}, "note": "Successfully assigned", "reason": "Scheduled",
            "reportingController": "default-scheduler", "eventTime": "2026-11-26T05:33:40.021357Z"});
        let core = to_core(&new);
        assert_eq!(core["involvedObject"]["name"], "web");
        assert_eq!(core["message"], "Successfully assigned");
        assert_eq!(core["reportingComponent"], "default-scheduler");
        let back = from_core(&core);
        assert_eq!(back["regarding"], new["regarding"]);
        assert_eq!(back["deprecatedSource"], json!({}));
    }
}
