//! DeviceTaintRules (resource.k8s.io/v1beta2, KEP-5055): discovery next to resource.k8s.io/v1,
//! defaults, validation, generation, the status subresource.

use super::*;
use k8s_openapi::api::resource::v1beta2::DeviceTaintRule;

fn rule(name: &str, taint: Value) -> DeviceTaintRule {
    serde_json::from_value(json!({
        "apiVersion": "resource.k8s.io/v1beta2", "kind": "DeviceTaintRule",
        "metadata": {"name": name},
        "spec": {"deviceSelector": {"driver": "gpu.example.com", "pool": "node-a", "device": "gpu-0"},
                 "taint": taint}
    }))
    .unwrap()
}

async fn get_json(client: &kube::Client, path: &str) -> Value {
    let req = http::Request::get(path)
        .header("accept", "application/json")
        .body(Vec::new())
        .unwrap();
    client.request(req).await.unwrap()
}

#[tokio::test]
async fn resource_k8s_io_serves_v1_preferred_and_v1beta2_for_device_taint_rules() {
    let (_s, client) = setup();
    let group = get_json(&client, "/apis/resource.k8s.io").await;
    assert_eq!(
        group["versions"],
        json!([{"groupVersion": "resource.k8s.io/v1", "version": "v1"},
               {"groupVersion": "resource.k8s.io/v1beta2", "version": "v1beta2"}])
    );
    assert_eq!(group["preferredVersion"]["version"], "v1");
    let list = get_json(&client, "/apis/resource.k8s.io/v1beta2").await;
    let names: Vec<&str> = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["devicetaintrules", "devicetaintrules/status"]);
    assert_eq!(list["resources"][0]["namespaced"], false);
    let req = http::Request::get("/apis")
        .header(
            "accept",
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
        )
        .body(Vec::new())
        .unwrap();
    let v2: Value = client.request(req).await.unwrap();
    let resource = v2["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["metadata"]["name"] == "resource.k8s.io")
        .unwrap();
    let versions: Vec<&str> = resource["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["v1", "v1beta2"]);
    assert_eq!(resource["versions"][1]["resources"][0]["scope"], "Cluster");
}

#[tokio::test]
async fn a_rule_gets_generation_time_added_and_an_empty_status() {
    let (_s, client) = setup();
    let rules: Api<DeviceTaintRule> = Api::all(client);
    let mut r = rule(
        "broken-gpu",
        json!({"key": "example.com/broken", "effect": "NoSchedule"}),
    );
    r.status = Some(Default::default());
    let created = rules.create(&PostParams::default(), &r).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(
        created.spec.taint.time_added.is_some(),
        "timeAdded defaulted"
    );
    assert_eq!(created.status, Some(Default::default()));
    // A label change keeps the generation; a new effect bumps it and timeAdded.
    let labelled = rules
        .patch(
            "broken-gpu",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(labelled.metadata.generation, Some(1));
    let changed = rules
        .patch(
            "broken-gpu",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"taint": {"effect": "None", "timeAdded": "2020-01-01T00:00:00Z"}}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(changed.metadata.generation, Some(2));
    assert_eq!(
        serde_json::to_value(changed.spec.taint.time_added.unwrap()).unwrap(),
        "2020-01-01T00:00:00Z",
        "a timeAdded the client changed is kept"
    );
    let again = rules
        .patch(
            "broken-gpu",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"taint": {"effect": "NoExecute"}}})),
        )
        .await
        .unwrap();
    assert_ne!(
        serde_json::to_value(again.spec.taint.time_added.unwrap()).unwrap(),
        "2020-01-01T00:00:00Z",
        "a new effect with the old timeAdded gets the current time"
    );
}

#[tokio::test]
async fn invalid_rules_are_refused_as_v1_36_words_them() {
    let (_s, client) = setup();
    let rules: Api<DeviceTaintRule> = Api::all(client);
    let err = rules
        .create(
            &PostParams::default(),
            &rule(
                "bad",
                json!({"key": "example.com/broken", "effect": "PreferNoSchedule"}),
            ),
        )
        .await
        .unwrap_err();
    let st = status(err);
    assert_eq!(st.code, 422);
    assert_eq!(
        st.message,
        "DeviceTaintRule.resource.k8s.io \"bad\" is invalid: spec.taint.effect: Unsupported value: \"PreferNoSchedule\": supported values: \"NoExecute\", \"NoSchedule\", \"None\""
    );
    let mut r = rule("bad-driver", json!({"key": "k", "effect": "NoSchedule"}));
    r.spec.device_selector.as_mut().unwrap().driver = Some("Not_A_Driver".into());
    let st = status(rules.create(&PostParams::default(), &r).await.unwrap_err());
    assert!(
        st.message
            .contains("spec.deviceSelector.driver: Invalid value: \"Not_A_Driver\""),
        "{}",
        st.message
    );
}

#[tokio::test]
async fn status_is_written_only_through_the_status_subresource() {
    let (_s, client) = setup();
    let rules: Api<DeviceTaintRule> = Api::all(client);
    rules
        .create(
            &PostParams::default(),
            &rule("r", json!({"key": "k", "effect": "NoExecute"})),
        )
        .await
        .unwrap();
    let cond = json!({"type": "EvictionInProgress", "status": "False", "reason": "NoPods",
                      "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"});
    let main = rules
        .patch(
            "r",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [cond.clone()]}})),
        )
        .await
        .unwrap();
    assert_eq!(main.status, Some(Default::default()));
    let st = rules
        .patch_status(
            "r",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [cond]}})),
        )
        .await
        .unwrap();
    assert_eq!(st.status.unwrap().conditions.unwrap().len(), 1);
}
