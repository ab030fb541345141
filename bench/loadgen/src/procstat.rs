//! CPU time of a process tree from /proc (Linux only).

use std::collections::HashMap;

/// Clock ticks per second of `utime`/`stime` in /proc/<pid>/stat.
pub fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// (ppid, utime + stime + cutime + cstime in ticks) of one process.
fn stat_of(pid: i32) -> Option<(i32, u64)> {
    stat_fields(pid, 4)
}

/// (ppid, sum of the first `n` of utime, stime, cutime, cstime in ticks) of one process.
fn stat_fields(pid: i32, n: usize) -> Option<(i32, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] = state (field 3), f[1] = ppid (4), f[11..15] = utime, stime, cutime, cstime (14..17).
    let ppid = f.get(1)?.parse().ok()?;
    let mut ticks = 0u64;
    for i in 11..11 + n {
        ticks += f.get(i)?.parse::<i64>().ok()?.max(0) as u64;
    }
    Some((ppid, ticks))
}

/// The pids of `root` and all its live descendants.
pub fn process_tree(root: i32) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) {
                if let Some((ppid, _)) = stat_of(pid) {
                    children.entry(ppid).or_default().push(pid);
                }
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        if let Some(c) = children.get(&out[i]) {
            out.extend(c.iter().copied());
        }
        i += 1;
    }
    out
}

/// Total CPU seconds (user + system, including reaped children) used so far by the process tree
/// of `root`, and the number of processes in it. None when `root` does not exist.
pub fn tree_cpu_seconds(root: i32) -> Option<(f64, usize)> {
    stat_of(root)?;
    let pids = process_tree(root);
    let ticks: u64 = pids
        .iter()
        .filter_map(|&p| stat_of(p))
        .map(|(_, t)| t)
        .sum();
    Some((ticks as f64 / clk_tck(), pids.len()))
}

/// CPU seconds used so far by this process.
pub fn self_cpu_seconds() -> f64 {
    stat_of(std::process::id() as i32)
        .map(|(_, t)| t as f64 / clk_tck())
        .unwrap_or(0.0)
}

/// CPU ticks (utime + stime, own threads only) of every live process, by pid.
pub fn all_cpu_ticks() -> HashMap<i32, u64> {
    let mut out = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) {
                if let Some((_, t)) = stat_fields(pid, 2) {
                    out.insert(pid, t);
                }
            }
        }
    }
    out
}

/// CPU seconds used between two `all_cpu_ticks` snapshots by processes outside `exclude`
/// (a process that appeared in between counts whole; one that exited in between is missed).
/// A noisy-neighbour check, not an exact figure.
pub fn others_cpu_seconds(
    before: &HashMap<i32, u64>,
    after: &HashMap<i32, u64>,
    exclude: &[i32],
) -> f64 {
    let ticks: u64 = after
        .iter()
        .filter(|(pid, _)| !exclude.contains(pid))
        .map(|(pid, &t)| t.saturating_sub(before.get(pid).copied().unwrap_or(0)))
        .sum();
    ticks as f64 / clk_tck()
}

/// Busy CPU seconds of the whole machine so far (/proc/stat's first line less idle and iowait).
pub fn machine_busy_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = s
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user/nice).
    let busy: u64 = f
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    Some(busy as f64 / clk_tck())
}
