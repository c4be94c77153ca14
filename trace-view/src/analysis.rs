//! A trace as a tree, and the critical path through it.
//!
//! [`Trace::new`] takes the spans of one trace in any order and builds the tree the renderer
//! draws: siblings sorted by start time; spans without a parent id are *roots*; a span whose
//! parent id names a span that never arrived is an *orphan* (it heads its own subtree, shown in
//! a labelled group, never dropped: this is what broken propagation looks like); spans that
//! only reach each other through their parent ids (a cycle, which no correct exporter sends)
//! are cut at the earliest one and shown as a third group.
//!
//! # The critical path
//!
//! The critical path is the chain of work that determined when the trace ended, computed as
//! Jaeger's UI does:
//!
//! 1. It starts at the root that ended last (or, in a trace without a root, at the orphan that
//!    ended last).
//! 2. Within a span, walk backwards from the span's end. Take the child that finished last at
//!    or before the current point; the time between that child's end and the current point is
//!    the span's own *self time on the path*. The child's whole interval is on the path:
//!    recurse into it the same way. Then continue from that child's *start*, considering only
//!    children that ended at or before it (a child that ran in parallel with the chosen one and
//!    ended later than its start is not on the path: it did not hold anything up).
//! 3. When no child is left, the time back to the span's start is self time too.
//!
//! Every nanosecond of the top span's duration is thus attributed to exactly one span on the
//! path, so the self times add up to the top span's duration.
//!
//! Clocks of different services disagree. Before walking, each child's interval is clamped
//! into its parent's (a child that starts before its parent or ends after it is cut at the
//! parent's edges; a child entirely outside its parent has nothing left and is not on the
//! path), and a span that ends before it starts counts as zero long.
//!
//! The *bottleneck* is the span with the largest self time on the path. The one-line summary
//! shows the branch of the path from the top span down to the bottleneck (every span on it is
//! on the path); `--json` lists every span on the path with its self time.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::span::ReceivedSpan;

/// Why a span heads a subtree of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopKind {
    /// No parent id: the start of the trace.
    Root,
    /// The parent id names a span that is not in the trace.
    Orphan,
    /// The span is part of a parent-id cycle, cut here.
    Cycle,
}

/// One span on the critical path and the time it alone accounts for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathStep {
    /// Index into [`Trace::spans`].
    pub span: usize,
    pub self_ns: u64,
}

/// The spans of one trace, analysed; see the module docs.
#[derive(Clone, Debug)]
pub struct Trace {
    pub trace_id: String,
    /// Sorted by start time (then name and span id, so the order is stable).
    pub spans: Vec<ReceivedSpan>,
    /// Index of each span's parent in `spans`, `None` for the tops.
    pub parent: Vec<Option<usize>>,
    /// Each span's children, sorted by start time.
    pub children: Vec<Vec<usize>>,
    /// Depth below its top (tops are 0).
    pub depth: Vec<usize>,
    /// The spans that head a subtree, in start order, with why.
    pub tops: Vec<(usize, TopKind)>,
    /// Earliest start and latest end of any span.
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    /// In depth-first order: a span, then its children on the path in chronological order.
    pub critical_path: Vec<PathStep>,
    /// Spans that repeat the id of an earlier one (an exporter sent a batch twice).
    pub duplicate_ids: usize,
}

/// Splits spans by trace id (traces in order of first appearance) and analyses each.
pub fn analyse(spans: Vec<ReceivedSpan>) -> Vec<Trace> {
    let mut order: Vec<String> = Vec::new();
    let mut by_trace: HashMap<String, Vec<ReceivedSpan>> = HashMap::new();
    for span in spans {
        if !by_trace.contains_key(&span.trace_id) {
            order.push(span.trace_id.clone());
        }
        by_trace
            .entry(span.trace_id.clone())
            .or_default()
            .push(span);
    }
    order
        .into_iter()
        .map(|id| {
            let spans = by_trace.remove(&id).unwrap_or_default();
            Trace::new(id, spans)
        })
        .collect()
}

/// Each span's parent, by index, and how many spans repeat another's id. With duplicates,
/// children attach to the last span of that id; any one will do.
fn link_parents(spans: &[ReceivedSpan]) -> (Vec<Option<usize>>, usize) {
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(spans.len());
    let mut duplicate_ids = 0;
    for (i, s) in spans.iter().enumerate() {
        if index.insert(s.span_id.as_str(), i).is_some() {
            duplicate_ids += 1;
        }
    }
    let parent = spans
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.parent_span_id
                .as_deref()
                .and_then(|p| index.get(p).copied())
                .filter(|&p| p != i)
        })
        .collect();
    (parent, duplicate_ids)
}

