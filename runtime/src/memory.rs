//! How much memory this process may use: the smallest of the kernel's estimate of what is
//! available (`MemAvailable`), the cgroup's limit less what the cgroup uses, and the
//! address-space limit (`RLIMIT_AS`). Read from `/proc` and `/sys`, no system calls; a
//! source that cannot be read does not limit.

fn meminfo_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// cgroup v2 (`memory.max`, `memory.current`) or v1 (`memory.limit_in_bytes`,
/// `memory.usage_in_bytes`): the room left under the limit.
fn cgroup_room() -> Option<u64> {
    let read = |p: &str| std::fs::read_to_string(p).ok().and_then(|s| s.trim().parse::<u64>().ok());
    let (limit, used) = match read("/sys/fs/cgroup/memory.max") {
        Some(l) => (l, read("/sys/fs/cgroup/memory.current").unwrap_or(0)),
        None => (
            read("/sys/fs/cgroup/memory/memory.limit_in_bytes")?,
            read("/sys/fs/cgroup/memory/memory.usage_in_bytes").unwrap_or(0),
        ),
    };
    Some(limit.saturating_sub(used))
}

/// `RLIMIT_AS`'s soft limit, less the address space already mapped.
fn address_space_room() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max address space"))?;
    let soft: u64 = line.split_whitespace().nth(3)?.parse().ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let vm = status.lines().find(|l| l.starts_with("VmSize:"))?;
    let kb: u64 = vm.split_whitespace().nth(1)?.parse().ok()?;
    Some(soft.saturating_sub(kb * 1024))
}

/// Bytes this process may still allocate, if anything says.
pub fn available() -> Option<u64> {
    [meminfo_available(), cgroup_room(), address_space_room()].into_iter().flatten().min()
}

pub fn gb(bytes: u64) -> String {
    format!("{:.2} GB", bytes as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_machine_says_how_much_memory_there_is() {
        let a = super::available().expect("/proc/meminfo on Linux");
        assert!(a > 1 << 20, "{a}");
    }
}
