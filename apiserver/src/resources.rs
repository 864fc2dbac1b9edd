//! The table of resources this server serves.
//!
//! Everything that differs between resources in a data-driven way (URL names, scope, verbs, discovery
//! fields, which subresources exist, whether `metadata.generation` is maintained) lives here, so the
//! HTTP layer, discovery and the store never match on resource names themselves.

/// The storage kinds. Two URL resources may share one storage kind: `events` is served by both
/// `core/v1` and `events.k8s.io/v1` from the same objects, like the real server does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Kind {
    Namespace,
    Node,
    Pod,
    Event,
    Lease,
    DeviceClass,
    ResourceSlice,
    ResourceClaim,
    ResourceClaimTemplate,
    PriorityClass,
    PodDisruptionBudget,
    PersistentVolume,
    PersistentVolumeClaim,
    StorageClass,
    Service,
    ReplicationController,
    ReplicaSet,
    StatefulSet,
    DeviceTaintRule,
}

impl Kind {
    /// All storage kinds, in the order used for namespace clean-up and discovery.
    pub(crate) const ALL: [Kind; 19] = [
        Kind::Namespace,
        Kind::Node,
        Kind::Pod,
        Kind::Event,
        Kind::Lease,
        Kind::DeviceClass,
        Kind::ResourceSlice,
        Kind::ResourceClaim,
        Kind::ResourceClaimTemplate,
        Kind::PriorityClass,
        Kind::PodDisruptionBudget,
        Kind::PersistentVolume,
        Kind::PersistentVolumeClaim,
        Kind::StorageClass,
        Kind::Service,
        Kind::ReplicationController,
        Kind::ReplicaSet,
        Kind::StatefulSet,
        Kind::DeviceTaintRule,
    ];

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The resource through which objects of this kind are stored (the canonical API).
    pub(crate) fn canonical(self) -> &'static ResourceDef {
        RESOURCES
            .iter()
            .find(|r| r.kind_enum == self && !r.converted)
            .expect("every kind has a canonical resource")
    }
}

/// One servable resource (`group/version/plural`).
#[derive(Debug)]
pub(crate) struct ResourceDef {
    pub kind_enum: Kind,
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub verbs: &'static [&'static str],
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Has a `/status` subresource, so the main resource ignores status changes and vice versa.
    pub has_status: bool,
    /// The server maintains `metadata.generation` (set to 1 on create, bumped on spec changes).
    pub generation: bool,
    /// This resource is a converted view of another resource's storage (events.k8s.io Events).
    pub converted: bool,
    /// Storage version hash shown in legacy discovery (copied from the reference server).
    pub storage_version_hash: &'static str,
}

