//! How the sandbox reports back, and how its end becomes nsrun's exit code.
//!
//! The sandbox's init and the command write fixed-format records to a close-on-exec
//! pipe that nsrun reads: which setup step failed (with errno), that exec failed, or
//! the command's wait status. One record is one `write` of less than PIPE_BUF bytes, so
//! records never interleave.

use nix::sys::signal::Signal;

pub const EXIT_NSRUN_FAILED: i32 = 125;
pub const EXIT_CANNOT_EXECUTE: i32 = 126;
pub const EXIT_NOT_FOUND: i32 = 127;

/// The signals nsrun passes on to the command.
pub const FORWARDED: [Signal; 9] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    // Job control: Ctrl-Z stops the command (as SIGSTOP: a command in its own session
    // cannot be stopped by the terminal's SIGTSTP otherwise), and `fg` continues it.
    Signal::SIGTSTP,
    Signal::SIGCONT,
];

/// The signals that ask the command to end: after them, `--stop-timeout` runs.
pub fn stops(sig: Signal) -> bool {
    matches!(
        sig,
        Signal::SIGINT | Signal::SIGTERM | Signal::SIGHUP | Signal::SIGQUIT
    )
}

/// Terminal-generated signals go to the command's whole process group, as a terminal
/// would send them; the others to the command alone, as `kill` would.
pub fn to_group(sig: Signal) -> bool {
    matches!(
        sig,
        Signal::SIGINT
            | Signal::SIGQUIT
            | Signal::SIGHUP
            | Signal::SIGWINCH
            | Signal::SIGTSTP
            | Signal::SIGCONT
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// A setup step inside the sandbox failed.
    SetupFailed { step: String, errno: i32 },
    /// exec of the command failed.
    ExecFailed { command: String, errno: i32 },
    /// The command ended with this raw wait status.
    Status(i32),
}

const TAG_SETUP: u8 = b'F';
const TAG_EXEC: u8 = b'E';
const TAG_STATUS: u8 = b'S';
const MAX_TEXT: usize = 1024;

impl Report {
    pub fn encode(&self) -> Vec<u8> {
        let (tag, value, text) = match self {
            Report::SetupFailed { step, errno } => (TAG_SETUP, *errno, step.as_bytes()),
            Report::ExecFailed { command, errno } => (TAG_EXEC, *errno, command.as_bytes()),
            Report::Status(s) => (TAG_STATUS, *s, &[][..]),
        };
        let text = &text[..text.len().min(MAX_TEXT)];
        let mut out = Vec::with_capacity(7 + text.len());
        out.push(tag);
        out.extend_from_slice(&value.to_ne_bytes());
        out.extend_from_slice(&(text.len() as u16).to_ne_bytes());
        out.extend_from_slice(text);
        out
    }

    /// Decodes every complete record in `buf`; stops at garbage.
    pub fn decode_all(mut buf: &[u8]) -> Vec<Report> {
        let mut out = Vec::new();
        while buf.len() >= 7 {
            let value = i32::from_ne_bytes(buf[1..5].try_into().unwrap());
            let len = usize::from(u16::from_ne_bytes(buf[5..7].try_into().unwrap()));
            let Some(text) = buf.get(7..7 + len) else {
                break;
            };
            let text = String::from_utf8_lossy(text).into_owned();
            out.push(match buf[0] {
                TAG_SETUP => Report::SetupFailed {
                    step: text,
                    errno: value,
                },
                TAG_EXEC => Report::ExecFailed {
                    command: text,
                    errno: value,
                },
                TAG_STATUS => Report::Status(value),
                _ => break,
            });
            buf = &buf[7 + len..];
        }
        out
    }
}

/// A raw wait status as a shell reports it: the exit code, or 128+N for signal N.
pub fn exit_code(raw: i32) -> i32 {
    if libc::WIFEXITED(raw) {
        libc::WEXITSTATUS(raw)
    } else if libc::WIFSIGNALED(raw) {
        128 + libc::WTERMSIG(raw)
    } else {
        EXIT_NSRUN_FAILED
    }
}

pub fn exec_failure_code(errno: i32) -> i32 {
    if errno == libc::ENOENT || errno == libc::ENOTDIR {
        EXIT_NOT_FOUND
    } else {
        EXIT_CANNOT_EXECUTE
    }
}

/// The outcome of a run: what to print, and the exit code.
pub fn outcome(reports: &[Report], init_status: Option<i32>) -> (Option<String>, i32) {
    for r in reports {
        match r {
            Report::SetupFailed { step, errno } => {
                let err = std::io::Error::from_raw_os_error(*errno);
                return (Some(format!("{step}: {err}")), EXIT_NSRUN_FAILED);
            }
            Report::ExecFailed { command, errno } => {
                let err = std::io::Error::from_raw_os_error(*errno);
                let hint = if exec_failure_code(*errno) == EXIT_NOT_FOUND {
                    ": check the name and the PATH of the user it runs as"
                } else {
                    ""
                };
                return (
                    Some(format!("exec {}: {err}{hint}", command.escape_debug())),
                    exec_failure_code(*errno),
                );
            }
            Report::Status(_) => {}
        }
    }
    if let Some(Report::Status(s)) = reports.iter().find(|r| matches!(r, Report::Status(_))) {
        return (None, exit_code(*s));
    }
    match init_status {
        // The init died without reporting (killed from outside): say so.
        Some(raw) => (
            Some(format!(
                "the sandbox ended without a status: its init {}",
                describe(raw)
            )),
            if libc::WIFSIGNALED(raw) {
                exit_code(raw)
            } else {
                EXIT_NSRUN_FAILED
            },
        ),
        None => (
            Some("the sandbox ended without a status".into()),
            EXIT_NSRUN_FAILED,
        ),
    }
}

fn describe(raw: i32) -> String {
    if libc::WIFSIGNALED(raw) {
        let sig = Signal::try_from(libc::WTERMSIG(raw))
            .map(|s| s.as_str())
            .unwrap_or("?");
        format!("was killed by {sig}")
    } else {
        format!("exited {}", libc::WEXITSTATUS(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(code: i32) -> i32 {
        code << 8
    }

    #[test]
    fn wait_status_to_exit_code() {
        assert_eq!(exit_code(exited(0)), 0);
        assert_eq!(exit_code(exited(3)), 3);
        assert_eq!(exit_code(exited(255)), 255);
        assert_eq!(exit_code(9), 137); // killed by SIGKILL
        assert_eq!(exit_code(15 | 0x80), 143); // SIGTERM with a core flag
        assert_eq!(exit_code(2), 130);
    }

    #[test]
    fn exec_errors_map_like_env() {
        assert_eq!(exec_failure_code(libc::ENOENT), 127);
        assert_eq!(exec_failure_code(libc::EACCES), 126);
        assert_eq!(exec_failure_code(libc::ENOEXEC), 126);
    }

    #[test]
    fn records_round_trip_and_stop_at_garbage() {
        let reports = vec![
            Report::ExecFailed {
                command: "nosuch".into(),
                errno: libc::ENOENT,
            },
            Report::Status(exited(127)),
            Report::SetupFailed {
                step: "mount /proc".into(),
                errno: libc::EPERM,
            },
        ];
        let mut buf: Vec<u8> = reports.iter().flat_map(|r| r.encode()).collect();
        assert_eq!(Report::decode_all(&buf), reports);
        buf.extend_from_slice(b"Z123456789");
        assert_eq!(Report::decode_all(&buf), reports);
        assert_eq!(Report::decode_all(&buf[..3]), []);
    }

    #[test]
    fn outcome_prefers_failures_then_status() {
        let (msg, code) = outcome(
            &[
                Report::ExecFailed {
                    command: "nosuch".into(),
                    errno: libc::ENOENT,
                },
                Report::Status(exited(127)),
            ],
            Some(0),
        );
        assert_eq!(code, 127);
        assert!(
            msg.unwrap()
                .starts_with("exec nosuch: No such file or directory (os error 2)")
        );
        let (msg, code) = outcome(&[Report::Status(exited(3))], Some(0));
        assert_eq!((msg, code), (None, 3));
        let (msg, code) = outcome(
            &[Report::SetupFailed {
                step: "mount /sys".into(),
                errno: 1,
            }],
            Some(exited(125)),
        );
        assert_eq!(code, 125);
        assert_eq!(
            msg.unwrap(),
            "mount /sys: Operation not permitted (os error 1)"
        );
        let (msg, code) = outcome(&[], Some(9));
        assert_eq!(code, 137);
        assert!(msg.unwrap().contains("killed by SIGKILL"));
    }

    #[test]
    fn signal_routing() {
        assert!(to_group(Signal::SIGINT));
        assert!(!to_group(Signal::SIGTERM));
        assert!(!to_group(Signal::SIGUSR1));
    }
}
