//! Runs a test script inside a throwaway world (tests/world.sh): its own network, mount
//! and PID namespaces, so nothing reaches the real machine.

#![allow(dead_code)]

use std::process::{Command, Output};

pub const NSRUN: &str = env!("CARGO_BIN_EXE_nsrun");

/// True when privileged tests can run here; otherwise says why (and fails under
/// NSRUN_TEST_REQUIRE_ROOT=1, as CI sets it).
pub fn privileged() -> bool {
    let root = nix::unistd::geteuid().is_root();
    let tools = ["unshare", "ip", "nft"].iter().all(|t| which(t));
    if root && tools {
        return true;
    }
    let why = if root {
        "ip, nft or unshare is missing"
    } else {
        "not root"
    };
    if std::env::var_os("NSRUN_TEST_REQUIRE_ROOT").is_some_and(|v| v == "1") {
        panic!("privileged test cannot run: {why} (NSRUN_TEST_REQUIRE_ROOT=1)");
    }
    eprintln!("skipped: {why}");
    false
}

/// True when `tool` is installed; otherwise says why the test skips (a failure under
/// NSRUN_TEST_REQUIRE_ROOT=1, where CI must run everything).
pub fn require_tool(tool: &str) -> bool {
    if which(tool) {
        return true;
    }
    if std::env::var_os("NSRUN_TEST_REQUIRE_ROOT").is_some_and(|v| v == "1") {
        panic!("{tool} is missing (NSRUN_TEST_REQUIRE_ROOT=1): .ci/run installs it");
    }
    eprintln!("skipped: {tool} is missing");
    false
}

pub fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

/// Runs `script` in a fresh world after `world_setup` and `snapshot`; the script ends
/// with `expect_clean` unless it says otherwise. Panics with the output on failure.
pub fn world(script: &str) -> Option<Output> {
    world_with(&[], script)
}

pub fn world_with(env: &[(&str, &str)], script: &str) -> Option<Output> {
    if !privileged() {
        return None;
    }
    let lib = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/world.sh");
    let full = format!("source {lib}\nworld_setup\n{script}\n");
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--net",
        "--mount",
        "--propagation",
        "private",
        "--pid",
        "--fork",
        "--kill-child",
        "--mount-proc",
        "bash",
        "-c",
        &full,
    ])
    .env("NSRUN", NSRUN)
    .env_remove("SUDO_UID")
    .env_remove("SUDO_GID")
    .env_remove("SUDO_USER");
    for (k, v) in env {
        cmd.env(k, v);
    }
    // A test killed on its timeout takes its world with it (unshare --kill-child then
    // ends everything in it), rather than leaving it running.
    // SAFETY: prctl is async-signal-safe and touches nothing else.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
    let out = cmd.output().expect("run unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "world script failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    Some(out)
}
