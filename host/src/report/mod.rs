//! Self-contained HTML reports of a `simulate` or `bench` run: one file, no network. The run's
//! data is embedded as JSON and drawn by a small script of our own (inline SVG charts, search
//! and pagination so a 5000-node cluster stays usable).
//!
//! - [`simulation_html`]: nodes and their use, DRA devices and their claims, pending pods by
//!   reason, the bind timeline and the attempt-latency histogram;
//! - [`bench_html`]: per run, pods/s (over time when sampled) and attempt latency.

use serde::Serialize;

use crate::bench::RunResult;
use crate::simulate::SimulationReport;

const STYLE: &str = include_str!("report.css");
const SCRIPT: &str = include_str!("report.js");

/// The page for a simulation.
pub fn simulation_html(report: &SimulationReport) -> String {
    page("wasm-scheduler simulate", "simulate", report)
}

/// The page for benchmark results.
pub fn bench_html(results: &[RunResult], command: &str) -> String {
    #[derive(Serialize)]
    struct Bench<'a> {
        command: &'a str,
        runs: &'a [RunResult],
    }
    page(
        "wasm-scheduler bench",
        "bench",
        &Bench {
            command,
            runs: results,
        },
    )
}

fn page(title: &str, kind: &str, data: &impl Serialize) -> String {
    // `</` inside the JSON would end the script element early.
    let json = serde_json::to_string(data)
        .unwrap_or_else(|_| "null".into())
        .replace("</", "<\\/");
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{STYLE}</style>
</head>
<body data-kind="{kind}">
<header><h1>{title}</h1><div id="subtitle"></div></header>
<div id="errors" hidden></div>
<main id="app"><p>Loading…</p></main>
<script id="data" type="application/json">{json}</script>
<script>{SCRIPT}</script>
</body>
</html>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closing_script_tag_in_the_data_cannot_end_the_script() {
        let html = page(
            "t",
            "simulate",
            &serde_json::json!({"reason": "</script><b>"}),
        );
        assert!(!html.contains("</script><b>"));
        assert!(html.contains("<\\/script><b>"));
    }
}