/// The children and depth of each span, and the spans that head a subtree (roots, orphans,
/// and one span of each parent cycle, whose parent link is cut in `parent`).
fn shape_tree(spans: &[ReceivedSpan], parent: &mut [Option<usize>]) -> Shape {
    let n = spans.len();
    let mut tops: Vec<(usize, TopKind)> = (0..n)
        .filter(|&i| parent[i].is_none())
        .map(|i| {
            let kind = if spans[i].parent_span_id.is_some() {
                TopKind::Orphan
            } else {
                TopKind::Root
            };
            (i, kind)
        })
        .collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, p) in parent.iter().enumerate() {
        if let Some(p) = *p {
            children[p].push(i);
        }
    }

    let mut depth = vec![0; n];
    let mut seen = vec![false; n];
    let mark = |top: usize, depth: &mut [usize], seen: &mut [bool], ch: &[Vec<usize>]| {
        // Iterative, so a hostile trace nested a million deep cannot overflow the stack.
        let mut stack = vec![(top, 0)];
        while let Some((i, d)) = stack.pop() {
            if seen[i] {
                continue;
            }
            seen[i] = true;
            depth[i] = d;
            stack.extend(ch[i].iter().map(|&c| (c, d + 1)));
        }
    };
    for &(top, _) in &tops {
        mark(top, &mut depth, &mut seen, &children);
    }
    // Whatever is not reachable from a top sits in a parent cycle: cut each cycle at its
    // earliest span.
    for i in 0..n {
        if !seen[i] {
            if let Some(p) = parent[i].take() {
                children[p].retain(|&c| c != i);
            }
            tops.push((i, TopKind::Cycle));
            mark(i, &mut depth, &mut seen, &children);
        }
    }
    tops.sort_by_key(|&(i, _)| i);
    Shape {
        children,
        depth,
        tops,
    }
}

/// What [`shape_tree`] finds: the fields of the same names in [`Trace`].
struct Shape {
    children: Vec<Vec<usize>>,
    depth: Vec<usize>,
    tops: Vec<(usize, TopKind)>,
}

impl Trace {
    /// Builds the tree and the critical path of `spans`, which should all belong to
    /// `trace_id` (the id is only used for display).
    pub fn new(trace_id: String, mut spans: Vec<ReceivedSpan>) -> Trace {
        spans.sort_by(|a, b| {
            (a.start_unix_nano, &a.name, &a.span_id).cmp(&(b.start_unix_nano, &b.name, &b.span_id))
        });
        let (mut parent, duplicate_ids) = link_parents(&spans);
        let Shape {
            children,
            depth,
            tops,
        } = shape_tree(&spans, &mut parent);

        let start_unix_nano = spans.iter().map(|s| s.start_unix_nano).min().unwrap_or(0);
        let end_unix_nano = spans
            .iter()
            .map(|s| s.end_unix_nano.max(s.start_unix_nano))
            .max()
            .unwrap_or(0);
        let mut trace = Trace {
            trace_id,
            spans,
            parent,
            children,
            depth,
            tops,
            start_unix_nano,
            end_unix_nano,
            critical_path: Vec::new(),
            duplicate_ids,
        };
        trace.critical_path = trace.compute_critical_path();
        trace
    }

    /// The span the critical path starts at: the root that ended last, or without a root the
    /// top that ended last; ties go to the earlier start.
    pub fn path_top(&self) -> Option<usize> {
        let end = |i: usize| {
            self.spans[i]
                .end_unix_nano
                .max(self.spans[i].start_unix_nano)
        };
        let latest = |kinds: &[TopKind]| {
            self.tops
                .iter()
                .filter(|(_, k)| kinds.contains(k))
                // `tops` is in start order and `max_by_key` keeps the last maximum, so walk
                // backwards to let the earliest of equal ends win.
                .rev()
                .max_by_key(|&&(i, _)| end(i))
                .map(|&(i, _)| i)
        };
        latest(&[TopKind::Root]).or_else(|| latest(&[TopKind::Orphan, TopKind::Cycle]))
    }

