//! The waterfall: one renderer for every source of spans.
//!
//! [`waterfall`] draws an analysed [`Trace`] the way the tutorial draws it: a `Trace ID:`
//! header with the services, span count and duration, then the tree, one line a span
//! (indentation, name, service, kind, start offset, duration and a bar scaled to the trace),
//! errors marked under their span, orphans in a labelled group, and the critical path with its
//! bottleneck at the end. Every line fits [`Style::width`] columns; colour (ANSI) only when
//! [`Style::colour`] says so, which [`Style::detect`] decides from the terminal and `NO_COLOR`.
//!
//! [`render_tree`] and [`render_shape`] are the compact forms the end-to-end tests compare and
//! print in their failure messages; they share the tree ([`Trace`]) with the waterfall.

use std::{collections::HashMap, fmt::Write as _};

use crate::analysis::{TopKind, Trace, analyse, percent};
use crate::span::ReceivedSpan;

/// How to draw: the width in columns and whether to use colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    pub width: usize,
    pub colour: bool,
}

/// The narrowest layout that still has room for a name and a bar.
pub const MIN_WIDTH: usize = 60;
/// The width when nothing says otherwise: the classic terminal.
pub const DEFAULT_WIDTH: usize = 80;

impl Style {
    /// Decides the style from the environment, as a pure function so it can be tested:
    /// the width is `width` (a `--width` flag) if given, else `columns` (`COLUMNS`, or the
    /// terminal's own width) if it is a number, else 80, and never below [`MIN_WIDTH`]; colour only when stdout is a terminal and
    /// `NO_COLOR` is unset or empty (<https://no-color.org>).
    pub fn detect(
        stdout_is_tty: bool,
        no_color: Option<&str>,
        columns: Option<&str>,
        width: Option<usize>,
    ) -> Style {
        let width = width
            .or_else(|| columns.and_then(|c| c.trim().parse().ok()))
            .unwrap_or(DEFAULT_WIDTH)
            .max(MIN_WIDTH);
        let colour = stdout_is_tty && no_color.is_none_or(str::is_empty);
        Style { width, colour }
    }

    /// [`Style::detect`] for this process's stdout and environment.
    pub fn from_env(width: Option<usize>) -> Style {
        use std::io::IsTerminal as _;
        let no_color = std::env::var("NO_COLOR").ok();
        let stdout = std::io::stdout();
        let tty = stdout.is_terminal();
        // Shells seldom export `COLUMNS`; a terminal knows its own width.
        let columns = std::env::var("COLUMNS").ok().or_else(|| {
            tty.then(|| terminal_size::terminal_size_of(&stdout))
                .flatten()
                .map(|(terminal_size::Width(w), _)| w.to_string())
        });
        Style::detect(tty, no_color.as_deref(), columns.as_deref(), width)
    }

