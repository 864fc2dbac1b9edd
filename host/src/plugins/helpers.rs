//! Small pieces several native plugins share: score normalization, taint toleration and
//! plugin argument decoding.

use k8s_openapi::api::core::v1::{Taint, Toleration};
use serde::de::DeserializeOwned;

use super::registry::RegistryError;

/// The highest score a plugin gives a node (upstream `framework.MaxNodeScore`).
pub const MAX_NODE_SCORE: i64 = 100;

/// Scales scores to `0..=max_priority` by the highest score; with `reverse`, the lowest score
/// gets `max_priority` (upstream `helper.DefaultNormalizeScore`).
pub fn default_normalize_score(max_priority: i64, reverse: bool, scores: &mut [i64]) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = max_priority);
        }
        return;
    }
    for s in scores.iter_mut() {
        *s = max_priority * *s / max;
        if reverse {
            *s = max_priority - *s;
        }
    }
}

/// Whether a toleration matches a taint (upstream `v1.Toleration.ToleratesTaint`): an empty
/// effect matches all effects, an empty key with `Exists` matches all keys, and the operator
/// defaults to `Equal`.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if toleration
        .effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    if toleration
        .key
        .as_deref()
        .is_some_and(|k| !k.is_empty() && k != taint.key)
    {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("") {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        "Exists" => true,
        _ => false,
    }
}

/// Whether any of the tolerations matches the taint.
pub fn tolerations_tolerate(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// The first taint accepted by `filter` that no toleration matches
/// (upstream `v1helper.FindMatchingUntoleratedTaint`).
pub fn find_untolerated_taint<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    filter: impl Fn(&Taint) -> bool,
) -> Option<&'a Taint> {
    taints
        .iter()
        .find(|t| filter(t) && !tolerations_tolerate(tolerations, t))
}

/// Decodes a plugin's `pluginConfig` args; no args (`null`) gives the defaults.
///
/// # Errors
/// [`RegistryError::InvalidArgs`] naming the plugin when the args do not decode.
pub fn decode_args<T: DeserializeOwned + Default>(
    plugin: &str,
    args: &serde_json::Value,
) -> Result<T, RegistryError> {
    if args.is_null() {
        return Ok(T::default());
    }
    serde_json::from_value(args.clone()).map_err(|e| RegistryError::InvalidArgs {
        plugin: plugin.to_string(),
        message: e.to_string(),
    })
}

/// Checks that a plugin without arguments got none (or an empty object).
///
/// # Errors
/// [`RegistryError::InvalidArgs`] when args were given.
pub fn expect_no_args(plugin: &str, args: &serde_json::Value) -> Result<(), RegistryError> {
    match args {
        serde_json::Value::Null => Ok(()),
        serde_json::Value::Object(m) if m.keys().all(|k| k == "apiVersion" || k == "kind") => {
            Ok(())
        }
        _ => Err(RegistryError::InvalidArgs {
            plugin: plugin.to_string(),
            message: "this plugin takes no args".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: Some(value.into()),
            effect: effect.into(),
            time_added: None,
        }
    }

    fn toleration(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Toleration {
            key: opt(key),
            operator: opt(op),
            value: opt(value),
            effect: opt(effect),
            toleration_seconds: None,
        }
    }

    #[test]
    fn normalize_scales_to_the_highest_score() {
        let mut s = [0, 5, 10];
        default_normalize_score(100, false, &mut s);
        assert_eq!(s, [0, 50, 100]);
    }

    #[test]
    fn reverse_normalize_gives_the_lowest_score_the_maximum() {
        let mut s = [0, 1, 2];
        default_normalize_score(100, true, &mut s);
        assert_eq!(s, [100, 50, 0]);
        let mut zeros = [0, 0];
        default_normalize_score(100, true, &mut zeros);
        assert_eq!(zeros, [100, 100]);
    }

    #[test]
    fn tolerations_match_as_upstream() {
        let t = taint("k", "v", "NoSchedule");
        assert!(tolerates(&toleration("k", "Equal", "v", "NoSchedule"), &t));
        assert!(
            tolerates(&toleration("k", "", "v", ""), &t),
            "empty operator is Equal, empty effect matches all"
        );
        assert!(
            tolerates(&toleration("", "Exists", "", ""), &t),
            "empty key with Exists tolerates everything"
        );
        assert!(tolerates(&toleration("k", "Exists", "", "NoSchedule"), &t));
        assert!(!tolerates(&toleration("k", "Equal", "w", "NoSchedule"), &t));
        assert!(!tolerates(&toleration("k", "Exists", "", "NoExecute"), &t));
        assert!(!tolerates(&toleration("other", "Exists", "", ""), &t));
        assert!(!tolerates(&toleration("k", "Gt", "1", ""), &t));
    }

    #[test]
    fn errors_when_a_plugin_without_args_gets_some() {
        assert!(expect_no_args("NodeName", &serde_json::Value::Null).is_ok());
        let err = expect_no_args("NodeName", &serde_json::json!({"x": 1})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "plugin \"NodeName\": invalid args: this plugin takes no args"
        );
    }
}
