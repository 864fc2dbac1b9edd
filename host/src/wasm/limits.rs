//! Checks on what a plugin returns, the same for Wasm and native SDK plugins. An output that
//! breaks a limit fails only the pod being scheduled, with an error naming the plugin.

use wasm_scheduler_sdk::{PatchIntent, ResourceKind, Status};

/// Most bytes of patch bodies one call may return.
pub const MAX_INTENT_BYTES: usize = 1 << 20;
/// Most patch intents one call may return.
pub const MAX_INTENTS: usize = 1024;
/// Most bytes of reasons in the statuses of one call.
pub const MAX_REASON_BYTES: usize = 256 << 10;
/// Most pod uids a Permit decision may allow or reject at once.
pub const MAX_PERMIT_UIDS: usize = 100_000;

/// Statuses of a batch call: exactly one per node, reasons within [`MAX_REASON_BYTES`].
pub fn statuses(point: &str, statuses: &[Status], nodes: usize) -> Result<(), String> {
    if statuses.len() != nodes {
        return Err(format!(
            "{point} returned {} statuses for {nodes} nodes",
            statuses.len()
        ));
    }
    reasons(point, statuses.iter())
}

/// Reasons of one or more statuses within [`MAX_REASON_BYTES`].
pub fn reasons<'a>(point: &str, statuses: impl Iterator<Item = &'a Status>) -> Result<(), String> {
    let bytes: usize = statuses
        .flat_map(|s| s.reasons.iter())
        .map(String::len)
        .sum();
    if bytes > MAX_REASON_BYTES {
        return Err(format!(
            "{point} returned {bytes} bytes of reasons, limit {MAX_REASON_BYTES}"
        ));
    }
    Ok(())
}

/// Scores of a batch call: exactly one per node.
pub fn scores(point: &str, scores: &[i64], nodes: usize) -> Result<(), String> {
    if scores.len() != nodes {
        return Err(format!(
            "{point} returned {} scores for {nodes} nodes",
            scores.len()
        ));
    }
    Ok(())
}

/// Patch intents: only kinds the plugin declared, within [`MAX_INTENTS`] and
/// [`MAX_INTENT_BYTES`].
pub fn intents(
    point: &str,
    intents: &[PatchIntent],
    declared: &[ResourceKind],
) -> Result<(), String> {
    if intents.len() > MAX_INTENTS {
        return Err(format!(
            "{point} returned {} patch intents, limit {MAX_INTENTS}",
            intents.len()
        ));
    }
    let bytes: usize = intents.iter().map(|i| i.body.len()).sum();
    if bytes > MAX_INTENT_BYTES {
        return Err(format!(
            "{point} returned {bytes} bytes of patch bodies, limit {MAX_INTENT_BYTES}"
        ));
    }
    if let Some(i) = intents
        .iter()
        .find(|i| !declared.contains(&i.target.resource))
    {
        let k = &i.target.resource;
        return Err(format!(
            "{point} returned a patch intent for {} {} {:?}, a kind the plugin did not declare in metadata.patches",
            k.api_version, k.kind, i.target.name
        ));
    }
    Ok(())
}

/// A Permit decision's allow/reject lists within [`MAX_PERMIT_UIDS`].
pub fn permit_uids(allow: usize, reject: usize) -> Result<(), String> {
    if allow + reject > MAX_PERMIT_UIDS {
        return Err(format!(
            "permit returned {} pod uids, limit {MAX_PERMIT_UIDS}",
            allow + reject
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_scheduler_sdk::{ObjectRef, PatchKind};

    fn intent(kind: ResourceKind, body: String) -> PatchIntent {
        PatchIntent {
            target: ObjectRef {
                resource: kind,
                namespace: None,
                name: "x".into(),
                uid: "u".into(),
            },
            subresource: None,
            patch_kind: PatchKind::Merge,
            body,
        }
    }

    #[test]
    fn errors_when_a_batch_has_the_wrong_length() {
        let err = statuses("filter", &[Status::success(), Status::success()], 1).unwrap_err();
        assert_eq!(err, "filter returned 2 statuses for 1 nodes");
        assert!(scores("score", &[1], 1).is_ok());
    }

    #[test]
    fn errors_when_an_intent_targets_an_undeclared_kind() {
        let declared = [ResourceKind::resource_claim()];
        assert!(
            intents(
                "reserve",
                &[intent(ResourceKind::resource_claim(), "{}".into())],
                &declared
            )
            .is_ok()
        );
        let err = intents(
            "reserve",
            &[intent(ResourceKind::node(), "{}".into())],
            &declared,
        )
        .unwrap_err();
        assert!(err.contains("v1 Node \"x\""), "{err}");
    }

    #[test]
    fn errors_when_intent_bodies_are_too_large() {
        let declared = [ResourceKind::resource_claim()];
        let big = intent(
            ResourceKind::resource_claim(),
            "x".repeat(MAX_INTENT_BYTES + 1),
        );
        assert!(
            intents("reserve", &[big], &declared)
                .unwrap_err()
                .contains("bytes of patch bodies")
        );
    }
}