    fn paint(&self, text: &str, code: &str) -> String {
        if self.colour && !text.is_empty() {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

const RED: &str = "31";
const BOLD: &str = "1";
const CYAN: &str = "36";
const DIM: &str = "2";
const BOLD_RED: &str = "1;31";

const SERVICE_MAX: usize = 16;
const KIND_WIDTH: usize = 8;
const TIME_WIDTH: usize = 6;
/// Enough cells to place a span on the timeline roughly; at 80 columns the rest goes to the
/// names, so the order trace (nine levels deep) reads without a cut. Wider terminals widen
/// the bar.
const BAR_MIN: usize = 6;
/// Columns besides the name and the bar: the two markers (critical path, error) and a space,
/// then service, kind, start and duration, each after a space, and the space before the bar.
const fn fixed_columns(service: usize) -> usize {
    3 + (1 + service) + (1 + KIND_WIDTH) + (1 + TIME_WIDTH) + (1 + TIME_WIDTH) + 1
}

/// Draws `trace` as a waterfall; see the module docs. Ends with a newline.
pub fn waterfall(trace: &Trace, style: &Style) -> String {
    let width = style.width.max(MIN_WIDTH);
    let mut out = String::new();
    if trace.spans.is_empty() {
        let _ = writeln!(out, "Trace ID: {} (no spans)", trace.trace_id);
        return out;
    }
    header(&mut out, trace, style, width);
    let order = trace.display_order();
    let prefixes = tree_prefixes(trace, &order);
    let columns = Columns::fit(trace, &order, &prefixes, width);
    columns.title(&mut out, style);

    let tops: HashMap<usize, TopKind> = trace.tops.iter().copied().collect();
    let mut group = TopKind::Root;
    for (&i, prefix) in order.iter().zip(&prefixes) {
        let top = tops.get(&i).copied();
        // The orphans and the cycles come after the tree, each group under a label.
        let label = match top {
            Some(TopKind::Orphan) if group != TopKind::Orphan => {
                Some("orphans: spans whose parent span never arrived")
            }
            Some(TopKind::Cycle) if group != TopKind::Cycle => {
                Some("spans whose parent ids form a cycle (cut at the earliest)")
            }
            _ => None,
        };
        if let Some(label) = label {
            group = top.unwrap_or(group);
            push_line(&mut out, &style.paint(&fit(label, width), BOLD));
        }
        columns.row(
            &mut out,
            trace,
            i,
            prefix,
            top == Some(TopKind::Orphan),
            style,
        );
    }
    summary(&mut out, trace, style, width);
    out
}

/// The trace id, total duration and span count, then the services.
fn header(out: &mut String, trace: &Trace, style: &Style, width: usize) {
    let header = format!(
        "Trace ID: {} · {} · {} span{}",
        trace.trace_id,
        fmt_total(trace.duration_ns()),
        trace.spans.len(),
        if trace.spans.len() == 1 { "" } else { "s" }
    );
    push_line(out, &style.paint(&fit(&header, width), BOLD));
    let services = trace.services();
    let services = format!(
        "service{}: {}",
        if services.len() == 1 { "" } else { "s" },
        services
            .iter()
            .map(|s| if s.is_empty() { "(unnamed)" } else { s })
            .collect::<Vec<_>>()
            .join(", ")
    );
    push_line(out, &fit(&services, width));
}

/// The widths of the table's columns: the name column as wide as the longest indented name
/// allows, the bar the rest.
struct Columns {
    width: usize,
    name: usize,
    service: usize,
    bar: usize,
    /// The trace's start and duration, which the bars and the start column are relative to.
    start_ns: u64,
    total_ns: u64,
}

impl Columns {
    fn fit(trace: &Trace, order: &[usize], prefixes: &[String], width: usize) -> Self {
        let service = trace
            .spans
            .iter()
            .map(|s| s.service_name.chars().count())
            .max()
            .unwrap_or(0)
            .clamp("service".len(), SERVICE_MAX);
        let fixed = fixed_columns(service);
        let name_need = order
            .iter()
            .zip(prefixes)
            .map(|(&i, p)| p.chars().count() + trace.spans[i].name.chars().count())
            .max()
            .unwrap_or(0)
            .max("span".len());
        let name = name_need.min(width - fixed - BAR_MIN);
        Columns {
            width,
            name,
            service,
            bar: width - fixed - name,
            start_ns: trace.start_unix_nano,
            total_ns: trace.duration_ns().max(1),
        }
    }

    /// The column titles, with the legend of the two marker columns when there is room.
    fn title(&self, out: &mut String, style: &Style) {
        let (name_width, service_width) = (self.name, self.service);
        let title = format!(
            "   {:<name_width$} {:<service_width$} {:<KIND_WIDTH$} {:>TIME_WIDTH$} {:>TIME_WIDTH$}",
            "span", "service", "kind", "start", "took"
        );
        let legend = " * critical path ! error";
        let title = if title.chars().count() + legend.chars().count() <= self.width {
            format!("{title}{legend}")
        } else {
            title
        };
        push_line(out, &style.paint(&title, DIM));
    }

    /// One span's line, and under it the error's summary when it failed.
    fn row(
        &self,
        out: &mut String,
        trace: &Trace,
        i: usize,
        prefix: &str,
        orphan: bool,
        style: &Style,
    ) {
        let s = &trace.spans[i];
        let on_path = trace.self_time_on_path(i).is_some();
        let error = s.status.is_error();
        let mut name = fit(&format!("{prefix}{}", s.name), self.name);
        if orphan {
            // Say which parent is missing, when there is room for it.
            let parent = s.parent_span_id.as_deref().unwrap_or_default();
            let with_parent = format!("{} (parent {parent})", s.name);
            if with_parent.chars().count() <= self.name {
                name = with_parent;
            }
        }
        let padded = pad(&name, self.name);
        let name_cell = match (error, on_path) {
            (true, _) => style.paint(&padded, BOLD_RED),
            (false, true) => style.paint(&padded, BOLD),
            (false, false) => padded,
        };
        let start = s.start_unix_nano - self.start_ns;
        let end = s.end_unix_nano.max(s.start_unix_nano) - self.start_ns;
        let bar = bar(start, end, self.total_ns, self.bar);
        let bar = bar.trim_end();
        let bar = match (error, on_path) {
            (true, _) => style.paint(bar, RED),
            (false, true) => style.paint(bar, CYAN),
            (false, false) => style.paint(bar, DIM),
        };
        let line = format!(
            "{}{} {name_cell} {} {:<KIND_WIDTH$} {:>TIME_WIDTH$} {:>TIME_WIDTH$} {bar}",
            if on_path { '*' } else { ' ' },
            if error { '!' } else { ' ' },
            pad(&fit(service_label(s), self.service), self.service),
            fit(&s.kind.to_string(), KIND_WIDTH),
            fmt_duration(start),
            fmt_duration(end - start),
        );
        push_line(out, line.trim_end());
        if let Some(summary) = s.error_summary() {
            let indent: String = prefix
                .chars()
                .map(|c| if c == '│' || c == '├' { '│' } else { ' ' })
                .collect();
            let text = if summary.is_empty() {
                "ERROR".to_owned()
            } else {
                format!("ERROR {summary}")
            };
            let line = fit(&format!("   {indent}  ✗ {text}"), self.width);
            push_line(out, &style.paint(&line, RED));
        }
    }
}

/// The branch of the critical path to the bottleneck, the bottleneck, and any repeated ids.
fn summary(out: &mut String, trace: &Trace, style: &Style, width: usize) {
    if let Some(b) = trace.bottleneck() {
        let names: Vec<&str> = trace
            .chain_to_bottleneck()
            .into_iter()
            .map(|i| trace.spans[i].name.as_str())
            .collect();
        let line = abbreviate_path("critical path: ", &names, width);
        push_line(out, &style.paint(&line, BOLD));
        let s = &trace.spans[b.span];
        let of = trace.path_duration_ns();
        let line = format!(
            "bottleneck {} ({}): {} of {} ({}%)",
            s.name,
            service_label(s),
            fmt_total(b.self_ns),
            fmt_total(of),
            percent(b.self_ns, of)
        );
        push_line(out, &style.paint(&fit(&line, width), BOLD));
    }
    if trace.duplicate_ids > 0 {
        let line = format!(
            "note: {} span(s) repeat the id of another span (exported twice?)",
            trace.duplicate_ids
        );
        push_line(out, &fit(&line, width));
    }
}

fn service_label(s: &ReceivedSpan) -> &str {
    if s.service_name.is_empty() {
        "(unnamed)"
    } else {
        &s.service_name
    }
}

fn push_line(out: &mut String, line: &str) {
    out.push_str(line);
    out.push('\n');
}

/// The tree-drawing prefix of each span in `order` (display order): `├ ` and `└ ` before a
/// span, `│ ` and spaces for the ancestors' lines. Deep trees keep the last levels and mark the
/// cut with `…`, so a name always has room.
fn tree_prefixes(trace: &Trace, order: &[usize]) -> Vec<String> {
    const MAX_PREFIX: usize = 24;
    let n = trace.spans.len();
    // For each span: is it the last of its parent's children?
    let mut last = vec![true; n];
    for kids in &trace.children {
        for (k, &c) in kids.iter().enumerate() {
            last[c] = k + 1 == kids.len();
        }
    }
    order
        .iter()
        .map(|&i| {
            if trace.parent[i].is_none() {
                return String::new();
            }
            // Walk up: the span's own connector, then one column per ancestor below the top.
            let mut parts: Vec<&str> = vec![if last[i] { "└ " } else { "├ " }];
            let mut at = trace.parent[i];
            while let Some(a) = at {
                if trace.parent[a].is_none() || parts.len() * 2 > MAX_PREFIX {
                    break;
                }
                parts.push(if last[a] { "  " } else { "│ " });
                at = trace.parent[a];
            }
            let cut = at.is_some_and(|a| trace.parent[a].is_some());
            parts.reverse();
            let mut prefix = parts.concat();
            if cut {
                prefix.insert(0, '…');
            }
            prefix
        })
        .collect()
}

/// Bar cells for [start, end) of a trace `total` long, `width` cells; at least one cell.
fn bar(start: u64, end: u64, total: u64, width: usize) -> String {
    let cell = |t: u64| (u128::from(t) * width as u128 / u128::from(total)) as usize;
    let from = cell(start).min(width.saturating_sub(1));
    let to = ((u128::from(end) * width as u128).div_ceil(u128::from(total)) as usize)
        .clamp(from + 1, width);
    let mut s = String::with_capacity(width * 3);
    s.extend(std::iter::repeat_n(' ', from));
    s.extend(std::iter::repeat_n('█', to - from));
    s.extend(std::iter::repeat_n(' ', width - to));
    s
}

/// `text` cut to `width` characters, ending in `…` when cut.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut s: String = text.chars().take(width.saturating_sub(1)).collect();
    s.push('…');
    s
}

fn pad(text: &str, width: usize) -> String {
    let n = text.chars().count();
    format!("{text}{}", " ".repeat(width.saturating_sub(n)))
}

/// `label` and the names joined by ` > `, dropping names from the middle (shown as `…`) until
/// it fits: the start and the end of the path are what a reader needs.
fn abbreviate_path(label: &str, names: &[&str], width: usize) -> String {
    let full = format!("{label}{}", names.join(" > "));
    if full.chars().count() <= width || names.len() < 3 {
        return fit(&full, width);
    }
    // Keep the first name and as many of the last ones as fit.
    for keep_last in (1..names.len() - 1).rev() {
        let tail = &names[names.len() - keep_last..];
        let line = format!("{label}{} > … > {}", names[0], tail.join(" > "));
        if line.chars().count() <= width {
            return line;
        }
    }
    fit(
        &format!("{label}{} > … > {}", names[0], names[names.len() - 1]),
        width,
    )
}

/// A duration for a column at most 6 characters wide, with three significant digits where
/// they fit: `0`, `850µs`, `4.25ms`, `16.2ms`, `166ms`, `1520ms`, `15.2s`, `152s`.
pub fn fmt_duration(ns: u64) -> String {
    const US: u64 = 1_000;
    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;
    match ns {
        0 => "0".to_owned(),
        n if n < US => format!("{n}ns"),
        n if n < MS => format!("{}µs", n / US),
        n if n < 10 * MS => format!("{:.2}ms", n as f64 / MS as f64),
        n if n < 100 * MS => format!("{:.1}ms", n as f64 / MS as f64),
        n if n < 10 * S => format!("{}ms", n / MS),
        n if n < 100 * S => format!("{:.1}s", n as f64 / S as f64),
        n if n < 100_000 * S => format!("{}s", n / S),
        n if n < 100_000 * 86_400 * S => format!("{}d", n / (86_400 * S)),
        _ => "longer".to_owned(),
    }
}

/// A duration for prose: `151 ms`, `4.2 ms`, `850 µs`, `2.35 s`.
pub fn fmt_total(ns: u64) -> String {
    const MS: u64 = 1_000_000;
    match ns {
        n if n < MS => format!("{} µs", n / 1_000),
        n if n < 10 * MS => format!("{:.1} ms", n as f64 / MS as f64),
        n if n < 10_000 * MS => format!("{} ms", (n + MS / 2) / MS),
        n => format!("{:.2} s", n as f64 / 1e9),
    }
}

/// Renders spans as an indented text waterfall, one line per span:
/// `name [service, KIND, duration]`, children two spaces deeper than their
/// parent and ordered by start time. Spans whose parent is not among `spans`
/// are shown as tops, marked "(parent not received)".
pub fn render_tree(spans: &[ReceivedSpan]) -> String {
    compact(spans, true)
}

/// [`render_tree`] without durations: the shape of the trace (names, services, kinds and
/// nesting), which is the same in every run and can be compared exactly.
pub fn render_shape(spans: &[ReceivedSpan]) -> String {
    compact(spans, false)
}

fn compact(spans: &[ReceivedSpan], durations: bool) -> String {
    let mut out = String::new();
    for trace in analyse(spans.to_vec()) {
        let tops: HashMap<usize, TopKind> = trace.tops.iter().copied().collect();
        // Tops in start order, whatever their kind, as the receiver's users have always read
        // them; the waterfall groups them instead.
        let mut order = Vec::new();
        for &(top, _) in &trace.tops {
            let mut stack = vec![top];
            while let Some(i) = stack.pop() {
                order.push(i);
                stack.extend(trace.children[i].iter().rev());
            }
        }
        for i in order {
            let s = &trace.spans[i];
            let duration = if durations {
                format!(", {}", fmt_compact(s.duration_ns()))
            } else {
                String::new()
            };
            let note = match tops.get(&i) {
                Some(TopKind::Orphan) => " (parent not received)",
                Some(TopKind::Cycle) => " (parent cycle)",
                _ => "",
            };
            let _ = writeln!(
                out,
                "{:indent$}{} [{}, {}{duration}]{note}",
                "",
                s.name,
                s.service_name,
                s.kind,
                indent = trace.depth[i] * 2
            );
        }
    }
    out
}

/// Whole milliseconds, which is what a reader compares in a waterfall; spans
/// shorter than that show microseconds so they do not all read "0ms".
fn fmt_compact(ns: u64) -> String {
    if ns >= 1_000_000 {
        format!("{}ms", ns / 1_000_000)
    } else {
        format!("{}µs", ns / 1_000)
    }
}

/// The one span named `name` from service `service` ("" matches any service).
///
/// Panics, showing the whole tree, unless exactly one span matches: a missing
/// or duplicated span is exactly what the tests exist to catch.
pub fn find<'a>(spans: &'a [ReceivedSpan], service: &str, name: &str) -> &'a ReceivedSpan {
    let matches: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.name == name && (service.is_empty() || s.service_name == service))
        .collect();
    match matches.as_slice() {
        [one] => one,
        _ => panic!(
            "expected exactly one span {name:?} from service {service:?}, found {}; received spans:\n{}",
            matches.len(),
            render_tree(spans)
        ),
    }
}

