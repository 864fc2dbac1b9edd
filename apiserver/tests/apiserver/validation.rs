//! Every validation rule of the issue, one failing case each (references 23, 24, 27, 29, 35, 36, 60).

use super::*;
use k8s_openapi::api::resource::v1::{DeviceClass, ResourceSlice};
use kube::api::DeleteParams;

fn entry(name: &str, uid: &str) -> Value {
    json!({"resource": "pods", "name": name, "uid": uid})
}

async fn expect_invalid(r: Result<impl std::fmt::Debug, kube::Error>) -> kube::core::Status {
    let st = status(r.unwrap_err());
    assert_eq!(
        (st.code, st.reason.as_str()),
        (422, "Invalid"),
        "{}",
        st.message
    );
    st
}

#[tokio::test]
async fn reserved_for_needs_an_allocation() {
    let (_s, client) = setup();
    let claims: Api<ResourceClaim> = Api::default_namespaced(client);
    claims
        .create(&PostParams::default(), &claim("c"))
        .await
        .unwrap();
    let st = expect_invalid(
        claims
            .patch_status(
                "c",
                &PatchParams::default(),
                &Patch::Strategic(json!({"status": {"reservedFor": [entry("web", "1")]}})),
            )
            .await,
    )
    .await;
    assert_eq!(
        st.message,
        "ResourceClaim.resource.k8s.io \"c\" is invalid: status.reservedFor: Forbidden: may not be specified when `allocated` is not set"
    );
}

#[tokio::test]
async fn allocation_is_immutable_once_set() {
    let (_s, client) = setup();
    let claims: Api<ResourceClaim> = Api::default_namespaced(client.clone());
    allocated_claim(&client, "c").await;
    let mut other = allocation();
    other["devices"]["results"][0]["device"] = "gpu-1".into();
    let st = expect_invalid(
        claims
            .patch_status(
                "c",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"allocation": other}})),
            )
            .await,
    )
    .await;
    assert!(st.message.starts_with(
        "ResourceClaim.resource.k8s.io \"c\" is invalid: status.allocation: Invalid value: "
    ));
    assert!(st.message.ends_with(": field is immutable"));
}

#[tokio::test]
async fn reserved_for_uids_are_unique() {
    let (_s, client) = setup();
    let claims: Api<ResourceClaim> = Api::default_namespaced(client.clone());
    allocated_claim(&client, "c").await;
    let st = expect_invalid(
        claims
            .patch_status("c", &PatchParams::default(), &Patch::Merge(json!({"status": {"reservedFor": [entry("web", "u1"), entry("web-again", "u1")]}})))
            .await,
    )
    .await;
    assert_eq!(
        st.message,
        "ResourceClaim.resource.k8s.io \"c\" is invalid: status.reservedFor[1]: Duplicate value: \"u1\""
    );
}

#[tokio::test]
async fn reserved_for_has_at_most_256_entries() {
    let (_s, client) = setup();
    let claims: Api<ResourceClaim> = Api::default_namespaced(client.clone());
    allocated_claim(&client, "c").await;
    let many = |n: usize| json!({"status": {"reservedFor": (0..n).map(|i| entry(&format!("p-{i}"), &format!("uid-{i}"))).collect::<Vec<_>>()}});
    let st = expect_invalid(
        claims
            .patch_status("c", &PatchParams::default(), &Patch::Merge(many(257)))
            .await,
    )
    .await;
    assert_eq!(
        st.message,
        "ResourceClaim.resource.k8s.io \"c\" is invalid: status.reservedFor: Too many: 257: must have at most 256 items"
    );
    claims
        .patch_status("c", &PatchParams::default(), &Patch::Merge(many(256)))
        .await
        .unwrap();
}

#[tokio::test]
async fn reserved_for_entries_need_resource_name_and_uid() {
    let (_s, client) = setup();
    let claims: Api<ResourceClaim> = Api::default_namespaced(client.clone());
    allocated_claim(&client, "c").await;
    let st = expect_invalid(
        claims
            .patch_status(
                "c",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"status": {"reservedFor": [{"resource": "", "apiGroup": "Bad Group"}]}}),
                ),
            )
            .await,
    )
    .await;
    assert_eq!(
        st.message,
        "ResourceClaim.resource.k8s.io \"c\" is invalid: [status.reservedFor[0].resource: Required value, status.reservedFor[0].name: Required value, status.reservedFor[0].uid: Required value]"
    );
    assert_eq!(st.details.unwrap().causes.len(), 3);
}

