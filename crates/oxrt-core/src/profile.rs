//! Per-step timings of one run: host wall time for every kernel and copy,
//! plus what device providers report (device time, bytes moved). Printable
//! as a table and exportable as a Chrome trace (chrome://tracing, Perfetto).

use std::fmt::Write as _;

use crate::device::DeviceCost;

/// What a profiled step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A node's kernel.
    Node,
    /// A host → device copy.
    Upload,
    /// A device → host copy.
    Download,
}

/// One step of a profiled run.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileEvent {
    /// Node name, or the copied value's name.
    pub name: String,
    /// Op type, or `Upload` / `Download` for copies.
    pub op: String,
    /// The provider that ran the step.
    pub provider: String,
    pub kind: EventKind,
    /// Start, in microseconds since the run began.
    pub start_us: f64,
    /// Host wall time, in microseconds.
    pub host_us: f64,
    /// What the device reported (zero for host kernels).
    pub device: DeviceCost,
    /// Shape of each input (`None` where omitted or not a tensor).
    pub input_shapes: Vec<Option<Vec<usize>>>,
}

/// The events of one run, in execution order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunProfile {
    pub events: Vec<ProfileEvent>,
}

impl RunProfile {
    /// Total host wall time of all steps, in microseconds.
    pub fn host_us(&self) -> f64 {
        self.events.iter().map(|e| e.host_us).sum()
    }

    /// Total device time reported, in nanoseconds.
    pub fn device_ns(&self) -> u64 {
        self.events.iter().map(|e| e.device.device_ns).sum()
    }

    /// Total bytes moved between host and devices.
    pub fn bytes_moved(&self) -> u64 {
        self.events
            .iter()
            .map(|e| e.device.bytes_to_device + e.device.bytes_to_host)
            .sum()
    }

    /// A fixed-width table: one line per step and a total.
    pub fn table(&self) -> String {
        let w = self
            .events
            .iter()
            .map(|e| e.name.len())
            .max()
            .unwrap_or(4)
            .clamp(4, 40);
        let mut out = format!(
            "{:<w$}  {:<18} {:<10} {:>11} {:>13} {:>12}\n",
            "node", "op", "provider", "host (us)", "device (us)", "bytes moved"
        );
        for e in &self.events {
            let _ = writeln!(
                out,
                "{:<w$}  {:<18} {:<10} {:>11.1} {:>13} {:>12}",
                truncate(&e.name, w),
                truncate(&e.op, 18),
                truncate(&e.provider, 10),
                e.host_us,
                device_us(e.device.device_ns),
                e.device.bytes_to_device + e.device.bytes_to_host
            );
        }
        let _ = writeln!(
            out,
            "{:<w$}  {:<18} {:<10} {:>11.1} {:>13} {:>12}",
            "total",
            format!("{} steps", self.events.len()),
            "",
            self.host_us(),
            device_us(self.device_ns()),
            self.bytes_moved()
        );
        out
    }

    /// The op types by total host time, largest first (at most `top`):
    /// calls, total and mean host time, share of the run, device time.
    pub fn summary(&self, top: usize) -> String {
        let mut by_op: Vec<(String, usize, f64, u64)> = Vec::new();
        for e in &self.events {
            let key = format!("{} ({})", e.op, e.provider);
            match by_op.iter_mut().find(|(k, ..)| *k == key) {
                Some(entry) => {
                    entry.1 += 1;
                    entry.2 += e.host_us;
                    entry.3 += e.device.device_ns;
                }
                None => by_op.push((key, 1, e.host_us, e.device.device_ns)),
            }
        }
        by_op.sort_by(|a, b| b.2.total_cmp(&a.2));
        let total = self.host_us().max(f64::MIN_POSITIVE);
        let mut out = format!(
            "{:<32} {:>6} {:>12} {:>11} {:>7} {:>13}\n",
            "op (provider)", "calls", "total (us)", "mean (us)", "share", "device (us)"
        );
        for (op, calls, us, dev) in by_op.iter().take(top) {
            let _ = writeln!(
                out,
                "{:<32} {:>6} {:>12.1} {:>11.1} {:>6.1}% {:>13}",
                truncate(op, 32),
                calls,
                us,
                us / *calls as f64,
                100.0 * us / total,
                device_us(*dev)
            );
        }
        out
    }