/// The direct children of `parent` among `spans`, ordered by start time.
pub fn children<'a>(spans: &'a [ReceivedSpan], parent: &ReceivedSpan) -> Vec<&'a ReceivedSpan> {
    let mut kids: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.is_child_of(parent)).collect();
    kids.sort_by_key(|s| s.start_unix_nano);
    kids
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::tests::span;
    use crate::span::SpanStatus;

    fn order_like() -> Trace {
        let mut spans = vec![
            span("1", None, "POST /api/orders", 0, 166),
            span("2", Some("1"), "create_order", 1, 165),
            span(
                "3",
                Some("2"),
                "a span with a name far too long for any column at all",
                2,
                4,
            ),
            span("4", Some("2"), "charge_card", 5, 163),
            span("5", Some("4"), "lookup_user", 6, 10),
            span("6", Some("4"), "call_stripe_api", 10, 161),
            span("7", Some("99"), "orphaned", 20, 30),
        ];
        spans[3].service_name = "payment-service".into();
        spans[5].service_name = "payment-service".into();
        spans[4].status = SpanStatus::Error("user lookup failed".into());
        spans[4].attributes.insert(
            "error.type".into(),
            crate::span::AttrValue::Str("db".into()),
        );
        Trace::new("4bf92f3577b34da6a3ce929d0e0e4736".into(), spans)
    }

    fn plain(width: usize) -> Style {
        Style {
            width,
            colour: false,
        }
    }

    #[test]
    fn no_line_is_wider_than_the_terminal() {
        for width in [60, 80, 120, 200] {
            let text = waterfall(&order_like(), &plain(width));
            for line in text.lines() {
                assert!(
                    line.chars().count() <= width,
                    "{width} columns, line of {}: {line:?}\n{text}",
                    line.chars().count()
                );
            }
            assert!(!text.contains('\x1b'), "no escape codes in plain text");
        }
        // A wider terminal gets a wider bar, not just more spaces.
        let bar_cells = |w| {
            waterfall(&order_like(), &plain(w))
                .lines()
                .find(|l| l.contains("POST /api/orders") && l.starts_with('*'))
                .map(|l| l.matches('█').count())
                .unwrap()
        };
        assert!(bar_cells(200) > bar_cells(80) + 30);
    }

    #[test]
    fn the_waterfall_has_the_header_the_tree_the_error_the_orphans_and_the_path() {
        let text = waterfall(&order_like(), &plain(80));
        println!("{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "Trace ID: 4bf92f3577b34da6a3ce929d0e0e4736 · 166 ms · 7 spans"
        );
        assert_eq!(lines[1], "services: svc, payment-service");
        assert!(lines[3].starts_with("*  POST /api/orders "), "{}", lines[3]);
        assert!(lines[4].starts_with("*  └ create_order "), "{}", lines[4]);
        assert!(
            lines[5].starts_with("*    ├ a span with a name far"),
            "{}",
            lines[5]
        );
        assert!(lines[5].contains('…'), "long names are cut: {}", lines[5]);
        assert!(
            lines[7].starts_with("*!     ├ lookup_user") && lines[7].contains("INTERNAL"),
            "{}",
            lines[7]
        );
        assert!(
            lines[8].contains("✗ ERROR db: user lookup failed"),
            "{}",
            lines[8]
        );
        assert!(
            lines[9].starts_with("*      └ call_stripe_api"),
            "{}",
            lines[9]
        );
        assert!(lines[10].starts_with("orphans: "), "{}", lines[10]);
        assert!(lines[11].starts_with("   orphaned "), "{}", lines[11]);
        assert_eq!(
            lines[12],
            "critical path: POST /api/orders > create_order > charge_card > call_stripe_api"
        );
        assert_eq!(
            lines[13],
            "bottleneck call_stripe_api (payment-service): 151 ms of 166 ms (91%)"
        );
        // The start offset and duration columns.
        assert!(
            lines[9].contains("INTERNAL 10.0ms  151ms █"),
            "{}",
            lines[9]
        );
    }

    #[test]
    fn the_order_traces_deepest_names_are_not_cut_at_80_columns() {
        // Nine levels, as `POST /api/orders` down to `SELECT users`, with the services' names.
        let names = [
            "POST /api/orders",
            "create_order",
            "POST /orders",
            "POST /orders",
            "save_order",
            "POST /charge",
            "POST /charge",
            "charge_card",
            "lookup_user",
            "SELECT users",
        ];
        let mut spans: Vec<ReceivedSpan> = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let parent = (i > 0).then(|| format!("{i:x}"));
                let mut s = span(
                    &format!("{:x}", i + 1),
                    parent.as_deref(),
                    name,
                    i as u64,
                    200,
                );
                s.service_name = "payment-service".into();
                s
            })
            .collect();
        // `INSERT payments` is a sibling of `lookup_user`, at depth 8.
        let mut insert = span("f0", Some("8"), "INSERT payments", 20, 30);
        insert.service_name = "payment-service".into();
        spans.push(insert);
        let text = waterfall(&Trace::new("1".repeat(32), spans), &plain(80));
        for name in ["SELECT users", "INSERT payments", "lookup_user"] {
            assert!(
                text.lines().any(|l| l.contains(&format!(" {name} "))),
                "{name} is cut:\n{text}"
            );
        }
    }

    #[test]
    fn a_long_critical_path_is_abbreviated_in_the_middle() {
        let names = [
            "POST /api/orders",
            "create_order",
            "POST /orders",
            "POST /orders",
            "save_order",
            "POST /charge",
            "POST /charge",
            "charge_card",
            "call_stripe_api",
        ];
        let line = abbreviate_path("critical path: ", &names, 80);
        assert!(
            line.starts_with("critical path: POST /api/orders > … > "),
            "{line}"
        );
        assert!(line.chars().count() <= 80, "{line}");
        assert!(line.ends_with("> charge_card > call_stripe_api"));
        let wide = abbreviate_path("critical path: ", &names, 200);
        assert!(!wide.contains('…'));
    }

    #[test]
    fn colour_only_on_a_terminal_and_never_with_no_color() {
        for (tty, no_color, colour) in [
            (true, None, true),
            (true, Some(""), true),
            (true, Some("1"), false),
            (false, None, false),
            (false, Some("1"), false),
        ] {
            assert_eq!(
                Style::detect(tty, no_color, None, None).colour,
                colour,
                "tty {tty}, NO_COLOR {no_color:?}"
            );
        }
        assert_eq!(Style::detect(true, None, None, None).width, 80);
        assert_eq!(Style::detect(true, None, Some("132"), None).width, 132);
        assert_eq!(Style::detect(true, None, Some("wide"), None).width, 80);
        assert_eq!(Style::detect(true, None, Some("132"), Some(100)).width, 100);
        assert_eq!(Style::detect(true, None, Some("20"), None).width, MIN_WIDTH);

        let coloured = waterfall(
            &order_like(),
            &Style {
                width: 80,
                colour: true,
            },
        );
        assert!(coloured.contains("\x1b[1;31m"), "errors in red");
        // Escape codes do not count as columns.
        let strip = |s: &str| {
            let mut out = String::new();
            let mut in_escape = false;
            for c in s.chars() {
                match (in_escape, c) {
                    (false, '\x1b') => in_escape = true,
                    (true, 'm') => in_escape = false,
                    (true, _) => {}
                    (false, c) => out.push(c),
                }
            }
            out
        };
        assert_eq!(strip(&coloured), waterfall(&order_like(), &plain(80)));
    }

    #[test]
    fn durations_fit_their_column() {
        for (ns, text) in [
            (0, "0"),
            (999, "999ns"),
            (850_000, "850µs"),
            (4_250_000, "4.25ms"),
            (16_240_000, "16.2ms"),
            (166_240_000, "166ms"),
            (1_520_000_000, "1520ms"),
            (15_200_000_000, "15.2s"),
            (3_600_000_000_000, "3600s"),
            (u64::MAX, "longer"),
        ] {
            assert_eq!(fmt_duration(ns), text);
            assert!(text.chars().count() <= TIME_WIDTH);
        }
        assert_eq!(fmt_total(151_200_000), "151 ms");
        assert_eq!(fmt_total(4_240_000), "4.2 ms");
    }

    #[test]
    fn the_compact_tree_marks_orphans_and_orders_siblings_by_start() {
        let spans = [
            span("c", Some("a"), "second", 5, 9),
            span("a", None, "root", 0, 10),
            span("b", Some("a"), "first", 1, 2),
            span("e", Some("f"), "lost", 3, 4),
        ];
        assert_eq!(
            render_tree(&spans),
            "root [svc, INTERNAL, 10ms]\n\
             \x20 first [svc, INTERNAL, 1ms]\n\
             \x20 second [svc, INTERNAL, 4ms]\n\
             lost [svc, INTERNAL, 1ms] (parent not received)\n"
        );
    }
}