#[tokio::test]
async fn allocation_results_must_name_a_request() {
    let (_s, client) = setup();
    let claims: Api<ResourceClaim> = Api::default_namespaced(client);
    claims
        .create(&PostParams::default(), &claim("c"))
        .await
        .unwrap();
    let mut a = allocation();
    a["devices"]["results"][0]["request"] = "nope".into();
    let st = expect_invalid(
        claims
            .patch_status(
                "c",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"allocation": a}})),
            )
            .await,
    )
    .await;
    assert_eq!(
        st.message,
        "ResourceClaim.resource.k8s.io \"c\" is invalid: status.allocation.devices.results[0].request: Invalid value: \"nope\": must be the name of a request in the claim or the name of a request and a subrequest separated by '/'"
    );
}

#[tokio::test]
async fn no_new_reservations_or_finalizers_while_deleting() {
    let (_s, client) = setup();
    let claims: Api<ResourceClaim> = Api::default_namespaced(client.clone());
    let mut c = claim("finalized");
    c.metadata.finalizers = Some(vec!["example.com/protect".into()]);
    claims.create(&PostParams::default(), &c).await.unwrap();
    claims
        .patch_status(
            "finalized",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"allocation": allocation()}})),
        )
        .await
        .unwrap();
    claims
        .delete("finalized", &DeleteParams::default())
        .await
        .unwrap();
    let st = expect_invalid(
        claims
            .patch_status(
                "finalized",
                &PatchParams::default(),
                &Patch::Strategic(json!({"status": {"reservedFor": [entry("web", "1")]}})),
            )
            .await,
    )
    .await;
    assert!(st.message.ends_with("status.reservedFor: Forbidden: new entries may not be added while `deallocationRequested` or `deletionTimestamp` are set"));
    let st = expect_invalid(
        claims
            .patch("finalized", &PatchParams::default(), &Patch::Strategic(json!({"metadata": {"finalizers": ["resource.kubernetes.io/delete-protection"]}})))
            .await,
    )
    .await;
    assert!(st.message.ends_with(
        "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"resource.kubernetes.io/delete-protection\"}"
    ));
}

#[tokio::test]
async fn a_wrong_uid_in_a_patch_is_an_immutable_field() {
    let (_s, client) = setup();
    let claims: Api<ResourceClaim> = Api::default_namespaced(client.clone());
    allocated_claim(&client, "c").await;
    let patch = json!({"metadata": {"uid": "00000000-0000-0000-0000-00000000dead"}, "status": {"reservedFor": [entry("web", "1")]}});
    let st = expect_invalid(
        claims
            .patch_status("c", &PatchParams::default(), &Patch::Strategic(patch))
            .await,
    )
    .await;
    assert_eq!(
        st.message,
        "ResourceClaim.resource.k8s.io \"c\" is invalid: metadata.uid: Invalid value: \"00000000-0000-0000-0000-00000000dead\": field is immutable"
    );
    // The real server reports this cause twice.
    assert_eq!(st.details.unwrap().causes.len(), 2);
}

#[tokio::test]
async fn the_name_is_immutable() {
    let (_s, client) = setup();
    let claims: Api<ResourceClaim> = Api::default_namespaced(client);
    claims
        .create(&PostParams::default(), &claim("c"))
        .await
        .unwrap();
    let st = expect_invalid(
        claims
            .patch(
                "c",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"name": "d"}})),
            )
            .await,
    )
    .await;
    assert!(
        st.message
            .contains("metadata.name: Invalid value: \"d\": field is immutable"),
        "{}",
        st.message
    );
}

