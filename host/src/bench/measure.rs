//! What a run measures besides its duration: quantiles of the engine's
//! `scheduler_scheduling_attempt_duration_seconds` histogram, time per extension point from
//! `scheduler_plugin_execution_duration_seconds`, peak RSS, and CPU time per thread.

use std::collections::BTreeMap;

use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;

/// Latency quantiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    /// Observations.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
}

/// Time one plugin spent at one extension point, over the cycles the engine sampled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointTime {
    /// Extension point, e.g. `Filter`.
    pub point: String,
    /// Plugin.
    pub plugin: String,
    /// Calls recorded (sampled cycles only).
    pub calls: u64,
    /// Seconds recorded.
    pub seconds: f64,
}

/// One sample of a metric line: name, labels, value.
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses Prometheus text lines `name{k="v",...} value` (comments skipped).
fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|line| {
            let (head, value) = line.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let (name, labels) = match head.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}')?),
                None => (head, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|kv| !kv.is_empty())
                .filter_map(|kv| {
                    let (k, v) = kv.split_once("=\"")?;
                    Some((k.to_string(), v.trim_end_matches('"').to_string()))
                })
                .collect();
            Some(Sample {
                name: name.to_string(),
                labels,
                value,
            })
        })
        .collect()
}

/// Encodes just the two histograms the report reads.
fn encode(metrics: &Metrics) -> String {
    let mut r = Registry::default();
    r.register("attempt", "", metrics.attempt_duration.clone());
    r.register("plugin", "", metrics.plugin_duration.clone());
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &r);
    out
}

/// Forgets every attempt and plugin duration recorded so far (before the measured phase).
pub fn reset(metrics: &Metrics) {
    metrics.attempt_duration.clear();
    metrics.plugin_duration.clear();
}

/// The quantile of cumulative `(upper bound, count)` buckets, as PromQL `histogram_quantile`:
/// linear interpolation inside the bucket; the highest finite bound if it falls in `+Inf`.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> f64 {
    let Some(&(_, total)) = buckets.last() else {
        return 0.0;
    };
    if total <= 0.0 {
        return 0.0;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(upper, count) in buckets {
        if count >= rank {
            if upper.is_infinite() {
                return lower;
            }
            let inside = count - below;
            return if inside <= 0.0 {
                upper
            } else {
                lower + (upper - lower) * (rank - below) / inside
            };
        }
        (lower, below) = (upper, count);
    }
    lower
}

/// Attempt latency quantiles over every result (`scheduled`, `unschedulable`, `error`), and the
/// attempt count per result.
pub fn attempt_quantiles(metrics: &Metrics) -> (Quantiles, BTreeMap<String, u64>) {
    let samples = parse(&encode(metrics));
    let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    let mut by_result = BTreeMap::new();
    for s in samples.iter().filter(|s| s.name.starts_with("attempt")) {
        if s.name == "attempt_bucket" {
            let le = s.labels.get("le").map(String::as_str).unwrap_or("+Inf");
            let upper = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or(f64::INFINITY)
            };
            buckets.entry(upper.to_bits()).or_insert((upper, 0.0)).1 += s.value;
        } else if s.name == "attempt_count" {
            let result = s.labels.get("result").cloned().unwrap_or_default();
            *by_result.entry(result).or_insert(0) += s.value as u64;
        }
    }
    let mut sorted: Vec<(f64, f64)> = buckets.into_values().collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let ms = |q| histogram_quantile(q, &sorted) * 1000.0;
    let count = sorted.last().map_or(0, |b| b.1 as u64);
    (
        Quantiles {
            count,
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
        },
        by_result,
    )
}

/// Time per plugin and extension point (summed over status codes), largest first.
pub fn point_times(metrics: &Metrics) -> Vec<PointTime> {
    let mut acc: BTreeMap<(String, String), (u64, f64)> = BTreeMap::new();
    for s in parse(&encode(metrics)) {
        let field = match s.name.as_str() {
            "plugin_sum" => 0,
            "plugin_count" => 1,
            _ => continue,
        };
        let key = (
            s.labels.get("extension_point").cloned().unwrap_or_default(),
            s.labels.get("plugin").cloned().unwrap_or_default(),
        );
        let e = acc.entry(key).or_default();
        if field == 0 {
            e.1 += s.value;
        } else {
            e.0 += s.value as u64;
        }
    }
    let mut v: Vec<PointTime> = acc
        .into_iter()
        .map(|((point, plugin), (calls, seconds))| PointTime {
            point,
            plugin,
            calls,
            seconds,
        })
        .collect();
    v.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    v
}