    fn compute_critical_path(&self) -> Vec<PathStep> {
        let Some(top) = self.path_top() else {
            return Vec::new();
        };
        let s = &self.spans[top];
        let mut path = Vec::new();
        let mut stack = vec![(
            top,
            s.start_unix_nano,
            s.end_unix_nano.max(s.start_unix_nano),
        )];
        while let Some((i, start, end)) = stack.pop() {
            // Children clamped into this span's (already clamped) interval; empty ones cannot
            // hold anything up.
            let kids: Vec<(usize, u64, u64)> = self.children[i]
                .iter()
                .map(|&c| {
                    let k = &self.spans[c];
                    let ks = k.start_unix_nano.clamp(start, end);
                    let ke = k.end_unix_nano.max(k.start_unix_nano).clamp(start, end);
                    (c, ks, ke)
                })
                .filter(|&(_, ks, ke)| ke > ks)
                .collect();
            let mut cursor = end;
            let mut self_ns = 0;
            let mut chosen = Vec::new();
            while cursor > start {
                // The child that finished last at or before the cursor; of equal ends, the one
                // that started first (it explains more of the time).
                let next = kids
                    .iter()
                    .filter(|&&(_, _, ke)| ke <= cursor)
                    .max_by(|a, b| a.2.cmp(&b.2).then(b.1.cmp(&a.1)));
                if let Some(&(c, ks, ke)) = next {
                    self_ns += cursor - ke;
                    chosen.push((c, ks, ke));
                    cursor = ks;
                } else {
                    self_ns += cursor - start;
                    cursor = start;
                }
            }
            path.push(PathStep { span: i, self_ns });
            // `chosen` runs from the latest child back; pushed in that order, the earliest
            // pops first, so the path lists children chronologically.
            stack.extend(chosen);
        }
        path
    }

    /// The step of the path with the largest self time.
    pub fn bottleneck(&self) -> Option<PathStep> {
        self.critical_path
            .iter()
            .copied()
            // Of equal self times, the first on the path.
            .rev()
            .max_by_key(|step| step.self_ns)
    }

    /// The spans from the path's top down to the bottleneck, top first.
    pub fn chain_to_bottleneck(&self) -> Vec<usize> {
        let Some(bottleneck) = self.bottleneck() else {
            return Vec::new();
        };
        let mut chain = vec![bottleneck.span];
        let mut at = bottleneck.span;
        while let Some(p) = self.parent[at] {
            chain.push(p);
            at = p;
        }
        chain.reverse();
        chain
    }

    /// The critical-path self time of span `i`, if it is on the path.
    pub fn self_time_on_path(&self, i: usize) -> Option<u64> {
        self.critical_path
            .iter()
            .find(|step| step.span == i)
            .map(|step| step.self_ns)
    }

    /// Distinct service names in order of first start.
    pub fn services(&self) -> Vec<&str> {
        let mut services: Vec<&str> = Vec::new();
        for s in &self.spans {
            if !services.contains(&s.service_name.as_str()) {
                services.push(&s.service_name);
            }
        }
        services
    }

    /// Latest end minus earliest start.
    pub fn duration_ns(&self) -> u64 {
        self.end_unix_nano - self.start_unix_nano
    }

    /// The duration of the span the path starts at (the time the path explains).
    pub fn path_duration_ns(&self) -> u64 {
        self.critical_path
            .iter()
            .map(|step| step.self_ns)
            .sum::<u64>()
    }