#[tokio::test]
async fn claim_spec_is_immutable() {
    let (_s, client) = setup();
    let claims: Api<ResourceClaim> = Api::default_namespaced(client);
    claims
        .create(&PostParams::default(), &claim("c"))
        .await
        .unwrap();
    let patch = json!({"spec": {"devices": {"requests": [{"name": "gpu", "exactly": {"deviceClassName": "gpu.example.com", "count": 5}}]}}});
    let st = expect_invalid(
        claims
            .patch("c", &PatchParams::default(), &Patch::Merge(patch))
            .await,
    )
    .await;
    assert!(
        st.message
            .starts_with("ResourceClaim.resource.k8s.io \"c\" is invalid: spec: Invalid value: ")
    );
    assert!(st.message.ends_with("field is immutable"));
}

#[tokio::test]
async fn finalizer_names_must_be_qualified() {
    let (_s, client) = setup();
    let claims: Api<ResourceClaim> = Api::default_namespaced(client);
    claims
        .create(&PostParams::default(), &claim("c"))
        .await
        .unwrap();
    let st = expect_invalid(
        claims
            .patch(
                "c",
                &PatchParams::default(),
                &Patch::Strategic(json!({"metadata": {"finalizers": ["no-domain"]}})),
            )
            .await,
    )
    .await;
    assert_eq!(
        st.message,
        "ResourceClaim.resource.k8s.io \"c\" is invalid: metadata.finalizers[0]: Invalid value: \"no-domain\": name is neither a standard finalizer name nor is it fully qualified"
    );
}

#[tokio::test]
async fn device_class_cel_selectors_must_compile() {
    let (_s, client) = setup();
    let classes: Api<DeviceClass> = Api::all(client);
    let class = |name: &str, expr: &str| -> DeviceClass {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"selectors": [{"cel": {"expression": expr}}]}})).unwrap()
    };
    classes
        .create(
            &PostParams::default(),
            &class("ok", "device.driver == \"gpu.example.com\""),
        )
        .await
        .unwrap();
    let st = expect_invalid(
        classes
            .create(
                &PostParams::default(),
                &class("bad-syntax", "device.driver == \"gpu.example.com"),
            )
            .await,
    )
    .await;
    assert!(st.message.contains("spec.selectors[0].cel.expression: Invalid value: \"device.driver == \\\"gpu.example.com\": compilation failed: ERROR: <input>:1:"), "{}", st.message);
    let st = expect_invalid(
        classes
            .create(&PostParams::default(), &class("not-bool", "device.driver"))
            .await,
    )
    .await;
    assert!(
        st.message
            .ends_with("must evaluate to bool or the unknown type, not string")
    );
}

#[tokio::test]
async fn resource_slice_attribute_names_must_be_c_identifiers() {
    let (_s, client) = setup();
    let slices: Api<ResourceSlice> = Api::all(client);
    let slice: ResourceSlice = serde_json::from_value(json!({
        "metadata": {"name": "bad-slice"},
        "spec": {"driver": "gpu.example.com", "nodeName": "node-a", "pool": {"name": "node-a", "generation": 1, "resourceSliceCount": 1},
                 "devices": [{"name": "gpu-9", "attributes": {"gpu.example.com/mig-capable": {"bool": true}}}]}
    }))
    .unwrap();
    let st = expect_invalid(slices.create(&PostParams::default(), &slice).await).await;
    assert!(st.message.starts_with(
        "ResourceSlice.resource.k8s.io \"bad-slice\" is invalid: spec.devices[0].attributes: Invalid value: \"mig-capable\": a valid C identifier"
    ));
}

#[tokio::test]
async fn an_invalid_patch_result_changes_nothing() {
    let (_s, client) = setup();
    let claims: Api<ResourceClaim> = Api::default_namespaced(client.clone());
    let before = allocated_claim(&client, "c").await;
    let patch = json!({"status": {"reservedFor": [entry("a", "1"), entry("b", "1")]}});
    expect_invalid(
        claims
            .patch_status("c", &PatchParams::default(), &Patch::Merge(patch))
            .await,
    )
    .await;
    assert_eq!(
        claims.get("c").await.unwrap().metadata.resource_version,
        before.metadata.resource_version
    );
}