/// A `/proc/self/status` size field, in bytes.
fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Peak resident set size of this process (`VmHWM`), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    status_bytes("VmHWM:")
}

/// Current resident set size of this process (`VmRSS`), in bytes.
pub fn rss_bytes() -> Option<u64> {
    status_bytes("VmRSS:")
}

/// The 1-minute load average of the machine (other processes slow a run down).
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU seconds (user + system) of this process and of each live thread, by thread name.
/// Threads that already exited count only in the process total.
pub fn cpu_seconds() -> (f64, BTreeMap<String, f64>) {
    // USER_HZ: clock ticks per second of /proc stat times, 100 on every Linux target.
    let ticks = 100.0;
    let read = |path: &str| -> Option<(String, f64)> {
        let stat = std::fs::read_to_string(path).ok()?;
        // Field 2 is `(comm)`, which may hold spaces; fields after it are space separated.
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let comm = stat[open + 1..close].to_string();
        let rest: Vec<&str> = stat[close + 2..].split(' ').collect();
        let utime: f64 = rest.get(11)?.parse().ok()?;
        let stime: f64 = rest.get(12)?.parse().ok()?;
        Some((comm, (utime + stime) / ticks))
    };
    let total = read("/proc/self/stat").map_or(0.0, |(_, s)| s);
    let mut threads: BTreeMap<String, f64> = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for entry in dir.flatten() {
            let path = entry.path().join("stat");
            if let Some((comm, secs)) = read(&path.to_string_lossy()) {
                *threads.entry(comm).or_default() += secs;
            }
        }
    }
    (total, threads)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn quantiles_interpolate_inside_buckets() {
        let b = [(1.0, 50.0), (2.0, 100.0), (f64::INFINITY, 100.0)];
        assert!((histogram_quantile(0.5, &b) - 1.0).abs() < 1e-9);
        assert!((histogram_quantile(0.75, &b) - 1.5).abs() < 1e-9);
        assert!((histogram_quantile(0.25, &b) - 0.5).abs() < 1e-9);
        let tail = [(1.0, 0.0), (f64::INFINITY, 10.0)];
        assert_eq!(histogram_quantile(0.99, &tail), 1.0);
    }

    #[test]
    fn reads_the_engine_histograms() {
        let m = Metrics::new();
        for _ in 0..90 {
            m.attempt("p", "scheduled", Duration::from_micros(1500));
        }
        for _ in 0..10 {
            m.attempt("p", "unschedulable", Duration::from_millis(20));
        }
        m.plugin(
            "NodeResourcesFit",
            "Filter",
            "Success",
            Duration::from_micros(30),
        );
        m.plugin(
            "NodeResourcesFit",
            "Filter",
            "Unschedulable",
            Duration::from_micros(10),
        );
        let (q, by_result) = attempt_quantiles(&m);
        assert_eq!(q.count, 100);
        assert!(q.p50_ms > 1.0 && q.p50_ms <= 2.0, "{q:?}");
        assert!(q.p99_ms > 16.0 && q.p99_ms <= 32.0, "{q:?}");
        assert_eq!(by_result.get("scheduled"), Some(&90));
        let times = point_times(&m);
        assert_eq!(times.len(), 1);
        assert_eq!((times[0].point.as_str(), times[0].calls), ("Filter", 2));
        assert!((times[0].seconds - 40e-6).abs() < 1e-9);
        reset(&m);
        assert_eq!(attempt_quantiles(&m).0.count, 0);
    }

    #[test]
    fn reads_its_own_memory_and_cpu() {
        assert!(peak_rss_bytes().unwrap() > 0);
        let (total, threads) = cpu_seconds();
        assert!(total >= 0.0 && !threads.is_empty());
    }
}
