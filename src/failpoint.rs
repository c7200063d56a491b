//! Crash and error injection for the test suite, compiled only into debug builds (the
//! binary the tests run; a release build ignores the variable): with
//! `NSRUN_FAILPOINT=STEP:kill` nsrun SIGKILLs itself when it reaches STEP, with
//! `NSRUN_FAILPOINT=STEP:error` it fails there as a real error would.

use anyhow::Result;

/// The named steps, in the order a run reaches them (tests iterate over this list).
#[cfg_attr(not(debug_assertions), allow(dead_code))]
pub const STEPS: [&str; 11] = [
    "start",
    "after-clone",
    "init-table",
    "after-veth",
    "after-address",
    "after-nat",
    "after-forwarding",
    "after-go",
    "supervise",
    "after-status",
    "init-network",
];

#[cfg(debug_assertions)]
pub fn hit(step: &str) -> Result<()> {
    debug_assert!(STEPS.contains(&step), "unknown failpoint {step}");
    let Ok(spec) = std::env::var("NSRUN_FAILPOINT") else {
        return Ok(());
    };
    let (name, action) = spec.split_once(':').unwrap_or((spec.as_str(), "kill"));
    if name != step {
        return Ok(());
    }
    if action == "kill" {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
    anyhow::bail!("failpoint {step} (NSRUN_FAILPOINT)")
}

#[cfg(not(debug_assertions))]
pub fn hit(_step: &str) -> Result<()> {
    Ok(())
}
