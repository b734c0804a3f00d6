//! The memory plan of a compiled graph: when each intermediate value is
//! made and last read (from the execution plan's schedule), how many bytes
//! are live at the worst step when values are released after their last
//! reader versus kept to the end of the run, and an arena layout (offsets
//! where values whose lifetimes do not overlap share bytes) for the values
//! whose size is known before the run.
//!
//! Values with a size known only at run time are counted, not sized.
//! Constants (initializers) are the session's, shared by every run, and
//! reported apart.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::ir::{Dim, Graph, ValueType};
use crate::plan::ExecutionPlan;

/// Arena offsets are multiples of this many bytes.
pub const ARENA_ALIGN: usize = 64;

/// One intermediate value (or graph input) with a statically known size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedValue {
    pub name: String,
    pub bytes: usize,
    /// The step that makes it (0 for graph inputs).
    pub first: usize,
    /// The step that reads it last (the last step for graph outputs).
    pub last: usize,
    /// Its offset in the arena.
    pub offset: usize,
    /// Made by overwriting an input of its producing step (in place).
    pub in_place: bool,
}

/// The planned memory of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryPlan {
    pub values: Vec<PlannedValue>,
    /// Values whose size is not known before the run.
    pub unsized_values: usize,
    /// Most bytes live at once when values are released after their last
    /// reader and in-place steps reuse their input.
    pub peak_bytes: usize,
    /// Bytes when every value lives to the end of the run (no planning).
    pub unplanned_bytes: usize,
    /// Size of the arena that holds every sized value at its offset.
    pub arena_bytes: usize,
    /// Bytes of the session's constants (not part of a run's memory).
    pub constant_bytes: usize,
    /// Steps that write their output into a dying input.
    pub in_place_steps: usize,
}

/// Bytes of a tensor type whose shape is fully known (symbolic dims taken
/// from `dims`).
fn static_bytes(ty: &ValueType, dims: &HashMap<String, usize>) -> Option<usize> {
    let ValueType::Tensor {
        dtype,
        shape: Some(shape),
    } = ty
    else {
        return None;
    };
    let mut n = dtype.host_size();
    for d in shape {
        match d {
            Dim::Known(k) => n = n.checked_mul(*k)?,
            Dim::Symbolic(name) => n = n.checked_mul(*dims.get(name)?)?,
            Dim::Unknown => return None,
        }
    }
    Some(n)
}

impl MemoryPlan {
    /// Plans the host values of `plan` (device-resident copies are the
    /// providers' to manage and are not counted), with symbolic dims bound
    /// by `dims`.
    pub fn build(graph: &Graph, plan: &ExecutionPlan, dims: &HashMap<String, usize>) -> Self {
        let steps = plan.steps.len();
        let last_step = steps.saturating_sub(1);
        let mut first: Vec<Option<usize>> = vec![None; plan.slot_count];
        let mut last: Vec<Option<usize>> = vec![None; plan.slot_count];
        let mut in_place = vec![false; plan.slot_count];
        for v in &graph.inputs {
            if let Some(&s) = plan.slots.get(&v.name) {
                first[s] = Some(0);
            }
        }
        for (i, step) in plan.steps.iter().enumerate() {
            for s in step.outputs.iter().flatten() {
                first[*s].get_or_insert(i);
                last[*s] = Some(last[*s].map_or(i, |l: usize| l.max(i)));
            }
            for s in step.inputs.iter().flatten() {
                last[*s] = Some(last[*s].map_or(i, |l: usize| l.max(i)));
            }
            if let (Some(k), Some(Some(out))) = (step.in_place, step.outputs.first()) {
                if step.inputs.get(k).copied().flatten().is_some() {
                    in_place[*out] = true;
                }
            }
        }
        let mut out = MemoryPlan {
            in_place_steps: plan.steps.iter().filter(|s| s.in_place.is_some()).count(),
            constant_bytes: plan
                .constants
                .iter()
                .map(|(_, t)| t.len() * t.dtype().host_size())
                .sum(),
            ..Default::default()
        };
        let is_constant: std::collections::HashSet<usize> =
            plan.constants.iter().map(|(s, _)| *s).collect();
        for (s, (name, loc)) in plan.slot_values.iter().enumerate() {
            if loc.is_some() || is_constant.contains(&s) {
                continue;
            }
            let Some(f) = first[s] else { continue };
            let bytes = graph
                .value_types
                .get(name)
                .and_then(|t| static_bytes(t, dims))
                .or_else(|| {
                    graph
                        .inputs
                        .iter()
                        .find(|v| v.name == *name)
                        .and_then(|v| static_bytes(&v.ty, dims))
                });
            let Some(bytes) = bytes else {
                out.unsized_values += 1;
                continue;
            };
            let l = if plan.kept[s] {
                last_step
            } else {
                last[s].unwrap_or(f)
            };
            out.values.push(PlannedValue {
                name: name.clone(),
                bytes,
                first: f,
                last: l.max(f),
                offset: 0,
                in_place: in_place[s],
            });
        }
        out.unplanned_bytes = out.values.iter().map(|v| v.bytes).sum();
        // Live bytes per step; an in-place output takes its input's bytes.
        let mut live = vec![0usize; steps.max(1)];
        for v in out.values.iter().filter(|v| !v.in_place) {
            for b in &mut live[v.first..=v.last.min(last_step)] {
                *b += v.bytes;
            }
        }
        for v in out.values.iter().filter(|v| v.in_place) {
            // Live after its producing step, which its input was until then.
            for b in live
                .iter_mut()
                .take(v.last.min(last_step) + 1)
                .skip(v.first + 1)
            {
                *b += v.bytes;
            }
        }
        out.peak_bytes = live.into_iter().max().unwrap_or(0);
        out.assign_offsets();
        out
    }

