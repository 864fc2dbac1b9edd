//! Admission that needs other objects: the `Priority` admission plugin
//! (kubernetes/plugin/pkg/admission/priority) and the built-in PriorityClasses.
//!
//! - A new pod's `spec.priorityClassName` is resolved to `spec.priority` and
//!   `spec.preemptionPolicy`; a pod without a class gets the class marked `globalDefault` (its
//!   name, value and policy), or priority 0 when there is none.
//! - A pod that names an unknown class, or sets a `priority`/`preemptionPolicy` that disagrees
//!   with its class, is refused with 403 Forbidden, worded as upstream.
//! - At most one PriorityClass may be `globalDefault`.

use serde_json::{Value, json};

use crate::registry::Registry;
use crate::resources::{Kind, ResourceDef};
use crate::status::ApiError;
use crate::store::Stored;

/// Priority of `system-cluster-critical` (upstream `scheduling.SystemCriticalPriority`).
pub(crate) const SYSTEM_CLUSTER_CRITICAL: i64 = 2_000_000_000;
/// Priority of `system-node-critical` (`SystemCriticalPriority + 1000`).
pub(crate) const SYSTEM_NODE_CRITICAL: i64 = SYSTEM_CLUSTER_CRITICAL + 1000;
/// The highest value a user-defined class may have (`HighestUserDefinablePriority`).
pub(crate) const HIGHEST_USER_DEFINABLE_PRIORITY: i64 = 1_000_000_000;
/// Names with this prefix are reserved for the built-in classes.
pub(crate) const SYSTEM_PRIORITY_CLASS_PREFIX: &str = "system-";
/// The policy of classes and pods that do not set one.
pub(crate) const PREEMPT_LOWER_PRIORITY: &str = "PreemptLowerPriority";

/// The classes the real server creates at start-up (`SystemPriorityClasses`).
pub(crate) fn system_priority_classes() -> [Value; 2] {
    let class = |name: &str, value: i64, description: &str| {
        json!({
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": name},
            "value": value,
            "description": description,
        })
    };
    [
        class(
            "system-node-critical",
            SYSTEM_NODE_CRITICAL,
            "Used for system critical pods that must not be moved from their current node.",
        ),
        class(
            "system-cluster-critical",
            SYSTEM_CLUSTER_CRITICAL,
            "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
        ),
    ]
}

/// Whether `name`/`value` is one of the built-in classes (`IsKnownSystemPriorityClass`).
pub(crate) fn is_known_system_class(name: &str, value: i64) -> Result<(), String> {
    let known = [
        ("system-node-critical", SYSTEM_NODE_CRITICAL),
        ("system-cluster-critical", SYSTEM_CLUSTER_CRITICAL),
    ];
    match known.iter().find(|(n, _)| *n == name) {
        None => Err(format!("{name:?} is not a known system priority class")),
        Some((_, v)) if *v != value => Err(format!("value of {name:?} PriorityClass must be {v}")),
        Some(_) => Ok(()),
    }
}

/// 403 Forbidden as admission plugins word it: `pods "p" is forbidden: <why>`.
pub(crate) fn forbidden(res: &ResourceDef, name: &str, why: &str) -> ApiError {
    let mut details = json!({"name": name, "group": res.group, "kind": res.plural});
    if res.group.is_empty() {
        details.as_object_mut().unwrap().remove("group");
    }
    ApiError::new(
        403,
        Some("Forbidden"),
        format!("{} \"{name}\" is forbidden: {why}", res.qualified_plural()),
    )
    .with_details(details)
}

fn classes(reg: &Registry) -> Vec<std::sync::Arc<Stored>> {
    reg.store.snapshot(Kind::PriorityClass, None).0
}

fn class_policy(class: &Value) -> String {
    class
        .get("preemptionPolicy")
        .and_then(Value::as_str)
        .unwrap_or(PREEMPT_LOWER_PRIORITY)
        .to_string()
}

/// The Priority admission plugin on pod create.
///
/// `lenient` (manifest pre-checks, whose classes may be created by the same load) lets an
/// unknown class pass unchanged.
///
/// # Errors
/// 403 for an unknown class, or a `priority`/`preemptionPolicy` that differs from the class.
pub(crate) fn admit_pod(reg: &Registry, pod: &mut Value, lenient: bool) -> Result<(), ApiError> {
    let res = Kind::Pod.canonical();
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let class_name = spec
        .get("priorityClassName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let (class_name, priority, policy) = match class_name {
        Some(class_name) => {
            let Some(class) = reg
                .store
                .get(Kind::PriorityClass, &(String::new(), class_name.clone()))
            else {
                if lenient {
                    return Ok(());
                }
                return Err(forbidden(
                    res,
                    &name,
                    &format!("no PriorityClass with name {class_name} was found"),
                ));
            };
            let v = class.value();
            let value = v.get("value").and_then(Value::as_i64).unwrap_or(0);
            (Some(class_name), value, Some(class_policy(&v)))
        }
        None => {
            // The oldest default wins if several exist (upstream picks the lowest value; the
            // create check below keeps there from being more than one).
            let default = classes(reg)
                .into_iter()
                .find(|c| c.value().get("globalDefault").and_then(Value::as_bool) == Some(true));
            match default {
                Some(c) => {
                    let v = c.value();
                    let value = v.get("value").and_then(Value::as_i64).unwrap_or(0);
                    (Some(c.name().to_string()), value, Some(class_policy(&v)))
                }
                None => (None, 0, None),
            }
        }
    };
    if let Some(given) = spec.get("priority").and_then(Value::as_i64)
        && given != priority
    {
        return Err(forbidden(
            res,
            &name,
            &format!(
                "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"
            ),
        ));
    }
    if let Some(policy) = &policy {
        if let Some(given) = spec.get("preemptionPolicy").and_then(Value::as_str)
            && given != policy
        {
            return Err(forbidden(
                res,
                &name,
                &format!(
                    "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
                ),
            ));
        }
        spec.insert("preemptionPolicy".into(), policy.clone().into());
    }
    if let Some(class_name) = class_name {
        spec.insert("priorityClassName".into(), class_name.into());
    }
    spec.insert("priority".into(), priority.into());
    Ok(())
}

/// The Priority admission plugin on PriorityClass create and update: at most one
/// `globalDefault`.
///
/// # Errors
/// 403 if another class is already the global default.
pub(crate) fn admit_priority_class(reg: &Registry, class: &Value) -> Result<(), ApiError> {
    if class.get("globalDefault").and_then(Value::as_bool) != Some(true) {
        return Ok(());
    }
    let name = class
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let other = classes(reg).into_iter().find(|c| {
        c.name() != name && c.value().get("globalDefault").and_then(Value::as_bool) == Some(true)
    });
    match other {
        Some(other) => Err(forbidden(
            Kind::PriorityClass.canonical(),
            name,
            &format!(
                "PriorityClass {} is marked as default. Only one default can exist",
                other.name()
            ),
        )),
        None => Ok(()),
    }
}
