//! What `/proc` says about a process: CPU time used and peak resident memory (Linux only).

use std::{collections::HashMap, process::Command, sync::OnceLock, time::Duration};

/// Clock ticks a second, the unit of `/proc/<pid>/stat`'s CPU times (`getconf CLK_TCK`;
/// 100 on every Linux this runs on, used if `getconf` is missing).
fn ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// User plus system CPU time of `pid` so far, or `None` if it is gone.
pub(crate) fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = parse_cpu_ticks(&stat)?;
    Some(Duration::from_secs_f64(
        ticks as f64 / ticks_per_second() as f64,
    ))
}

/// utime + stime from a `/proc/<pid>/stat` line. The command name (field 2) is in
/// parentheses and may itself contain spaces or parentheses, so fields are counted from the
/// last `)`: after it come state (field 3) ... utime (14) and stime (15).
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The parent of `pid`, or `None` if it is gone.
pub(crate) fn parent(pid: u32) -> Option<u32> {
    parse_parent(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The CPU time of the children `pid` has waited for (cutime + cstime): for the Postgres
/// postmaster, that of every backend that has exited, whose own `/proc` entry is gone.
pub(crate) fn children_cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(Duration::from_secs_f64(
        parse_children_ticks(&stat)? as f64 / ticks_per_second() as f64,
    ))
}

/// The fields of a `/proc/<pid>/stat` line from field 3 (the state) on, counted from the last
/// `)`, as [`parse_cpu_ticks`] does.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    Some(stat[stat.rfind(')')? + 1..].split_whitespace().collect())
}

/// Field 4, ppid.
fn parse_parent(stat: &str) -> Option<u32> {
    stat_fields(stat)?.get(1)?.parse().ok()
}

/// Fields 16 and 17, cutime + cstime.
fn parse_children_ticks(stat: &str) -> Option<u64> {
    let fields = stat_fields(stat)?;
    let user: u64 = fields.get(13)?.parse().ok()?;
    let system: u64 = fields.get(14)?.parse().ok()?;
    Some(user + system)
}

/// A field of `/proc/<pid>/status` in KiB, e.g. `VmHWM` (peak resident set) or `VmRSS`.
pub(crate) fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kib(&status, field)
}

fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(field)?.strip_prefix(':')?;
        value.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// CPU time of a set of processes at one moment, to subtract from a later one.
#[derive(Clone, Debug, Default)]
pub(crate) struct CpuSnapshot(HashMap<u32, Duration>);

impl CpuSnapshot {
    pub(crate) fn take(pids: &[u32]) -> CpuSnapshot {
        CpuSnapshot(
            pids.iter()
                .filter_map(|&p| Some((p, cpu_time(p)?)))
                .collect(),
        )
    }

    /// CPU spent since `earlier` by the processes in `self`. A process that did not exist
    /// at `earlier` (a backend opened during the phase) counts from zero.
    pub(crate) fn since(&self, earlier: &CpuSnapshot) -> Duration {
        self.0
            .iter()
            .map(|(pid, now)| now.saturating_sub(earlier.0.get(pid).copied().unwrap_or_default()))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_after_a_command_name_with_spaces_and_parentheses() {
        let stat = "1234 (tokio (worker) 1) S 1 1234 1234 0 -1 4194304 500 0 0 0 \
                    250 75 0 0 20 0 9 0 100 1000000 2000 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn the_parent_and_the_waited_for_childrens_ticks_are_fields_4_16_and_17() {
        let stat = "1234 (postgres: orders (x)) S 812 1234 1234 0 -1 4194304 500 0 0 0 \
                    250 75 4000 600 20 0 9 0 100 1000000 2000 18446744073709551615";
        assert_eq!(parse_parent(stat), Some(812));
        assert_eq!(parse_children_ticks(stat), Some(4_600));
        assert_eq!(parse_children_ticks("1 (short) S 1"), None);
    }

    #[test]
    fn status_fields_are_read_in_kib() {
        let status = "Name:\tgateway\nVmHWM:\t   10240 kB\nVmRSS:\t    9000 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(10240));
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(9000));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn this_process_uses_some_cpu_and_memory() {
        let me = std::process::id();
        let start = CpuSnapshot::take(&[me]);
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(CpuSnapshot::take(&[me]).since(&start) > Duration::ZERO);
        assert!(status_kib(me, "VmHWM").unwrap() > 0);
    }
}
