//! VolumeBinding for pods whose PersistentVolumeClaims are bound (upstream
//! `pkg/scheduler/framework/plugins/volumebinding`, v1.36).
//!
//! PreFilter looks up every claim the pod uses (`persistentVolumeClaim` volumes and the claims
//! of generic `ephemeral` volumes, named `<pod>-<volume>`): a missing, lost or deleting claim
//! rejects the pod with upstream's message. A claim is bound when it names its volume and
//! carries `pv.kubernetes.io/bind-completed` (as upstream's `isPVCFullyBound`). Filter keeps
//! the nodes that every bound volume's `spec.nodeAffinity` admits.
//!
//! What upstream does beyond that is not done: it binds unbound `WaitForFirstConsumer` claims to
//! matching volumes or provisions them in PreBind. Here such a pod gets a clear unschedulable
//! reason instead of being bound with its volumes unbound, and is retried when a claim, volume
//! or class changes (once something else binds the claim). Unbound `Immediate` claims get
//! upstream's own reason. Score is upstream's: it scores only with the `StorageCapacityScoring`
//! feature, which is off by default, so PreScore skips.
//!
//! The plugin subscribes to PersistentVolumes, PersistentVolumeClaims and StorageClasses (the
//! cache lists and watches them) and keeps what it needs of each.
//!
//! Args (`VolumeBindingArgs`): `bindTimeoutSeconds` (not negative; unused, since nothing is bound
//! here); `shape` is refused, as upstream does without `StorageCapacityScoring`.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use parking_lot::RwLock;
use serde::Deserialize;

use crate::framework::{
    ClusterEvent, CycleState, EventAction, ExtensionPoint, NodeInfo, ObjectEvent, Plugin, PodInfo,
    PreFilterResult, ResourceKind, Snapshot, Status,
};

use super::helpers::decode_args;
use super::node_selector::Term;
use super::registry::RegistryError;

/// The plugin's name in the configuration.
pub const NAME: &str = "VolumeBinding";
/// CycleState key of the bound volumes PreFilter found.
pub const STATE_KEY: &str = "VolumeBinding";
/// Filter reason: a bound volume's node affinity does not admit the node.
pub const ERR_REASON_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
/// Filter reason: a claim is bound to a volume that does not exist.
pub const ERR_REASON_PV_NOT_EXIST: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";
/// PreFilter reason: an `Immediate` claim (or one that names a volume) is not bound yet.
pub const ERR_REASON_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
/// PreFilter reason: a `WaitForFirstConsumer` claim is not bound, and this scheduler does not
/// bind or provision volumes (upstream would, in PreBind).
pub const ERR_REASON_UNBOUND_DELAYED: &str = "pod has unbound WaitForFirstConsumer PersistentVolumeClaims, and this scheduler does not bind or provision volumes";
/// The annotation the PersistentVolume controller sets on a claim it has bound.
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// The deprecated annotation form of `spec.storageClassName`.
const ANN_BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

/// `pluginConfig` args (upstream `VolumeBindingArgs`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VolumeBindingArgs {
    /// Ignored; accepted so upstream-shaped args parse.
    pub api_version: Option<String>,
    /// Ignored; accepted so upstream-shaped args parse.
    pub kind: Option<String>,
    /// How long PreBind waits for volumes to bind (default 600); nothing is bound here.
    pub bind_timeout_seconds: Option<i64>,
    /// The capacity scoring shape; only with `StorageCapacityScoring`, so refused.
    pub shape: Option<serde_json::Value>,
}

/// What the plugin keeps of a claim.
#[derive(Debug, Clone, PartialEq)]
struct Claim {
    volume_name: String,
    /// `volumeName` set and `pv.kubernetes.io/bind-completed` present.
    bound: bool,
    lost: bool,
    deleting: bool,
    class: String,
    /// The uid of the claim's controller owner (an ephemeral volume's pod).
    controller_uid: Option<String>,
}

impl Claim {
    fn from(pvc: &PersistentVolumeClaim) -> Self {
        let spec = pvc.spec.as_ref();
        let annotations = pvc.metadata.annotations.as_ref();
        let volume_name = spec.and_then(|s| s.volume_name.clone()).unwrap_or_default();
        // Upstream `GetPersistentVolumeClaimClass`: the field, else the beta annotation.
        let class = match spec.and_then(|s| s.storage_class_name.clone()) {
            Some(c) => c,
            None => annotations
                .and_then(|a| a.get(ANN_BETA_STORAGE_CLASS).cloned())
                .unwrap_or_default(),
        };
        Claim {
            bound: !volume_name.is_empty()
                && annotations.is_some_and(|a| a.contains_key(ANN_BIND_COMPLETED)),
            volume_name,
            lost: pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Lost"),
            deleting: pvc.metadata.deletion_timestamp.is_some(),
            class,
            controller_uid: pvc
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true))
                .map(|o| o.uid.clone()),
        }
    }
}

