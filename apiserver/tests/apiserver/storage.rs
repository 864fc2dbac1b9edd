//! PersistentVolumes, PersistentVolumeClaims and StorageClasses: defaults, validation,
//! discovery, tables, DefaultStorageClass admission and the binding of pre-bound pairs.

use super::*;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::DeleteParams;

fn pv(name: &str, extra: Value) -> PersistentVolume {
    let mut v = json!({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
        "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
                 "storageClassName": "local", "local": {"path": "/mnt/disk"},
                 "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                     {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}]}]}}}
    });
    for (k, x) in extra.as_object().unwrap() {
        v["spec"][k] = x.clone();
    }
    serde_json::from_value(v).unwrap()
}

fn pvc(name: &str, extra: Value) -> PersistentVolumeClaim {
    let mut v = json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local",
                 "resources": {"requests": {"storage": "5Gi"}}}
    });
    for (k, x) in extra.as_object().unwrap() {
        v["spec"][k] = x.clone();
    }
    serde_json::from_value(v).unwrap()
}

fn phase_of_pv(pv: &PersistentVolume) -> &str {
    pv.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn phase_of_pvc(pvc: &PersistentVolumeClaim) -> &str {
    pvc.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

#[tokio::test]
async fn volumes_claims_and_classes_get_the_v1_defaults() {
    let (_s, client) = setup();
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let created = pvs
        .create(&PostParams::default(), &pv("pv-1", json!({})))
        .await
        .unwrap();
    let spec = created.spec.as_ref().unwrap();
    assert_eq!(
        spec.persistent_volume_reclaim_policy.as_deref(),
        Some("Retain")
    );
    assert_eq!(spec.volume_mode.as_deref(), Some("Filesystem"));
    // Created Pending (the create's answer), then made Available by the PV controller.
    assert_eq!(phase_of_pv(&created), "Pending");
    let now = pvs.get("pv-1").await.unwrap();
    assert_eq!(phase_of_pv(&now), "Available");
    assert!(now.status.unwrap().last_phase_transition_time.is_some());

    let pvcs: Api<PersistentVolumeClaim> = Api::default_namespaced(client.clone());
    let c = pvcs
        .create(
            &PostParams::default(),
            &pvc(
                "data",
                json!({"resources": {"requests": {"storage": "5120Mi"}}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(phase_of_pvc(&c), "Pending");
    assert_eq!(
        c.spec.as_ref().unwrap().volume_mode.as_deref(),
        Some("Filesystem")
    );
    assert_eq!(
        c.spec.unwrap().resources.unwrap().requests.unwrap()["storage"].0,
        "5Gi"
    );

    let classes: Api<StorageClass> = Api::all(client);
    let sc: StorageClass = serde_json::from_value(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "local"}, "provisioner": "kubernetes.io/no-provisioner"
    }))
    .unwrap();
    let sc = classes.create(&PostParams::default(), &sc).await.unwrap();
    assert_eq!(sc.reclaim_policy.as_deref(), Some("Delete"));
    assert_eq!(sc.volume_binding_mode.as_deref(), Some("Immediate"));
}

#[tokio::test]
async fn a_claim_naming_a_volume_binds_both_as_the_pv_controller_does() {
    let (_s, client) = setup();
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pvcs: Api<PersistentVolumeClaim> = Api::default_namespaced(client);
    // The claim first: it stays Pending until its volume exists.
    let c = pvcs
        .create(
            &PostParams::default(),
            &pvc("data", json!({"volumeName": "pv-1"})),
        )
        .await
        .unwrap();
    assert_eq!(phase_of_pvc(&pvcs.get("data").await.unwrap()), "Pending");
    pvs.create(&PostParams::default(), &pv("pv-1", json!({})))
        .await
        .unwrap();

    let v = pvs.get("pv-1").await.unwrap();
    assert_eq!(phase_of_pv(&v), "Bound");
    let claim_ref = v.spec.unwrap().claim_ref.unwrap();
    assert_eq!(claim_ref.name.as_deref(), Some("data"));
    assert_eq!(claim_ref.namespace.as_deref(), Some("default"));
    assert_eq!(claim_ref.uid, c.metadata.uid);
    let c = pvcs.get("data").await.unwrap();
    assert_eq!(phase_of_pvc(&c), "Bound");
    assert_eq!(
        c.metadata.annotations.unwrap()["pv.kubernetes.io/bind-completed"],
        "yes"
    );
    let st = c.status.unwrap();
    assert_eq!(st.capacity.unwrap()["storage"].0, "10Gi");
    assert_eq!(st.access_modes.unwrap(), ["ReadWriteOnce"]);

    // Deleting the claim releases the volume (it keeps its claimRef, as with Retain).
    pvcs.delete("data", &DeleteParams::default()).await.unwrap();
    assert_eq!(phase_of_pv(&pvs.get("pv-1").await.unwrap()), "Released");
}

#[tokio::test]
async fn a_volume_pre_bound_by_claim_ref_binds_its_claim_and_a_mismatch_does_not() {
    let (_s, client) = setup();
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pvcs: Api<PersistentVolumeClaim> = Api::default_namespaced(client);
    let claim_ref = json!({"claimRef": {"namespace": "default", "name": "data"}});
    pvs.create(&PostParams::default(), &pv("pv-1", claim_ref))
        .await
        .unwrap();
    assert_eq!(phase_of_pv(&pvs.get("pv-1").await.unwrap()), "Available");
    pvcs.create(&PostParams::default(), &pvc("data", json!({})))
        .await
        .unwrap();
    let c = pvcs.get("data").await.unwrap();
    assert_eq!(
        c.spec.as_ref().unwrap().volume_name.as_deref(),
        Some("pv-1")
    );
    assert_eq!(
        c.metadata.annotations.as_ref().unwrap()["pv.kubernetes.io/bound-by-controller"],
        "yes"
    );
    assert_eq!(phase_of_pvc(&c), "Bound");

    // A claim asking for more than the volume has stays Pending.
    pvcs.create(
        &PostParams::default(),
        &pvc(
            "big",
            json!({"volumeName": "pv-2", "resources": {"requests": {"storage": "1Ti"}}}),
        ),
    )
    .await
    .unwrap();
    pvs.create(&PostParams::default(), &pv("pv-2", json!({})))
        .await
        .unwrap();
    assert_eq!(phase_of_pvc(&pvcs.get("big").await.unwrap()), "Pending");
    assert_eq!(phase_of_pv(&pvs.get("pv-2").await.unwrap()), "Available");
}

#[tokio::test]
async fn a_claim_without_a_class_gets_the_default_class() {
    let (_s, client) = setup();
    let classes: Api<StorageClass> = Api::all(client.clone());
    let sc: StorageClass = serde_json::from_value(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "example.com/csi", "volumeBindingMode": "WaitForFirstConsumer"
    }))
    .unwrap();
    classes.create(&PostParams::default(), &sc).await.unwrap();
    let pvcs: Api<PersistentVolumeClaim> = Api::default_namespaced(client);
    let mut body = serde_json::to_value(pvc("data", json!({}))).unwrap();
    body["spec"]
        .as_object_mut()
        .unwrap()
        .remove("storageClassName");
    let c = pvcs
        .create(
            &PostParams::default(),
            &serde_json::from_value(body).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        c.spec.unwrap().storage_class_name.as_deref(),
        Some("standard")
    );
    // An explicit empty class means "no class" and is kept.
    let c = pvcs
        .create(
            &PostParams::default(),
            &pvc("raw", json!({"storageClassName": ""})),
        )
        .await
        .unwrap();
    assert_eq!(c.spec.unwrap().storage_class_name.as_deref(), Some(""));
}

#[tokio::test]
async fn invalid_volumes_claims_and_class_updates_are_refused_with_upstreams_words() {
    let (_s, client) = setup();
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let bare: PersistentVolume = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "bare"}, "spec": {}
    }))
    .unwrap();
    let st = status(pvs.create(&PostParams::default(), &bare).await.unwrap_err());
    assert_eq!(st.code, 422);
    assert_eq!(
        st.message,
        "PersistentVolume \"bare\" is invalid: [spec.accessModes: Required value, spec.capacity: Required value, spec.capacity: Unsupported value: core.ResourceList(nil): supported values: \"storage\", spec: Required value: must specify a volume type]"
    );

    let pvcs: Api<PersistentVolumeClaim> = Api::default_namespaced(client.clone());
    pvcs.create(&PostParams::default(), &pvc("data", json!({})))
        .await
        .unwrap();
    let st = status(
        pvcs.patch(
            "data",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"accessModes": ["ReadWriteMany"]}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        st.message,
        "PersistentVolumeClaim \"data\" is invalid: spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"
    );

    let classes: Api<StorageClass> = Api::all(client);
    let sc: StorageClass = serde_json::from_value(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "fast"}, "provisioner": "example.com/csi", "parameters": {"tier": "1"}
    }))
    .unwrap();
    classes.create(&PostParams::default(), &sc).await.unwrap();
    let st = status(
        classes
            .patch(
                "fast",
                &PatchParams::default(),
                &Patch::Merge(json!({"parameters": {"tier": "2"}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(
        st.message,
        "StorageClass.storage.k8s.io \"fast\" is invalid: parameters: Forbidden: updates to parameters are forbidden."
    );
}

#[tokio::test]
async fn discovery_lists_the_storage_kinds_with_the_reference_hashes() {
    let (_s, client) = setup();
    let get = |path: &str| {
        http::Request::get(path)
            .header("accept", "application/json")
            .body(Vec::new())
            .unwrap()
    };
    let core: Value = client.request(get("/api/v1")).await.unwrap();
    let find = |list: &Value, name: &str| {
        list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    let pvs = find(&core, "persistentvolumes");
    assert_eq!(pvs["namespaced"], false);
    assert_eq!(pvs["shortNames"], json!(["pv"]));
    assert_eq!(pvs["storageVersionHash"], "HN/zwEC+JgM=");
    let pvcs = find(&core, "persistentvolumeclaims");
    assert_eq!(pvcs["namespaced"], true);
    assert_eq!(pvcs["storageVersionHash"], "QWTyNDq0dC4=");
    find(&core, "persistentvolumeclaims/status");
    find(&core, "persistentvolumes/status");
    let storage: Value = client
        .request(get("/apis/storage.k8s.io/v1"))
        .await
        .unwrap();
    let sc = find(&storage, "storageclasses");
    assert_eq!(sc["shortNames"], json!(["sc"]));
    assert_eq!(sc["storageVersionHash"], "K+m6uJwbjGY=");
}

#[tokio::test]
async fn kubectl_tables_show_the_binding() {
    let (_s, client) = setup();
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pvcs: Api<PersistentVolumeClaim> = Api::default_namespaced(client.clone());
    pvcs.create(
        &PostParams::default(),
        &pvc("data", json!({"volumeName": "pv-1"})),
    )
    .await
    .unwrap();
    pvs.create(&PostParams::default(), &pv("pv-1", json!({})))
        .await
        .unwrap();
    let table = |path: &str| {
        http::Request::get(path)
            .header("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
            .body(Vec::new())
            .unwrap()
    };
    let t: Value = client
        .request(table("/api/v1/persistentvolumes"))
        .await
        .unwrap();
    let names: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Name",
            "Capacity",
            "Access Modes",
            "Reclaim Policy",
            "Status",
            "Claim",
            "StorageClass",
            "VolumeAttributesClass",
            "Reason",
            "Age",
            "VolumeMode"
        ]
    );
    let cells = t["rows"][0]["cells"].as_array().unwrap();
    assert_eq!(
        cells[..6],
        json!(["pv-1", "10Gi", "RWO", "Retain", "Bound", "default/data"])
            .as_array()
            .unwrap()[..]
    );
    let t: Value = client
        .request(table("/api/v1/namespaces/default/persistentvolumeclaims"))
        .await
        .unwrap();
    let cells = t["rows"][0]["cells"].as_array().unwrap();
    assert_eq!(
        cells[..6],
        json!(["data", "Bound", "pv-1", "10Gi", "RWO", "local"])
            .as_array()
            .unwrap()[..]
    );
}

#[tokio::test]
async fn claim_status_is_written_through_status_only_and_a_deleted_volume_leaves_its_claim_lost() {
    let (_s, client) = setup();
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pvcs: Api<PersistentVolumeClaim> = Api::default_namespaced(client);
    pvcs.create(
        &PostParams::default(),
        &pvc("data", json!({"volumeName": "pv-1"})),
    )
    .await
    .unwrap();
    // The main resource ignores status; `/status` writes it.
    let c = pvcs
        .patch(
            "data",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Bound"}})),
        )
        .await
        .unwrap();
    assert_eq!(phase_of_pvc(&c), "Pending");
    let c = pvcs
        .patch_status(
            "data",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Lost"}})),
        )
        .await
        .unwrap();
    assert_eq!(phase_of_pvc(&c), "Lost");

    pvs.create(&PostParams::default(), &pv("pv-1", json!({})))
        .await
        .unwrap();
    assert_eq!(phase_of_pvc(&pvcs.get("data").await.unwrap()), "Bound");
    pvs.delete("pv-1", &DeleteParams::default()).await.unwrap();
    assert_eq!(phase_of_pvc(&pvcs.get("data").await.unwrap()), "Lost");
}
