//! The capabilities the checkpointed program held, and whether a restore here can give them
//! back. CRIU's restorer sets each task's permitted, effective and inheritable sets as they
//! were; it can only keep what the restoring CRIU may hold (its bounding set). Where it cannot,
//! CRIU 4.2 logs "Unable to restore capabilities" and then waits forever: so crac-java
//! compares first and refuses in one line, naming what is missing and how to grant it.

/// A program's capability sets, as /proc/PID/status shows them (bit masks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sets {
    pub inheritable: u64,
    pub permitted: u64,
    pub ambient: u64,
}

fn field(status: &str, name: &str) -> Option<u64> {
    let v = status.lines().find_map(|l| l.strip_prefix(name))?;
    u64::from_str_radix(v.trim(), 16).ok()
}

impl Sets {
    /// The sets of process `pid` (`self` for ours).
    pub fn of(pid: &str) -> Option<Sets> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        Some(Sets {
            inheritable: field(&status, "CapInh:")?,
            permitted: field(&status, "CapPrm:")?,
            ambient: field(&status, "CapAmb:").unwrap_or(0),
        })
    }

    /// What the restore must be able to give back.
    pub fn needed(&self) -> u64 {
        self.inheritable | self.permitted | self.ambient
    }

    pub fn encode(&self) -> String {
        format!(
            "{:016x}:{:016x}:{:016x}",
            self.inheritable, self.permitted, self.ambient
        )
    }

    pub fn decode(v: &str) -> Option<Sets> {
        let mut p = v.split(':').map(|x| u64::from_str_radix(x, 16).ok());
        Some(Sets {
            inheritable: p.next()??,
            permitted: p.next()??,
            ambient: p.next()??,
        })
    }
}

/// Our own bounding set: CRIU, started by us, can hold no more.
pub fn our_bounding() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    field(&status, "CapBnd:")
}

/// The names of the capabilities in `mask` (`CAP_CHECKPOINT_RESTORE`, ...).
pub fn names(mask: u64) -> Vec<String> {
    (0..64u8)
        .filter(|i| mask & (1u64 << i) != 0)
        .map(|i| {
            caps::all()
                .into_iter()
                .find(|c| c.index() == i)
                .map_or(format!("capability {i}"), |c| c.to_string())
        })
        .collect()
}

/// What of `image` this restore cannot give back (an empty list: all of it).
pub fn missing(image: &Sets, bounding: u64) -> Vec<String> {
    names(image.needed() & !bounding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_round_trip_and_missing_ones_are_named() {
        let s = Sets {
            inheritable: 0,
            permitted: (1 << 40) | (1 << 21),
            ambient: 0,
        };
        assert_eq!(Sets::decode(&s.encode()), Some(s));
        assert_eq!(
            missing(&s, 1 << 21),
            vec!["CAP_CHECKPOINT_RESTORE".to_string()]
        );
        assert!(missing(&s, u64::MAX).is_empty());
    }
}