/// A volume's required node affinity, compiled; `None` admits every node.
type Affinity = Option<Arc<Vec<Term>>>;

#[derive(Debug, Default)]
struct State {
    /// Claims by `namespace/name`.
    claims: HashMap<String, Claim>,
    /// Volumes by name.
    volumes: HashMap<String, Affinity>,
    /// StorageClasses by name: whether they bind at the first consumer.
    wait_for_first_consumer: HashMap<String, bool>,
}

/// The bound volumes of the pod being scheduled (PreFilter → Filter).
#[derive(Debug, Clone)]
struct PodVolumes {
    /// Per bound claim, its volume's affinity (`Err` when the volume does not exist).
    bound: Vec<Result<Affinity, ()>>,
}

/// Filters nodes by the node affinity of the pod's bound volumes.
#[derive(Debug, Default)]
pub struct VolumeBinding {
    state: RwLock<State>,
}

/// The claims a pod uses: `(claim name, is an ephemeral volume's claim)`.
fn pod_claims(pod: &Pod) -> Vec<(String, bool)> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            if let Some(pvc) = &v.persistent_volume_claim {
                Some((pvc.claim_name.clone(), false))
            } else {
                // Upstream `ephemeral.VolumeClaimName`.
                v.ephemeral
                    .as_ref()
                    .map(|_| (format!("{pod_name}-{}", v.name), true))
            }
        })
        .collect()
}

fn compile_affinity(pv: &PersistentVolume) -> Affinity {
    let required = pv
        .spec
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required
        .as_ref()?;
    Some(Arc::new(
        required.node_selector_terms.iter().map(Term::new).collect(),
    ))
}

/// Upstream `volume.CheckNodeAffinity`: the node's labels match one term (fields never match:
/// upstream checks a node made of the labels only).
fn admits(affinity: &Affinity, node: &NodeInfo) -> bool {
    match affinity {
        None => true,
        Some(terms) => terms.iter().any(|t| t.matches(&node.node, "")),
    }
}

impl VolumeBinding {
    /// Creates the plugin from its args (upstream `ValidateVolumeBindingArgs`).
    ///
    /// # Errors
    /// [`RegistryError::InvalidArgs`] for undecodable args, a negative `bindTimeoutSeconds` or
    /// a `shape`.
    pub fn new(args: &serde_json::Value) -> Result<Self, RegistryError> {
        let args: VolumeBindingArgs = decode_args(NAME, args)?;
        let invalid = |message: String| RegistryError::InvalidArgs {
            plugin: NAME.into(),
            message,
        };
        if let Some(t) = args.bind_timeout_seconds.filter(|t| *t < 0) {
            return Err(invalid(format!(
                "bindTimeoutSeconds: Invalid value: {t}: invalid BindTimeoutSeconds, should not be a negative value"
            )));
        }
        if args.shape.is_some() {
            return Err(invalid(
                "shape: Invalid value: unsupported when StorageCapacityScoring is disabled".into(),
            ));
        }
        Ok(VolumeBinding::default())
    }

    /// core/v1 PersistentVolume.
    pub fn volume_kind() -> ResourceKind {
        ResourceKind::new("v1", "PersistentVolume")
    }

    /// core/v1 PersistentVolumeClaim.
    pub fn claim_kind() -> ResourceKind {
        ResourceKind::new("v1", "PersistentVolumeClaim")
    }

    /// storage.k8s.io/v1 StorageClass.
    pub fn class_kind() -> ResourceKind {
        ResourceKind::new("storage.k8s.io/v1", "StorageClass")
    }

