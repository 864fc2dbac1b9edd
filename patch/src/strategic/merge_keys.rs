//! Which lists a strategic merge patch merges, and by which key, for the kinds this project uses.
//!
//! Upstream reads this from the `patchStrategy` and `patchMergeKey` struct tags of the Go types
//! (`strategicpatch.NewPatchMetaFromStruct`). Only those tags count: a `+listType=map` marker
//! without them drives server-side apply, not strategic merge, so such a list is replaced like
//! any untagged list. That is why, for example, a ResourceClaim's `status.devices`
//! (`+listType=map` on driver/pool/device/shareID, no `patchStrategy`) and a Pod's
//! `status.containerStatuses` and `spec.tolerations` (no tag) are replaced, and a Node's
//! `spec.taints` too (its `patchMergeKey:"key"` sits on `Taint.Key`, which upstream ignores).
//!
//! Tags copied from Kubernetes v1.36:
//! `staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/types.go` (ObjectMeta),
//! `staging/src/k8s.io/api/core/v1/types.go` (Pod, Node) and
//! `staging/src/k8s.io/api/resource/v1/types.go` (ResourceClaim, ResourceClaimTemplate).

/// How a strategic merge patch treats a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListStrategy {
    /// No `patchStrategy` tag: the patch's list replaces the live one (upstream default).
    Replace,
    /// `patchStrategy:"merge"` on a list of primitives: a set, new values are added.
    Set,
    /// `patchStrategy:"merge" patchMergeKey:"<key>"`: elements with the same key merge.
    MergeByKey(&'static str),
}

impl ListStrategy {
    /// Whether the list merges rather than being replaced.
    pub(crate) fn merges(self) -> bool {
        self != ListStrategy::Replace
    }

    /// The merge key of a list of objects.
    pub(crate) fn merge_key(self) -> Option<&'static str> {
        match self {
            ListStrategy::MergeByKey(key) => Some(key),
            _ => None,
        }
    }
}

/// The fields of an object type that strategic merge patch needs to know about.
#[derive(Debug)]
pub(crate) struct Schema {
    fields: &'static [Field],
}

/// One field: how it merges if it is a list, and the schema of its value (an object) or of its
/// elements (a list of objects).
#[derive(Debug)]
pub(crate) struct Field {
    name: &'static str,
    pub(crate) strategy: ListStrategy,
    pub(crate) schema: &'static Schema,
}

impl Schema {
    /// The field called `name`; a field we know nothing about is a replaced list or a plain
    /// object, which is what upstream does with untagged fields.
    pub(crate) fn field(&self, name: &str) -> &Field {
        self.fields
            .iter()
            .find(|f| f.name == name)
            .unwrap_or(&UNKNOWN_FIELD)
    }
}

/// The schema of a value whose fields have no tags.
static ANY: Schema = Schema { fields: &[] };

static UNKNOWN_FIELD: Field = Field {
    name: "",
    strategy: ListStrategy::Replace,
    schema: &ANY,
};

/// An object-valued field.
const fn object(name: &'static str, schema: &'static Schema) -> Field {
    Field {
        name,
        strategy: ListStrategy::Replace,
        schema,
    }
}

/// A list of objects merged by `key`.
const fn keyed(name: &'static str, key: &'static str, schema: &'static Schema) -> Field {
    Field {
        name,
        strategy: ListStrategy::MergeByKey(key),
        schema,
    }
}

/// A list of primitives merged as a set.
const fn set(name: &'static str) -> Field {
    Field {
        name,
        strategy: ListStrategy::Set,
        schema: &ANY,
    }
}

/// `ObjectMeta`: `Finalizers` has `patchStrategy:"merge"`, `OwnerReferences` has
/// `patchStrategy:"merge" patchMergeKey:"uid"`; labels and annotations are maps and merge anyway.
static OBJECT_META: Schema = Schema {
    fields: &[set("finalizers"), keyed("ownerReferences", "uid", &ANY)],
};