impl ResourceDef {
    /// `apiVersion` of objects served through this resource.
    pub(crate) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural` for the core group, `plural.group` otherwise: how error messages name a resource.
    pub(crate) fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `Kind` for the core group, `Kind.group` otherwise: how validation errors name a kind.
    pub(crate) fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    pub(crate) fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The etcd key prefix the real server uses; it shows up in precondition error messages.
    pub(crate) fn storage_prefix(&self) -> &'static str {
        match self.kind_enum {
            Kind::Node => "minions",
            _ => self.plural,
        }
    }
}

const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Every resource served, grouped by group/version in discovery order.
pub(crate) static RESOURCES: &[ResourceDef] = &[
    ResourceDef {
        kind_enum: Kind::Event,
        group: "",
        version: "v1",
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        verbs: ALL_VERBS,
        short_names: &["ev"],
        categories: &[],
        has_status: false,
        generation: false,
        converted: false,
        storage_version_hash: "r2yiGXH7wu8=",
    },
    ResourceDef {
        kind_enum: Kind::Namespace,
        group: "",
        version: "v1",
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        verbs: &[
            "create", "delete", "get", "list", "patch", "update", "watch",
        ],
        short_names: &["ns"],
        categories: &[],
        has_status: true,
        generation: false,
        converted: false,
        storage_version_hash: "Q3oi5N2YM8M=",
    },
    ResourceDef {
        kind_enum: Kind::Node,
        group: "",
        version: "v1",
        plural: "nodes",
        singular: "node",
        kind: "Node",
        namespaced: false,
        verbs: ALL_VERBS,
        short_names: &["no"],
        categories: &[],
        has_status: true,
        generation: false,
        converted: false,
        storage_version_hash: "XwShjMxG9Fs=",
    },
    ResourceDef {
        kind_enum: Kind::Pod,
        group: "",
        version: "v1",
        plural: "pods",
        singular: "pod",
        kind: "Pod",
        namespaced: true,
        verbs: ALL_VERBS,
        short_names: &["po"],
        categories: &["all"],
        has_status: true,
        generation: true,
        converted: false,
        storage_version_hash: "xPOwRZ+Yhw8=",
    },
    ResourceDef {
        kind_enum: Kind::PersistentVolume,
        group: "",
        version: "v1",
        plural: "persistentvolumes",
        singular: "persistentvolume",
        kind: "PersistentVolume",
        namespaced: false,
        verbs: ALL_VERBS,
        short_names: &["pv"],
        categories: &[],
        has_status: true,
        generation: false,
        converted: false,
        storage_version_hash: "HN/zwEC+JgM=",
    },
    ResourceDef {
        kind_enum: Kind::PersistentVolumeClaim,
        group: "",
        version: "v1",
        plural: "persistentvolumeclaims",
        singular: "persistentvolumeclaim",
        kind: "PersistentVolumeClaim",
        namespaced: true,
        verbs: ALL_VERBS,
        short_names: &["pvc"],
        categories: &[],
        has_status: true,
        generation: false,
        converted: false,
        storage_version_hash: "QWTyNDq0dC4=",
    },
    ResourceDef {
        kind_enum: Kind::ReplicationController,
        group: "",
        version: "v1",
        plural: "replicationcontrollers",
        singular: "replicationcontroller",
        kind: "ReplicationController",
        namespaced: true,
        verbs: ALL_VERBS,
        short_names: &["rc"],
        categories: &["all"],
        has_status: true,
        generation: true,
        converted: false,
        storage_version_hash: "Jond2If31h0=",
    },
    ResourceDef {
        kind_enum: Kind::Service,
        group: "",
        version: "v1",
        plural: "services",
        singular: "service",
        kind: "Service",
        namespaced: true,
        verbs: ALL_VERBS,
        short_names: &["svc"],
        categories: &["all"],
        has_status: true,
        generation: false,
        converted: false,
        storage_version_hash: "0/CO1lhkEBI=",
    },
    ResourceDef {
        kind_enum: Kind::ReplicaSet,
        group: "apps",
        version: "v1",
        plural: "replicasets",
        singular: "replicaset",
        kind: "ReplicaSet",
        namespaced: true,
        verbs: ALL_VERBS,
        short_names: &["rs"],
        categories: &["all"],
        has_status: true,
        generation: true,
        converted: false,
        storage_version_hash: "P1RzHs8/mWQ=",
    },
    ResourceDef {
        kind_enum: Kind::StatefulSet,
        group: "apps",
        version: "v1",
        plural: "statefulsets",
        singular: "statefulset",
        kind: "StatefulSet",
        namespaced: true,
        verbs: ALL_VERBS,
        short_names: &["sts"],
        categories: &["all"],
        has_status: true,
        generation: true,
        converted: false,
        storage_version_hash: "H+vl74LkKdo=",
    },
    ResourceDef {
        kind_enum: Kind::Event,
        group: "events.k8s.io",
        version: "v1",
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        verbs: ALL_VERBS,
        short_names: &["ev"],
        categories: &[],
        has_status: false,
        generation: false,
        converted: true,
        storage_version_hash: "r2yiGXH7wu8=",
    },
    ResourceDef {
        kind_enum: Kind::Lease,
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        singular: "lease",
        kind: "Lease",
        namespaced: true,
        verbs: ALL_VERBS,
        short_names: &[],
        categories: &[],
        has_status: false,
        generation: false,
        converted: false,
        storage_version_hash: "gqkMMb/YqFM=",
    },
    ResourceDef {
        kind_enum: Kind::DeviceClass,
        group: "resource.k8s.io",
        version: "v1",
        plural: "deviceclasses",
        singular: "deviceclass",
        kind: "DeviceClass",
        namespaced: false,
        verbs: ALL_VERBS,
        short_names: &[],
        categories: &[],
        has_status: false,
        generation: true,
        converted: false,
        storage_version_hash: "Yk2PTc1Ybxk=",
    },
    ResourceDef {
        kind_enum: Kind::ResourceClaim,
        group: "resource.k8s.io",
        version: "v1",
        plural: "resourceclaims",
        singular: "resourceclaim",
        kind: "ResourceClaim",
        namespaced: true,
        verbs: ALL_VERBS,
        short_names: &[],
        categories: &[],
        has_status: true,
        generation: false,
        converted: false,
        storage_version_hash: "wgAZaHcZxUg=",
    },
    ResourceDef {
        kind_enum: Kind::ResourceClaimTemplate,
        group: "resource.k8s.io",
        version: "v1",
        plural: "resourceclaimtemplates",
        singular: "resourceclaimtemplate",
        kind: "ResourceClaimTemplate",
        namespaced: true,
        verbs: ALL_VERBS,
        short_names: &[],
        categories: &[],
        has_status: false,
        generation: false,
        converted: false,
        storage_version_hash: "TuzjC49aUfM=",
    },
    ResourceDef {
        kind_enum: Kind::ResourceSlice,
        group: "resource.k8s.io",
        version: "v1",
        plural: "resourceslices",
        singular: "resourceslice",
        kind: "ResourceSlice",
        namespaced: false,
        verbs: ALL_VERBS,
        short_names: &[],
        categories: &[],
        has_status: false,
        generation: true,
        converted: false,
        storage_version_hash: "KsC072WgaEY=",
    },
    // DeviceTaintRules (KEP-5055) are beta in v1.36, served by resource.k8s.io/v1beta2 (off by
    // default upstream, like every beta API). Stored as v1alpha3, the version they were added in.
    ResourceDef {
        kind_enum: Kind::DeviceTaintRule,
        group: "resource.k8s.io",
        version: "v1beta2",
        plural: "devicetaintrules",
        singular: "devicetaintrule",
        kind: "DeviceTaintRule",
        namespaced: false,
        verbs: ALL_VERBS,
        short_names: &[],
        categories: &[],
        has_status: true,
        generation: true,
        converted: false,
        storage_version_hash: "DJ3UJ0fj8MI=",
    },
    ResourceDef {
        kind_enum: Kind::PodDisruptionBudget,
        group: "policy",
        version: "v1",
        plural: "poddisruptionbudgets",
        singular: "poddisruptionbudget",
        kind: "PodDisruptionBudget",
        namespaced: true,
        verbs: ALL_VERBS,
        short_names: &["pdb"],
        categories: &[],
        has_status: true,
        generation: true,
        converted: false,
        storage_version_hash: "EVWiDmWqyJw=",
    },
    ResourceDef {
        kind_enum: Kind::StorageClass,
        group: "storage.k8s.io",
        version: "v1",
        plural: "storageclasses",
        singular: "storageclass",
        kind: "StorageClass",
        namespaced: false,
        verbs: ALL_VERBS,
        short_names: &["sc"],
        categories: &[],
        has_status: false,
        generation: false,
        converted: false,
        storage_version_hash: "K+m6uJwbjGY=",
    },
    ResourceDef {
        kind_enum: Kind::PriorityClass,
        group: "scheduling.k8s.io",
        version: "v1",
        plural: "priorityclasses",
        singular: "priorityclass",
        kind: "PriorityClass",
        namespaced: false,
        verbs: ALL_VERBS,
        short_names: &["pc"],
        categories: &[],
        has_status: false,
        generation: false,
        converted: false,
        storage_version_hash: "1QwjyaZjj3Y=",
    },
];

/// The API group versions in the order the real server lists them (group priority, not
/// alphabetical); a group's versions are adjacent, preferred first.
pub(crate) const GROUPS: &[(&str, &str)] = &[
    ("apps", "v1"),
    ("events.k8s.io", "v1"),
    ("policy", "v1"),
    ("storage.k8s.io", "v1"),
    ("scheduling.k8s.io", "v1"),
    ("coordination.k8s.io", "v1"),
    ("resource.k8s.io", "v1"),
    ("resource.k8s.io", "v1beta2"),
];

/// Finds the resource served at `group/version/plural`.
pub(crate) fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Finds the resource for an object's `apiVersion` and `kind` (used by manifests).
pub(crate) fn lookup_kind(api_version: &str, kind: &str) -> Option<&'static ResourceDef> {
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// All resources of one group/version.
pub(crate) fn in_group_version<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static ResourceDef> + 'a {
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_exactly_one_canonical_resource() {
        for kind in Kind::ALL {
            let n = RESOURCES
                .iter()
                .filter(|r| r.kind_enum == kind && !r.converted)
                .count();
            assert_eq!(n, 1, "{kind:?}");
        }
    }

    #[test]
    fn qualified_names_follow_the_real_server() {
        let claims = lookup("resource.k8s.io", "v1", "resourceclaims").unwrap();
        assert_eq!(claims.qualified_plural(), "resourceclaims.resource.k8s.io");
        assert_eq!(claims.qualified_kind(), "ResourceClaim.resource.k8s.io");
        let pods = lookup("", "v1", "pods").unwrap();
        assert_eq!(pods.qualified_plural(), "pods");
        assert_eq!(pods.qualified_kind(), "Pod");
    }
}