    /// The pod's bound volumes, or why PreFilter rejects it (upstream `podHasPVCs` followed by
    /// `GetPodVolumeClaims`). `Ok(None)`: the pod uses no claim.
    fn pod_volumes(&self, pod: &Pod) -> Result<Option<PodVolumes>, String> {
        let claims = pod_claims(pod);
        if claims.is_empty() {
            return Ok(None);
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let state = self.state.read();
        let mut found = Vec::with_capacity(claims.len());
        for (name, ephemeral) in &claims {
            let Some(claim) = state.claims.get(&format!("{namespace}/{name}")) else {
                return Err(if *ephemeral {
                    format!(
                        "waiting for ephemeral volume controller to create the persistentvolumeclaim \"{name}\""
                    )
                } else {
                    format!("persistentvolumeclaim \"{name}\" not found")
                });
            };
            if claim.lost {
                return Err(format!(
                    "persistentvolumeclaim \"{name}\" bound to non-existent persistentvolume \"{}\"",
                    claim.volume_name
                ));
            }
            if claim.deleting {
                return Err(format!("persistentvolumeclaim \"{name}\" is being deleted"));
            }
            if *ephemeral && claim.controller_uid.as_deref() != pod.metadata.uid.as_deref() {
                return Err(format!(
                    "PVC {namespace}/{name} was not created for pod {namespace}/{} (pod is not owner)",
                    pod.metadata.name.as_deref().unwrap_or_default()
                ));
            }
            found.push(claim);
        }
        let (mut immediate, mut delayed) = (false, false);
        let mut bound = Vec::new();
        for claim in found {
            if claim.bound {
                bound.push(state.volumes.get(&claim.volume_name).cloned().ok_or(()));
            } else if claim.volume_name.is_empty()
                && state
                    .wait_for_first_consumer
                    .get(&claim.class)
                    .copied()
                    .unwrap_or(false)
            {
                delayed = true;
            } else {
                // Includes claims that name a volume the controller has not bound yet.
                immediate = true;
            }
        }
        if immediate {
            return Err(ERR_REASON_UNBOUND_IMMEDIATE.into());
        }
        if delayed {
            return Err(ERR_REASON_UNBOUND_DELAYED.into());
        }
        Ok(Some(PodVolumes { bound }))
    }
}

impl Plugin for VolumeBinding {
    fn name(&self) -> &str {
        NAME
    }

    fn extension_points(&self) -> Vec<ExtensionPoint> {
        vec![
            ExtensionPoint::PreFilter,
            ExtensionPoint::Filter,
            ExtensionPoint::PreScore,
            ExtensionPoint::Score,
        ]
    }

    /// Classes, claims and volumes added or changed, and nodes added or relabelled (upstream
    /// `EventsToRegister` without the CSI kinds).
    fn requeue_on(&self) -> Vec<ClusterEvent> {
        let add_or_update = || vec![EventAction::Added, EventAction::Modified];
        vec![
            ClusterEvent {
                resource: Self::class_kind(),
                actions: add_or_update(),
            },
            ClusterEvent {
                resource: Self::claim_kind(),
                actions: add_or_update(),
            },
            ClusterEvent {
                resource: Self::volume_kind(),
                actions: add_or_update(),
            },
            ClusterEvent {
                resource: ResourceKind::node(),
                actions: add_or_update(),
            },
        ]
    }

    fn subscriptions(&self) -> Vec<ResourceKind> {
        vec![Self::volume_kind(), Self::claim_kind(), Self::class_kind()]
    }

    fn on_event(&self, event: &ObjectEvent) {
        let deleted = event.action == EventAction::Deleted;
        if event.resource == Self::claim_kind() {
            let Ok(pvc) = serde_json::from_str::<PersistentVolumeClaim>(&event.object) else {
                return;
            };
            let key = format!(
                "{}/{}",
                pvc.metadata.namespace.as_deref().unwrap_or_default(),
                pvc.metadata.name.as_deref().unwrap_or_default()
            );
            let mut state = self.state.write();
            if deleted {
                state.claims.remove(&key);
            } else {
                state.claims.insert(key, Claim::from(&pvc));
            }
        } else if event.resource == Self::volume_kind() {
            let Ok(pv) = serde_json::from_str::<PersistentVolume>(&event.object) else {
                return;
            };
            let name = pv.metadata.name.clone().unwrap_or_default();
            let mut state = self.state.write();
            if deleted {
                state.volumes.remove(&name);
            } else {
                state.volumes.insert(name, compile_affinity(&pv));
            }
        } else if event.resource == Self::class_kind() {
            let Ok(class) = serde_json::from_str::<StorageClass>(&event.object) else {
                return;
            };
            let name = class.metadata.name.clone().unwrap_or_default();
            let mut state = self.state.write();
            if deleted {
                state.wait_for_first_consumer.remove(&name);
            } else {
                let wffc = class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer");
                state.wait_for_first_consumer.insert(name, wffc);
            }
        }
    }

    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _snapshot: &Snapshot,
    ) -> PreFilterResult {
        let status = match self.pod_volumes(&pod.pod) {
            Ok(None) => Status::skip(),
            Ok(Some(volumes)) => {
                state.write(STATE_KEY, volumes);
                Status::success()
            }
            Err(reason) => Status::unresolvable(reason),
        };
        PreFilterResult {
            status,
            node_names: None,
        }
    }

