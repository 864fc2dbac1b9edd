//! The `wasm-scheduler` binary as a user runs it: help, version, usage errors, and `simulate`
//! ending by itself, keeping its results on a timeout, and its output formats.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wasm-scheduler"));
    c.env_remove("RUST_LOG");
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("the binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The workspace's target directory (`CARGO_TARGET_DIR` or `<workspace>/target`).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A test plugin built by `scripts/setup`.
fn wasm_file(name: &str) -> PathBuf {
    let p = target_dir().join(format!("wasm32-wasip2/plugin/{name}.wasm"));
    assert!(p.is_file(), "{} is missing: run scripts/setup", p.display());
    p
}

const NODE: &str = "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\nstatus:\n  capacity: {cpu: \"32\", memory: 64Gi, pods: \"110\"}\n  allocatable: {cpu: \"32\", memory: 64Gi, pods: \"110\"}\n---\n";

fn pod(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default}}\nspec: {{containers: [{{name: c, image: busybox, resources: {{requests: {{cpu: 100m, memory: 64Mi}}}}}}]}}\n---\n"
    )
}

/// A directory with a manifest (one node, `evil-1` and three good pods) and a configuration
/// that runs the hostile test plugin in `mode` with `call_ms` as the call deadline.
fn hostile_setup(mode: &str, call_ms: u64) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("cluster.yaml");
    let mut yaml = NODE.to_string();
    yaml.push_str(&pod("evil-1"));
    for i in 0..3 {
        yaml.push_str(&pod(&format!("good-{i}")));
    }
    std::fs::write(&manifest, yaml).unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            r#"apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
  - schedulerName: default-scheduler
    plugins:
      multiPoint:
        enabled: [{{name: Hostile}}]
    pluginConfig:
      - name: Hostile
        args: {{mode: {mode}}}
wasmPlugins:
  - name: Hostile
    path: {}
wasmRuntime: {{callTimeoutMs: {call_ms}, memoryLimitBytes: 33554432}}
"#,
            wasm_file("hostile_plugin").display()
        ),
    )
    .unwrap();
    (dir, manifest, config)
}

#[test]
fn every_subcommand_prints_its_help_and_exits_zero() {
    for args in [
        vec!["--help"],
        vec!["simulate", "--help"],
        vec!["run", "--help"],
        vec!["serve", "--help"],
        vec!["bench", "--help"],
        vec!["help", "simulate"],
    ] {
        let out = run(&args);
        assert!(out.status.success(), "{args:?}: {:?}", out.status);
        assert!(
            text(&out.stdout).contains("--"),
            "{args:?} printed no options: {}",
            text(&out.stdout)
        );
    }
}

#[test]
fn version_names_the_supported_wit_versions() {
    let out = run(&["--version"]);
    assert!(out.status.success());
    let v = text(&out.stdout);
    assert!(v.contains(env!("CARGO_PKG_VERSION")), "{v}");
    assert!(v.contains("kube-scheduler:plugin@0.1.0"), "{v}");
}

#[test]
fn an_unknown_flag_is_one_line_on_stderr_and_a_non_zero_exit() {
    for args in [
        vec!["simulate", "--nope", "x.yaml"],
        vec!["bench", "--nope"],
        vec!["frobnicate"],
    ] {
        let out = run(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = text(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
    }
}

#[test]
fn a_missing_manifest_is_one_line_on_stderr_and_a_non_zero_exit() {
    let out = run(&["simulate", "/nonexistent/cluster.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim_end(),
        "error: manifest /nonexistent/cluster.yaml does not exist"
    );
}

#[test]
fn simulate_ends_by_itself_when_a_plugin_always_errors() {
    // Reserve traps for evil-1 on every attempt: an error, so the pod backs off and is retried
    // for ever; simulate must see that nothing changes and stop long before the timeout.
    let (dir, manifest, config) = hostile_setup("trap", 1000);
    let output = dir.path().join("out.yaml");
    let out = run(&[
        "simulate",
        manifest.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--timeout",
        "10m",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("4 pods: 3 bound, 1 not bound"), "{stdout}");
    assert!(stdout.contains("settled after"), "{stdout}");
    assert!(
        stdout.contains("still retrying (failing the same way each time): default/evil-1"),
        "{stdout}"
    );
    assert!(std::fs::read_to_string(output).unwrap().contains("evil-1"));
}

#[test]
fn a_timeout_still_writes_the_output_and_the_summary() {
    // Filter never returns for evil-1 and the call deadline is far away: only --timeout ends
    // the run, and the results at that point must still be written.
    let (dir, manifest, config) = hostile_setup("loop", 600_000);
    let output = dir.path().join("out.yaml");
    let report = dir.path().join("report.html");
    let out = run(&[
        "simulate",
        manifest.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
        "--timeout",
        "2s",
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("timed out after"), "{stdout}");
    assert!(stderr.contains("still busy after 2s"), "{stderr}");
    let yaml = std::fs::read_to_string(&output).unwrap();
    assert_eq!(yaml.matches("kind: Pod").count(), 4, "{yaml}");
    assert!(std::fs::read_to_string(&report).unwrap().contains("evil-1"));
}

#[test]
fn simulate_prints_json_and_yaml_for_scripts() {
    let example = workspace().join("examples/basic-cluster.yaml");
    let out = run(&[
        "simulate",
        example.to_str().unwrap(),
        "--output-format",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 10);
    assert_eq!(v["ending"], "settled");
    // Six fit (one of them by spec.nodeName), four do not (see the example's comments).
    let bound = rows.iter().filter(|r| r["node"].is_string()).count();
    assert_eq!(bound, 6, "{v}");
    // Every pod this scheduler bound has a bind time within the run.
    let elapsed = v["elapsedSeconds"].as_f64().unwrap();
    for r in rows
        .iter()
        .filter(|r| r["node"].is_string() && r["attempts"].as_u64() > Some(0))
    {
        let t = r["boundAfterSeconds"].as_f64().expect("a bind time");
        assert!(t > 0.0 && t <= elapsed, "{r}");
    }

    let out = run(&[
        "simulate",
        example.to_str().unwrap(),
        "--output-format",
        "yaml",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let y: serde_json::Value = serde_yaml_ng::from_slice(&out.stdout).expect("stdout is YAML");
    assert_eq!(y["rows"].as_array().unwrap().len(), 10);
}

/// Whether the process has a handler for SIGINT (bit 2 of `SigCgt` in /proc/PID/status).
fn catches_sigint(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (2 - 1)) != 0)
}

#[cfg(target_os = "linux")]
#[test]
fn ctrl_c_still_writes_the_output_and_the_summary() {
    let (dir, manifest, config) = hostile_setup("loop", 600_000);
    let output = dir.path().join("out.yaml");
    let child = bin()
        .args(["simulate", manifest.to_str().unwrap(), "--config"])
        .arg(&config)
        .arg("--output")
        .arg(&output)
        .args(["--timeout", "10m"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Signal only once the handler is installed, else SIGINT would just kill the process.
    while !catches_sigint(child.id()) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("interrupted after"), "{stdout}");
    assert!(stderr.contains("error: interrupted"), "{stderr}");
    let yaml = std::fs::read_to_string(&output).unwrap();
    assert_eq!(yaml.matches("kind: Pod").count(), 4, "{yaml}");
}
