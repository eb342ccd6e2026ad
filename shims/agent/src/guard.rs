//! A per-thread flag that lets the agent's own calls pass through its hooks untouched.

use std::cell::Cell;

thread_local! {
    // const-initialized and without a destructor: safe to touch from any hook, on any thread,
    // at any point of the thread's life.
    static IN_AGENT: Cell<bool> = const { Cell::new(false) };
}

/// Held while agent code runs inside a hook (or calls something that may re-enter one).
pub struct Reentry(());

impl Reentry {
    /// `None` when this thread is already inside the agent: the caller must then act as if
    /// it were not hooked.
    pub fn enter() -> Option<Reentry> {
        IN_AGENT.with(|flag| {
            if flag.get() {
                None
            } else {
                flag.set(true);
                Some(Reentry(()))
            }
        })
    }
}

impl Drop for Reentry {
    fn drop(&mut self) {
        IN_AGENT.with(|flag| flag.set(false));
    }
}