    /// The run as Chrome trace JSON: host steps on one track, device time on
    /// a track per provider, each device span starting with its host step.
    pub fn chrome_trace(&self) -> String {
        let mut providers: Vec<&str> = Vec::new();
        let mut events = Vec::new();
        for e in &self.events {
            let cat = match e.kind {
                EventKind::Node => "node",
                EventKind::Upload | EventKind::Download => "copy",
            };
            let args = serde_json::json!({
                "op": e.op,
                "provider": e.provider,
                "device_us": e.device.device_ns as f64 / 1e3,
                "bytes_to_device": e.device.bytes_to_device,
                "bytes_to_host": e.device.bytes_to_host,
                "input_shapes": e.input_shapes,
            });
            events.push(serde_json::json!({
                "name": e.name, "cat": cat, "ph": "X", "pid": 1, "tid": 0,
                "ts": e.start_us, "dur": e.host_us, "args": args,
            }));
            if e.device.device_ns > 0 {
                let tid = match providers.iter().position(|p| *p == e.provider) {
                    Some(i) => i + 1,
                    None => {
                        providers.push(&e.provider);
                        providers.len()
                    }
                };
                events.push(serde_json::json!({
                    "name": e.name, "cat": format!("{cat} (device)"), "ph": "X", "pid": 1,
                    "tid": tid, "ts": e.start_us, "dur": e.device.device_ns as f64 / 1e3,
                    "args": args,
                }));
            }
        }
        events.push(thread_name(0, "host"));
        for (i, p) in providers.iter().enumerate() {
            events.push(thread_name(
                i + 1,
                &format!("{p} device (simulated or reported time)"),
            ));
        }
        serde_json::json!({ "traceEvents": events, "displayTimeUnit": "ms" }).to_string()
    }
}

fn thread_name(tid: usize, name: &str) -> serde_json::Value {
    serde_json::json!({
        "name": "thread_name", "ph": "M", "pid": 1, "tid": tid, "args": { "name": name },
    })
}

fn device_us(ns: u64) -> String {
    if ns == 0 {
        "-".into()
    } else {
        format!("{:.1}", ns as f64 / 1e3)
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn event(name: &str, kind: EventKind, device_ns: u64) -> ProfileEvent {
        ProfileEvent {
            name: name.into(),
            op: "Conv".into(),
            provider: "fpga-sim".into(),
            kind,
            start_us: 10.0,
            host_us: 5.0,
            device: DeviceCost {
                device_ns,
                bytes_to_device: 64,
                bytes_to_host: 0,
            },
            input_shapes: vec![Some(vec![1, 3, 8, 8]), None],
        }
    }

    #[test]
    fn totals_and_table() {
        let p = RunProfile {
            events: vec![
                event("conv", EventKind::Node, 2500),
                event("x", EventKind::Upload, 0),
            ],
        };
        assert_eq!(p.host_us(), 10.0);
        assert_eq!(p.device_ns(), 2500);
        assert_eq!(p.bytes_moved(), 128);
        let t = p.table();
        assert!(t.contains("conv"), "{t}");
        assert!(t.contains("2.5"), "{t}");
        assert!(t.lines().last().unwrap().starts_with("total"), "{t}");
    }

    #[test]
    fn chrome_trace_has_host_and_device_tracks() {
        let p = RunProfile {
            events: vec![event("conv", EventKind::Node, 2500)],
        };
        let v: serde_json::Value = serde_json::from_str(&p.chrome_trace()).unwrap();
        let events = v["traceEvents"].as_array().unwrap();
        let spans: Vec<_> = events.iter().filter(|e| e["ph"] == "X").collect();
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[0]["tid"], 0);
        assert_eq!(spans[0]["dur"], 5.0);
        assert_eq!(spans[1]["tid"], 1);
        assert_eq!(spans[1]["dur"], 2.5);
        assert!(events
            .iter()
            .any(|e| e["ph"] == "M" && e["args"]["name"] == "host"));
        assert_eq!(
            spans[0]["args"]["input_shapes"],
            serde_json::json!([[1, 3, 8, 8], null])
        );
    }

    #[test]
    fn summary_ranks_ops_by_total_time() {
        let mut slow = event("c2", EventKind::Node, 0);
        slow.op = "MatMul".into();
        slow.host_us = 30.0;
        let p = RunProfile {
            events: vec![
                event("c1", EventKind::Node, 0),
                slow,
                event("c3", EventKind::Node, 0),
            ],
        };
        let s = p.summary(10);
        let lines: Vec<&str> = s.lines().collect();
        assert!(lines[1].starts_with("MatMul (fpga-sim)"), "{s}");
        assert!(lines[1].contains("75.0%"), "{s}");
        assert!(lines[2].starts_with("Conv (fpga-sim)"), "{s}");
        assert!(lines[2].contains("     2 "), "{s}");
        assert_eq!(p.summary(1).lines().count(), 2);
    }
}