    /// Greedy by size: each value, largest first, goes at the lowest
    /// aligned offset free of every placed value whose lifetime overlaps.
    fn assign_offsets(&mut self) {
        let mut order: Vec<usize> = (0..self.values.len()).collect();
        order.sort_by(|&a, &b| {
            self.values[b]
                .bytes
                .cmp(&self.values[a].bytes)
                .then(a.cmp(&b))
        });
        let mut placed: Vec<usize> = Vec::with_capacity(order.len());
        for i in order {
            let v = &self.values[i];
            let mut taken: Vec<(usize, usize)> = placed
                .iter()
                .map(|&j| &self.values[j])
                .filter(|w| w.first <= v.last && v.first <= w.last)
                .map(|w| (w.offset, w.offset + w.bytes))
                .collect();
            taken.sort_unstable();
            let mut offset = 0;
            for (start, end) in taken {
                if offset + v.bytes <= start {
                    break;
                }
                offset = offset.max(end.div_ceil(ARENA_ALIGN) * ARENA_ALIGN);
            }
            let bytes = v.bytes;
            self.values[i].offset = offset;
            self.arena_bytes = self.arena_bytes.max(offset + bytes);
            placed.push(i);
        }
    }

    /// A readable summary and, with `detail`, one line per value.
    pub fn report(&self, detail: bool) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "memory plan: {} sized values, {} sized only at run time, {} in-place steps",
            self.values.len(),
            self.unsized_values,
            self.in_place_steps
        );
        let _ = writeln!(
            s,
            "  planned peak (release after last reader): {}",
            human(self.peak_bytes)
        );
        let _ = writeln!(
            s,
            "  arena (offsets shared across lifetimes):  {}",
            human(self.arena_bytes)
        );
        let _ = writeln!(
            s,
            "  without planning (every value kept):      {}",
            human(self.unplanned_bytes)
        );
        let _ = writeln!(
            s,
            "  constants (shared by all runs):           {}",
            human(self.constant_bytes)
        );
        if detail {
            let _ = writeln!(
                s,
                "  {:<40} {:>12} {:>12} {:>11}",
                "value", "bytes", "offset", "steps"
            );
            let mut values: Vec<&PlannedValue> = self.values.iter().collect();
            values.sort_by_key(|v| (v.first, v.offset));
            for v in values {
                let _ = writeln!(
                    s,
                    "  {:<40} {:>12} {:>12} {:>5}..{:<5}{}",
                    v.name,
                    v.bytes,
                    v.offset,
                    v.first,
                    v.last,
                    if v.in_place { " in place" } else { "" }
                );
            }
        }
        s
    }
}

fn human(b: usize) -> String {
    let f = b as f64;
    if f >= 1024.0 * 1024.0 {
        format!("{:.2} MiB ({b} bytes)", f / (1024.0 * 1024.0))
    } else if f >= 1024.0 {
        format!("{:.2} KiB ({b} bytes)", f / 1024.0)
    } else {
        format!("{b} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(bytes: usize, first: usize, last: usize) -> PlannedValue {
        PlannedValue {
            name: format!("v{first}_{last}"),
            bytes,
            first,
            last,
            offset: 0,
            in_place: false,
        }
    }

    #[test]
    fn disjoint_lifetimes_share_the_arena() {
        let mut p = MemoryPlan {
            values: vec![value(1000, 0, 1), value(1000, 2, 3), value(100, 1, 2)],
            ..Default::default()
        };
        p.assign_offsets();
        // The two large values never live together: same offset.
        assert_eq!(p.values[0].offset, 0);
        assert_eq!(p.values[1].offset, 0);
        // The small one overlaps both, so it goes after them, aligned.
        assert_eq!(p.values[2].offset, 1024);
        assert_eq!(p.arena_bytes, 1124);
    }

    #[test]
    fn a_value_fits_a_gap_between_others() {
        let mut p = MemoryPlan {
            values: vec![value(512, 0, 0), value(256, 0, 2), value(128, 1, 2)],
            ..Default::default()
        };
        p.assign_offsets();
        assert_eq!(p.values[0].offset, 0);
        assert_eq!(p.values[1].offset, 512);
        // Lives after value 0 died: takes its place.
        assert_eq!(p.values[2].offset, 0);
        assert_eq!(p.arena_bytes, 768);
    }
}