    /// Span indices in display order: each group of tops (roots, then orphans, then cycles),
    /// each top followed by its subtree depth-first, siblings by start time.
    pub fn display_order(&self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.spans.len());
        for kind in [TopKind::Root, TopKind::Orphan, TopKind::Cycle] {
            for &(top, _) in self.tops.iter().filter(|(_, k)| *k == kind) {
                let mut stack = vec![top];
                while let Some(i) = stack.pop() {
                    out.push(i);
                    stack.extend(self.children[i].iter().rev());
                }
            }
        }
        out
    }

    /// The analysed trace for scripts (`--json`); the shape is documented in the README.
    /// Times are microseconds: start offsets from the trace's earliest span.
    pub fn to_json(&self) -> Value {
        let us = |ns: u64| ns / 1_000;
        let tops: HashMap<usize, TopKind> = self.tops.iter().copied().collect();
        let spans: Vec<Value> = self
            .display_order()
            .into_iter()
            .map(|i| {
                let s = &self.spans[i];
                let group = match tops.get(&i) {
                    Some(TopKind::Orphan) => "orphan",
                    Some(TopKind::Cycle) => "cycle",
                    Some(TopKind::Root) => "root",
                    None => "child",
                };
                json!({
                    "span_id": s.span_id,
                    "parent_span_id": s.parent_span_id,
                    "name": s.name,
                    "service": s.service_name,
                    "kind": s.kind.to_string(),
                    "depth": self.depth[i],
                    "place": group,
                    "start_offset_us": us(s.start_unix_nano - self.start_unix_nano),
                    "duration_us": us(s.duration_ns()),
                    "status": match &s.status {
                        crate::span::SpanStatus::Unset => "UNSET",
                        crate::span::SpanStatus::Ok => "OK",
                        crate::span::SpanStatus::Error(_) => "ERROR",
                    },
                    "error": s.error_summary(),
                    "critical_self_time_us": self.self_time_on_path(i).map(us),
                })
            })
            .collect();
        let step = |step: &PathStep| {
            let s = &self.spans[step.span];
            json!({
                "span_id": s.span_id,
                "name": s.name,
                "service": s.service_name,
                "self_time_us": us(step.self_ns),
            })
        };
        let total = self.path_duration_ns();
        json!({
            "trace_id": self.trace_id,
            "services": self.services(),
            "span_count": self.spans.len(),
            "start_unix_nano": self.start_unix_nano.to_string(),
            "duration_us": us(self.duration_ns()),
            "spans": spans,
            "critical_path": self.critical_path.iter().map(step).collect::<Vec<_>>(),
            "bottleneck": self.bottleneck().map(|b| {
                let mut v = step(&b);
                v["of_us"] = json!(us(total));
                v["percent"] = json!(percent(b.self_ns, total));
                v
            }),
        })
    }
}