fn slice_with(name: &str, spec_extra: serde_json::Value) -> ResourceSlice {
    let mut spec = json!({"driver": "gpu.example.com", "nodeName": "node-a",
                          "pool": {"name": "node-a", "generation": 1, "resourceSliceCount": 2}});
    spec.as_object_mut()
        .unwrap()
        .extend(spec_extra.as_object().unwrap().clone());
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

#[tokio::test]
async fn resource_slice_counters_and_their_consumers_are_in_separate_slices() {
    let (_s, client) = setup();
    let slices: Api<ResourceSlice> = Api::all(client);
    let counters = json!([{"name": "gpu-0", "counters": {"memory": {"value": "80Gi"}}}]);
    let consumes = json!([{"counterSet": "gpu-0", "counters": {"memory": {"value": "40Gi"}}}]);
    slices
        .create(
            &PostParams::default(),
            &slice_with("counters", json!({"sharedCounters": counters})),
        )
        .await
        .expect("a counter-only slice is valid");
    slices
        .create(
            &PostParams::default(),
            &slice_with(
                "devices",
                json!({"devices": [{"name": "gpu-0-half-0", "consumesCounters": consumes}]}),
            ),
        )
        .await
        .expect("devices consuming a counter set of another slice are valid");
    let both = slice_with(
        "both",
        json!({"sharedCounters": counters, "devices": [{"name": "gpu-0-half-1", "consumesCounters": consumes}]}),
    );
    let st = expect_invalid(slices.create(&PostParams::default(), &both).await).await;
    assert_eq!(
        st.message,
        "ResourceSlice.resource.k8s.io \"both\" is invalid: spec: Invalid value: \"\": only one of `sharedCounters` or `devices` is allowed"
    );
}

#[tokio::test]
async fn resource_slice_counter_sets_are_unique_and_consumptions_at_most_two() {
    let (_s, client) = setup();
    let slices: Api<ResourceSlice> = Api::all(client);
    let set = json!({"name": "gpu-0", "counters": {"memory": {"value": "80Gi"}}});
    let st = expect_invalid(
        slices
            .create(
                &PostParams::default(),
                &slice_with("dup", json!({"sharedCounters": [set, set]})),
            )
            .await,
    )
    .await;
    assert_eq!(
        st.message,
        "ResourceSlice.resource.k8s.io \"dup\" is invalid: spec.sharedCounters[1]: Duplicate value: \"gpu-0\""
    );
    let c = |set: &str| json!({"counterSet": set, "counters": {"memory": {"value": "1Gi"}}});
    let st = expect_invalid(
        slices
            .create(
                &PostParams::default(),
                &slice_with("many", json!({"devices": [{"name": "gpu-0", "consumesCounters": [c("a"), c("b"), c("c")]}]})),
            )
            .await,
    )
    .await;
    assert_eq!(
        st.message,
        "ResourceSlice.resource.k8s.io \"many\" is invalid: spec.devices[0].consumesCounters: Too many: 3: must have at most 2 items"
    );
    let st = expect_invalid(
        slices
            .create(
                &PostParams::default(),
                &slice_with(
                    "empty",
                    json!({"sharedCounters": [{"name": "Bad_Name", "counters": {}}]}),
                ),
            )
            .await,
    )
    .await;
    assert!(
        st.message
            .contains("spec.sharedCounters[0].counters: Required value"),
        "{}",
        st.message
    );
    assert!(
        st.message
            .contains("spec.sharedCounters[0].name: Invalid value: \"Bad_Name\""),
        "{}",
        st.message
    );
}

#[tokio::test]
async fn resource_slice_request_policies_need_shared_devices_and_valid_defaults() {
    let (_s, client) = setup();
    let slices: Api<ResourceSlice> = Api::all(client);
    let nic = |multi: bool, policy: serde_json::Value| {
        json!({"devices": [{"name": "nic-0", "allowMultipleAllocations": multi,
            "capacity": {"bandwidth": {"value": "10G", "requestPolicy": policy}}}]})
    };
    let range = json!({"default": "1G", "validRange": {"min": "1G", "max": "8G", "step": "1G"}});
    slices
        .create(
            &PostParams::default(),
            &slice_with("ok", nic(true, range.clone())),
        )
        .await
        .expect("a valid policy on a shared device");
    let st = expect_invalid(
        slices
            .create(
                &PostParams::default(),
                &slice_with("single", nic(false, range)),
            )
            .await,
    )
    .await;
    assert!(
        st.message
            .contains("requestPolicy: Forbidden: allowMultipleAllocations must be true"),
        "{}",
        st.message
    );
    let bad = json!({"default": "9G", "validRange": {"min": "1G", "max": "8G"}});
    let st = expect_invalid(
        slices
            .create(&PostParams::default(), &slice_with("bad", nic(true, bad)))
            .await,
    )
    .await;
    assert!(
        st.message.contains("default is more than max: 8G"),
        "{}",
        st.message
    );
}

#[tokio::test]
async fn resource_slice_binding_conditions_come_with_failure_conditions_and_do_not_overlap() {
    let (_s, client) = setup();
    let slices: Api<ResourceSlice> = Api::all(client);
    let dev = |conds: serde_json::Value, failures: serde_json::Value| {
        json!({"devices": [{"name": "fabric-0", "bindsToNode": true,
            "bindingConditions": conds, "bindingFailureConditions": failures}]})
    };
    slices
        .create(
            &PostParams::default(),
            &slice_with(
                "ok",
                dev(
                    json!(["example.com/attached"]),
                    json!(["example.com/failed"]),
                ),
            ),
        )
        .await
        .expect("binding and failure conditions");
    let st = expect_invalid(
        slices
            .create(
                &PostParams::default(),
                &slice_with("alone", dev(json!(["example.com/attached"]), json!([]))),
            )
            .await,
    )
    .await;
    assert_eq!(
        st.message,
        "ResourceSlice.resource.k8s.io \"alone\" is invalid: spec.devices[0].bindingFailureConditions: Invalid value: []: bindingFailureConditions are required to use bindingConditions"
    );
    let st = expect_invalid(
        slices
            .create(
                &PostParams::default(),
                &slice_with(
                    "overlap",
                    dev(json!(["a", "b", "c", "d", "e"]), json!(["a"])),
                ),
            )
            .await,
    )
    .await;
    assert!(
        st.message
            .contains("spec.devices[0].bindingConditions: Too many: 5: must have at most 4 items"),
        "{}",
        st.message
    );
    assert!(
        st.message.contains("spec.devices[0].bindingFailureConditions[0]: Invalid value: \"a\": bindingFailureConditions must not overlap with bindingConditions"),
        "{}",
        st.message
    );
}

#[tokio::test]
async fn device_status_names_allocated_devices_with_at_most_eight_conditions() {
    let (_s, client) = setup();
    let claims: Api<ResourceClaim> = Api::default_namespaced(client.clone());
    allocated_claim(&client, "c").await;
    let cond = |t: &str| {
        json!({"type": t, "status": "True", "reason": "R", "message": "",
                               "lastTransitionTime": "2026-01-01T00:00:00Z"})
    };
    let device = |name: &str, conditions: Vec<Value>| {
        json!({"status": {"devices": [{"driver": "gpu.example.com", "pool": "node-a",
                                       "device": name, "conditions": conditions}]}})
    };
    claims
        .patch_status(
            "c",
            &PatchParams::default(),
            &Patch::Merge(device("gpu-0", vec![cond("ready")])),
        )
        .await
        .expect("a condition of an allocated device");
    let st = expect_invalid(
        claims
            .patch_status(
                "c",
                &PatchParams::default(),
                &Patch::Merge(device("gpu-9", vec![])),
            )
            .await,
    )
    .await;
    assert!(
        st.message.contains("status.devices[0]: Invalid value:")
            && st
                .message
                .contains("must be an allocated device in the claim"),
        "{}",
        st.message
    );
    let many = (0..9).map(|i| cond(&format!("c{i}"))).collect();
    let st = expect_invalid(
        claims
            .patch_status(
                "c",
                &PatchParams::default(),
                &Patch::Merge(device("gpu-0", many)),
            )
            .await,
    )
    .await;
    assert!(
        st.message
            .contains("status.devices[0].conditions: Too many: 9: must have at most 8 items"),
        "{}",
        st.message
    );
    // Deallocation clears the device status with the allocation.
    claims
        .patch_status(
            "c",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"allocation": null, "devices": null}})),
        )
        .await
        .expect("deallocate");
}