/// Any kind without lists of its own to merge (Namespace, Event, Lease, DeviceClass,
/// ResourceSlice, ...): only its metadata has merge keys.
static OBJECT: Schema = Schema {
    fields: &[object("metadata", &OBJECT_META)],
};

static POD: Schema = Schema {
    fields: &[
        object("metadata", &OBJECT_META),
        object("spec", &POD_SPEC),
        object("status", &POD_STATUS),
    ],
};

/// `PodSpec`. `Tolerations` has no tag (replaced). `Volumes` and `ResourceClaims` are
/// `merge,retainKeys`; the `$retainKeys` directive is honoured in any map anyway.
static POD_SPEC: Schema = Schema {
    fields: &[
        keyed("volumes", "name", &ANY),
        keyed("initContainers", "name", &CONTAINER),
        keyed("containers", "name", &CONTAINER),
        keyed("ephemeralContainers", "name", &CONTAINER),
        keyed("imagePullSecrets", "name", &ANY),
        keyed("hostAliases", "ip", &ANY),
        keyed("topologySpreadConstraints", "topologyKey", &ANY),
        keyed("schedulingGates", "name", &ANY),
        keyed("resourceClaims", "name", &ANY),
    ],
};

/// `Container` (and `EphemeralContainerCommon`, which has the same tags). `ResizePolicy` and
/// `Resources.Claims` have no `patchStrategy` (replaced).
static CONTAINER: Schema = Schema {
    fields: &[
        keyed("ports", "containerPort", &ANY),
        keyed("env", "name", &ANY),
        keyed("volumeMounts", "mountPath", &ANY),
        keyed("volumeDevices", "devicePath", &ANY),
    ],
};

/// `PodStatus`. The container status lists are `+listType=atomic` without `patchStrategy`
/// (replaced).
static POD_STATUS: Schema = Schema {
    fields: &[
        keyed("conditions", "type", &ANY),
        keyed("podIPs", "ip", &ANY),
        keyed("hostIPs", "ip", &ANY),
        keyed("resourceClaimStatuses", "name", &ANY),
    ],
};

static NODE: Schema = Schema {
    fields: &[
        object("metadata", &OBJECT_META),
        object("spec", &NODE_SPEC),
        object("status", &NODE_STATUS),
    ],
};

/// `NodeSpec`: `PodCIDRs` has `patchStrategy:"merge"`; `Taints` has no tag (replaced).
static NODE_SPEC: Schema = Schema {
    fields: &[set("podCIDRs")],
};

/// `NodeStatus`: `Conditions` and `Addresses` merge by `type`.
static NODE_STATUS: Schema = Schema {
    fields: &[
        keyed("conditions", "type", &ANY),
        keyed("addresses", "type", &ANY),
    ],
};

static RESOURCE_CLAIM: Schema = Schema {
    fields: &[
        object("metadata", &OBJECT_META),
        object("status", &RESOURCE_CLAIM_STATUS),
    ],
};

/// `ResourceClaimStatus`: `ReservedFor` has `patchStrategy:"merge" patchMergeKey:"uid"`, the
/// tag kube-scheduler's reserve and unreserve patches rely on (design doc, PR #121876).
static RESOURCE_CLAIM_STATUS: Schema = Schema {
    fields: &[keyed("reservedFor", "uid", &ANY)],
};

/// `ResourceClaimTemplate`: its `spec.metadata` is an `ObjectMeta` too.
static RESOURCE_CLAIM_TEMPLATE: Schema = Schema {
    fields: &[
        object("metadata", &OBJECT_META),
        object("spec", &RESOURCE_CLAIM_TEMPLATE_SPEC),
    ],
};

static RESOURCE_CLAIM_TEMPLATE_SPEC: Schema = Schema {
    fields: &[object("metadata", &OBJECT_META)],
};