/// `part` as a whole percentage of `whole` (100 for an empty whole: the span is all there is).
pub fn percent(part: u64, whole: u64) -> u64 {
    if whole == 0 {
        return 100;
    }
    let rounded = (u128::from(part) * 100 + u128::from(whole) / 2) / u128::from(whole);
    u64::try_from(rounded).unwrap_or(u64::MAX)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const MS: u64 = 1_000_000;

    /// [`ReceivedSpan::for_test`], under the short name the analysis and render tests build
    /// their traces with.
    pub(crate) fn span(
        id: &str,
        parent: Option<&str>,
        name: &str,
        start: u64,
        end: u64,
    ) -> ReceivedSpan {
        ReceivedSpan::for_test(id, parent, name, start, end)
    }

    fn trace(spans: Vec<ReceivedSpan>) -> Trace {
        Trace::new("1".repeat(32), spans)
    }

    /// The path as (name, self ms).
    fn path(t: &Trace) -> Vec<(&str, u64)> {
        t.critical_path
            .iter()
            .map(|s| (t.spans[s.span].name.as_str(), s.self_ns / MS))
            .collect()
    }

    fn bottleneck(t: &Trace) -> &str {
        &t.spans[t.bottleneck().unwrap().span].name
    }

    #[test]
    fn sequential_children_are_all_on_the_path_and_the_gaps_are_the_parents() {
        let t = trace(vec![
            span("1", None, "root", 0, 100),
            span("2", Some("1"), "a", 10, 30),
            span("3", Some("1"), "b", 30, 90),
        ]);
        assert_eq!(path(&t), [("root", 20), ("a", 20), ("b", 60)]);
        assert_eq!(bottleneck(&t), "b");
        assert_eq!(t.path_duration_ns(), 100 * MS);
    }

    #[test]
    fn of_parallel_children_the_one_that_ends_last_is_on_the_path() {
        let t = trace(vec![
            span("1", None, "root", 0, 100),
            span("2", Some("1"), "long", 5, 80),
            span("3", Some("1"), "late", 20, 95),
            span("4", Some("1"), "short", 10, 15),
        ]);
        // `late` ends last; `long` overlaps its start, so only `short` before it counts.
        assert_eq!(path(&t), [("root", 5 + 5 + 10), ("short", 5), ("late", 75)]);
        assert_eq!(bottleneck(&t), "late");
    }

    #[test]
    fn nested_spans_pass_the_path_down_to_the_deepest_work() {
        let t = trace(vec![
            span("1", None, "POST /api/orders", 0, 166),
            span("2", Some("1"), "create_order", 1, 165),
            span("3", Some("2"), "charge_card", 5, 163),
            span("4", Some("3"), "lookup_user", 6, 10),
            span("5", Some("3"), "call_stripe_api", 10, 161),
        ]);
        assert_eq!(
            path(&t),
            [
                ("POST /api/orders", 2),
                ("create_order", 6),
                ("charge_card", 3),
                ("lookup_user", 4),
                ("call_stripe_api", 151)
            ]
        );
        let chain: Vec<&str> = t
            .chain_to_bottleneck()
            .into_iter()
            .map(|i| t.spans[i].name.as_str())
            .collect();
        assert_eq!(
            chain,
            [
                "POST /api/orders",
                "create_order",
                "charge_card",
                "call_stripe_api"
            ]
        );
        assert_eq!(percent(151, 166), 91);
    }

    #[test]
    fn a_child_overlapping_its_parents_end_is_clamped_to_it() {
        // Clock skew: the child seems to start before and end after its parent.
        let t = trace(vec![
            span("1", None, "root", 10, 50),
            span("2", Some("1"), "skewed", 5, 70),
            span("3", Some("1"), "outside", 60, 80),
        ]);
        assert_eq!(path(&t), [("root", 0), ("skewed", 40)]);
        assert_eq!(t.path_duration_ns(), 40 * MS);
    }

    #[test]
    fn a_single_span_is_its_own_path_and_bottleneck() {
        let t = trace(vec![span("1", None, "alone", 0, 7)]);
        assert_eq!(path(&t), [("alone", 7)]);
        assert_eq!(
            percent(t.bottleneck().unwrap().self_ns, t.path_duration_ns()),
            100
        );
        let t = trace(vec![span("1", None, "instant", 3, 3)]);
        assert_eq!(path(&t), [("instant", 0)]);
        assert_eq!(percent(0, 0), 100);
    }

    #[test]
    fn orphans_head_their_own_group_and_the_path_uses_the_root() {
        let t = trace(vec![
            span("1", None, "root", 0, 10),
            span("2", Some("9"), "lost", 2, 30),
            span("3", Some("2"), "under-lost", 3, 4),
        ]);
        assert_eq!(t.tops, [(0, TopKind::Root), (1, TopKind::Orphan)]);
        assert_eq!(path(&t), [("root", 10)]);
        assert_eq!(t.depth, [0, 0, 1]);

        // Without a root, the orphan that ended last carries the path.
        let t = trace(vec![
            span("2", Some("9"), "lost", 2, 30),
            span("3", Some("8"), "also-lost", 1, 20),
        ]);
        assert_eq!(path(&t), [("lost", 28)]);
    }

    #[test]
    fn a_parent_cycle_is_cut_and_nothing_is_lost() {
        let t = trace(vec![
            span("1", None, "root", 0, 10),
            span("2", Some("3"), "a", 1, 2),
            span("3", Some("2"), "b", 2, 3),
        ]);
        assert_eq!(t.display_order().len(), 3);
        assert_eq!(t.tops, [(0, TopKind::Root), (1, TopKind::Cycle)]);
    }

    #[test]
    fn a_deep_chain_does_not_overflow_the_stack() {
        let n = 100_000u64;
        let mut spans = vec![span("0", None, "s", 0, 2 * n)];
        for i in 1..n {
            spans.push(span(
                &format!("{i:x}"),
                Some(&format!("{:x}", i - 1)),
                "s",
                i,
                2 * n - i,
            ));
        }
        let t = trace(spans);
        assert_eq!(t.critical_path.len(), usize::try_from(n).unwrap());
        assert_eq!(
            t.depth.iter().max(),
            Some(&(usize::try_from(n).unwrap() - 1))
        );
    }

    #[test]
    fn the_json_shape_names_the_path_and_the_bottleneck() {
        let t = trace(vec![
            span("1", None, "root", 0, 100),
            span("2", Some("1"), "work", 10, 90),
        ]);
        let v = t.to_json();
        assert_eq!(v["span_count"], 2);
        assert_eq!(v["duration_us"], 100_000);
        assert_eq!(v["spans"][1]["name"], "work");
        assert_eq!(v["spans"][1]["start_offset_us"], 10_000);
        assert_eq!(v["spans"][1]["critical_self_time_us"], 80_000);
        assert_eq!(v["critical_path"][0]["self_time_us"], 20_000);
        assert_eq!(v["bottleneck"]["name"], "work");
        assert_eq!(v["bottleneck"]["percent"], 80);
        assert_eq!(v["bottleneck"]["of_us"], 100_000);
    }
}