    fn filter(&self, state: &CycleState, _pod: &PodInfo, nodes: &[Arc<NodeInfo>]) -> Vec<Status> {
        let Some(volumes) = state.read::<PodVolumes>(STATE_KEY) else {
            return vec![Status::success(); nodes.len()];
        };
        nodes
            .iter()
            .map(|node| {
                // Upstream `checkBoundClaims`: the first volume that fails decides.
                for v in &volumes.bound {
                    match v {
                        Err(()) => return Status::unresolvable(ERR_REASON_PV_NOT_EXIST),
                        Ok(affinity) if !admits(affinity, node) => {
                            return Status::unresolvable(ERR_REASON_NODE_CONFLICT);
                        }
                        Ok(_) => {}
                    }
                }
                Status::success()
            })
            .collect()
    }

    /// Upstream scores only with `StorageCapacityScoring` (off by default).
    fn pre_score(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _nodes: &[Arc<NodeInfo>],
    ) -> Status {
        Status::skip()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::plugins::testing::{node, pod};

    fn event(resource: ResourceKind, yaml: &str) -> ObjectEvent {
        let v: serde_json::Value = serde_yaml_ng::from_str(yaml).unwrap();
        ObjectEvent {
            action: EventAction::Added,
            resource,
            object: v.to_string(),
        }
    }

    fn plugin_with(objects: &[(ResourceKind, &str)]) -> VolumeBinding {
        let p = VolumeBinding::new(&serde_json::Value::Null).unwrap();
        for (kind, yaml) in objects {
            p.on_event(&event(kind.clone(), yaml));
        }
        p
    }

    const ZONE_A_PV: &str = "metadata: {name: pv-a}\nspec:\n  nodeAffinity:\n    required:\n      nodeSelectorTerms:\n      - matchExpressions: [{key: topology.kubernetes.io/zone, operator: In, values: [a]}]";
    const BOUND_CLAIM: &str = "metadata: {name: data, namespace: d, annotations: {pv.kubernetes.io/bind-completed: 'yes'}}\nspec: {volumeName: pv-a}";
    const POD: &str = "metadata: {name: p, namespace: d, uid: u1}\nspec: {containers: [{name: c}], volumes: [{name: v, persistentVolumeClaim: {claimName: data}}]}";

    fn run(
        p: &VolumeBinding,
        pod_yaml: &str,
        nodes: &[Arc<NodeInfo>],
    ) -> Result<Vec<Status>, Status> {
        let mut state = CycleState::default();
        let pi = pod(pod_yaml);
        let pre = p.pre_filter(&mut state, &pi, &Snapshot::default());
        if !pre.status.is_success() {
            return Err(pre.status);
        }
        Ok(p.filter(&state, &pi, nodes))
    }

    #[test]
    fn skips_pods_without_claims() {
        let p = plugin_with(&[]);
        let mut state = CycleState::default();
        let pi = pod(
            "metadata: {name: p, namespace: d}\nspec: {containers: [{name: c}], volumes: [{name: v, emptyDir: {}}]}",
        );
        assert_eq!(
            p.pre_filter(&mut state, &pi, &Snapshot::default())
                .status
                .code,
            Code::Skip
        );
    }

    #[test]
    fn filters_nodes_by_the_bound_volumes_node_affinity() {
        let p = plugin_with(&[
            (VolumeBinding::volume_kind(), ZONE_A_PV),
            (VolumeBinding::claim_kind(), BOUND_CLAIM),
        ]);
        let a = node("metadata: {name: n1, labels: {topology.kubernetes.io/zone: a}}");
        let b = node("metadata: {name: n2, labels: {topology.kubernetes.io/zone: b}}");
        let s = run(&p, POD, &[a, b]).unwrap();
        assert!(s[0].is_success());
        assert_eq!(s[1].code, Code::UnschedulableAndUnresolvable);
        assert_eq!(s[1].reasons, [ERR_REASON_NODE_CONFLICT]);
    }

    #[test]
    fn a_volume_without_node_affinity_admits_every_node() {
        let p = plugin_with(&[
            (
                VolumeBinding::volume_kind(),
                "metadata: {name: pv-a}\nspec: {}",
            ),
            (VolumeBinding::claim_kind(), BOUND_CLAIM),
        ]);
        let s = run(&p, POD, &[node("metadata: {name: n1}")]).unwrap();
        assert!(s[0].is_success());
    }

    #[test]
    fn rejects_a_pod_whose_claim_is_missing_lost_or_bound_to_a_missing_volume() {
        let p = plugin_with(&[]);
        let e = run(&p, POD, &[]).unwrap_err();
        assert_eq!(e.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(e.reasons, ["persistentvolumeclaim \"data\" not found"]);

        let p = plugin_with(&[(VolumeBinding::claim_kind(), BOUND_CLAIM)]);
        let s = run(&p, POD, &[node("metadata: {name: n1}")]).unwrap();
        assert_eq!(s[0].reasons, [ERR_REASON_PV_NOT_EXIST]);

        let p = plugin_with(&[(
            VolumeBinding::claim_kind(),
            "metadata: {name: data, namespace: d}\nspec: {volumeName: pv-a}\nstatus: {phase: Lost}",
        )]);
        assert_eq!(
            run(&p, POD, &[]).unwrap_err().reasons,
            ["persistentvolumeclaim \"data\" bound to non-existent persistentvolume \"pv-a\""]
        );
    }

    #[test]
    fn unbound_claims_get_a_reason_by_binding_mode() {
        let p = plugin_with(&[
            (
                VolumeBinding::class_kind(),
                "metadata: {name: late}\nprovisioner: x\nvolumeBindingMode: WaitForFirstConsumer",
            ),
            (
                VolumeBinding::claim_kind(),
                "metadata: {name: data, namespace: d}\nspec: {storageClassName: late}",
            ),
        ]);
        assert_eq!(
            run(&p, POD, &[]).unwrap_err().reasons,
            [ERR_REASON_UNBOUND_DELAYED]
        );
        // A claim naming a volume the controller has not bound yet counts as immediate.
        let p = plugin_with(&[
            (
                VolumeBinding::class_kind(),
                "metadata: {name: late}\nprovisioner: x\nvolumeBindingMode: WaitForFirstConsumer",
            ),
            (
                VolumeBinding::claim_kind(),
                "metadata: {name: data, namespace: d}\nspec: {storageClassName: late, volumeName: pv-a}",
            ),
        ]);
        assert_eq!(
            run(&p, POD, &[]).unwrap_err().reasons,
            [ERR_REASON_UNBOUND_IMMEDIATE]
        );
        // No class (or an unknown one) binds immediately.
        let p = plugin_with(&[(
            VolumeBinding::claim_kind(),
            "metadata: {name: data, namespace: d}\nspec: {}",
        )]);
        assert_eq!(
            run(&p, POD, &[]).unwrap_err().reasons,
            [ERR_REASON_UNBOUND_IMMEDIATE]
        );
    }

    #[test]
    fn an_ephemeral_volume_waits_for_its_claim_and_must_own_it() {
        let eph = "metadata: {name: p, namespace: d, uid: u1}\nspec: {containers: [{name: c}], volumes: [{name: scratch, ephemeral: {volumeClaimTemplate: {spec: {}}}}]}";
        let p = plugin_with(&[]);
        assert_eq!(
            run(&p, eph, &[]).unwrap_err().reasons,
            [
                "waiting for ephemeral volume controller to create the persistentvolumeclaim \"p-scratch\""
            ]
        );
        let p = plugin_with(&[(
            VolumeBinding::claim_kind(),
            "metadata: {name: p-scratch, namespace: d, ownerReferences: [{apiVersion: v1, kind: Pod, name: p, uid: other, controller: true}]}\nspec: {}",
        )]);
        assert_eq!(
            run(&p, eph, &[]).unwrap_err().reasons,
            ["PVC d/p-scratch was not created for pod d/p (pod is not owner)"]
        );
    }

    #[test]
    fn a_deleted_claim_is_forgotten() {
        let p = plugin_with(&[
            (VolumeBinding::volume_kind(), ZONE_A_PV),
            (VolumeBinding::claim_kind(), BOUND_CLAIM),
        ]);
        let mut gone = event(VolumeBinding::claim_kind(), BOUND_CLAIM);
        gone.action = EventAction::Deleted;
        p.on_event(&gone);
        assert_eq!(
            run(&p, POD, &[]).unwrap_err().reasons,
            ["persistentvolumeclaim \"data\" not found"]
        );
    }

    #[test]
    fn errors_on_a_negative_bind_timeout_or_a_shape() {
        assert!(VolumeBinding::new(&serde_json::json!({"bindTimeoutSeconds": 600})).is_ok());
        let e = VolumeBinding::new(&serde_json::json!({"bindTimeoutSeconds": -1})).unwrap_err();
        assert!(
            e.to_string().contains("should not be a negative value"),
            "{e}"
        );
        assert!(VolumeBinding::new(&serde_json::json!({"shape": []})).is_err());
    }
}