/// The schema of a kind, by its `kind` name.
pub(crate) fn schema_for(kind: &str) -> &'static Schema {
    match kind {
        "Pod" => &POD,
        "Node" => &NODE,
        "ResourceClaim" => &RESOURCE_CLAIM,
        "ResourceClaimTemplate" => &RESOURCE_CLAIM_TEMPLATE,
        _ => &OBJECT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ListStrategy::*;

    /// The strategy of the list at `path` (list elements are not part of the path).
    fn strategy(kind: &str, path: &str) -> ListStrategy {
        let mut schema = schema_for(kind);
        let mut strategy = Replace;
        for name in path.split('.') {
            let field = schema.field(name);
            strategy = field.strategy;
            schema = field.schema;
        }
        strategy
    }

    #[test]
    fn works_when_every_kind_merges_finalizers_and_owner_references() {
        for kind in [
            "Pod",
            "Node",
            "ResourceClaim",
            "ResourceClaimTemplate",
            "Lease",
            "Event",
        ] {
            assert_eq!(strategy(kind, "metadata.finalizers"), Set, "{kind}");
            assert_eq!(
                strategy(kind, "metadata.ownerReferences"),
                MergeByKey("uid"),
                "{kind}"
            );
            assert_eq!(strategy(kind, "metadata.managedFields"), Replace, "{kind}");
        }
        assert_eq!(
            strategy("ResourceClaimTemplate", "spec.metadata.finalizers"),
            Set
        );
    }

    #[test]
    fn works_when_pod_lists_have_upstream_merge_keys() {
        let cases = [
            ("spec.containers", MergeByKey("name")),
            ("spec.initContainers", MergeByKey("name")),
            ("spec.ephemeralContainers", MergeByKey("name")),
            ("spec.containers.ports", MergeByKey("containerPort")),
            ("spec.initContainers.env", MergeByKey("name")),
            ("spec.containers.volumeMounts", MergeByKey("mountPath")),
            ("spec.containers.volumeDevices", MergeByKey("devicePath")),
            ("spec.containers.resizePolicy", Replace),
            ("spec.containers.resources.claims", Replace),
            ("spec.volumes", MergeByKey("name")),
            ("spec.imagePullSecrets", MergeByKey("name")),
            ("spec.hostAliases", MergeByKey("ip")),
            ("spec.topologySpreadConstraints", MergeByKey("topologyKey")),
            ("spec.schedulingGates", MergeByKey("name")),
            ("spec.resourceClaims", MergeByKey("name")),
            ("spec.tolerations", Replace),
            ("status.conditions", MergeByKey("type")),
            ("status.podIPs", MergeByKey("ip")),
            ("status.hostIPs", MergeByKey("ip")),
            ("status.resourceClaimStatuses", MergeByKey("name")),
            ("status.containerStatuses", Replace),
            ("status.initContainerStatuses", Replace),
        ];
        for (path, expected) in cases {
            assert_eq!(strategy("Pod", path), expected, "{path}");
        }
    }

    #[test]
    fn works_when_node_and_claim_lists_have_upstream_merge_keys() {
        assert_eq!(strategy("Node", "spec.podCIDRs"), Set);
        assert_eq!(strategy("Node", "spec.taints"), Replace);
        assert_eq!(strategy("Node", "status.conditions"), MergeByKey("type"));
        assert_eq!(strategy("Node", "status.addresses"), MergeByKey("type"));
        assert_eq!(strategy("Node", "status.images"), Replace);
        assert_eq!(
            strategy("ResourceClaim", "status.reservedFor"),
            MergeByKey("uid")
        );
        assert_eq!(strategy("ResourceClaim", "status.devices"), Replace);
        assert_eq!(
            strategy("ResourceClaim", "status.allocation.devices.results"),
            Replace
        );
        assert_eq!(strategy("ResourceClaim", "spec.devices.requests"), Replace);
    }
}
