//! nsrun: parse, plan, run; print an error once, as one line; map the outcome to an exit code.
//!
//! The binary (main.rs) only calls [`run_cli`]. The library exists so that the fuzz
//! targets (fuzz/) can reach the parsers, through [`fuzz`]; nothing else is public.

mod addr;
mod child;
mod cli;
mod control;
mod decide;
mod dns;
mod egress;
mod failpoint;
mod firewall;
#[doc(hidden)]
pub mod fuzz;
mod holder;
mod host;
mod info;
mod locks;
mod names;
mod netlink;
mod networks;
mod pcap;
mod plan;
mod proto;
mod refusals;
mod relay;
#[cfg(test)]
mod robustness;
mod runtime;
mod sandbox;
mod supervise;
mod sys;
mod users;
mod xtables;

use clap::Parser;
use clap::error::ErrorKind;

use crate::supervise::EXIT_NSRUN_FAILED;

/// Runs nsrun with the process's arguments; returns the exit code.
pub fn run_cli() -> i32 {
    sys::default_sigchld();
    if std::env::var_os(holder::HOLDER_ENV).is_some()
        && std::env::args_os()
            .next()
            .is_some_and(|a| a == "nsrun-holder")
    {
        holder::holder_main();
    }
    match cli::Cli::try_parse() {
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            0
        }
        Err(e) => {
            say(&format!("nsrun: {}", usage_error(&e)));
            EXIT_NSRUN_FAILED
        }
        Ok(cli) if runtime::wanted(&cli) => match runtime::run(cli) {
            Ok(code) => code,
            Err(e) => {
                say(&format!("nsrun: {}", one_line(&format!("{e:#}"))));
                EXIT_NSRUN_FAILED
            }
        },
        Ok(cli) => match plan::from_cli(cli).and_then(sandbox::run) {
            Ok(code) => code,
            Err(e) => {
                say(&format!("nsrun: {}", one_line(&format!("{e:#}"))));
                EXIT_NSRUN_FAILED
            }
        },
    }
}

/// clap's multi-line usage errors, as one line that says what to do.
fn usage_error(e: &clap::Error) -> String {
    let rendered = e.to_string();
    let first = rendered
        .lines()
        .next()
        .unwrap_or("")
        .trim_start_matches("error: ");
    match e.kind() {
        ErrorKind::MissingRequiredArgument => {
            "missing COMMAND: give the program to run after '--', e.g. 'nsrun -- curl http://198.51.100.1/' (see 'nsrun --help')".into()
        }
        ErrorKind::UnknownArgument => {
            let tip = rendered
                .lines()
                .find_map(|l| l.trim().strip_prefix("tip: "))
                .map(|t| format!("; {t}"))
                .unwrap_or_default();
            format!("{first}{tip}; put the command after '--' if the option is its own, e.g. 'nsrun -- ls -l' (see 'nsrun --help')")
        }
        // An option of a new sandbox with --join, --stop, --list, --disconnect or
        // --reconnect (clap lists them all).
        ErrorKind::ArgumentConflict if rendered.contains("\n  --join <") => {
            let arg = match e.get(clap::error::ContextKind::InvalidArg) {
                Some(clap::error::ContextValue::String(a)) => a.clone(),
                _ => "this option".into(),
            };
            let arg = arg.split(' ').next().unwrap_or_default();
            format!(
                "{arg} is for starting a sandbox; --join, --stop, --list, --disconnect and --reconnect act on a running one, which keeps the options it started with, e.g. 'nsrun --name web -p 8080:80 -- ./server', then 'nsrun --join web -- ss -ltn'"
            )
        }
        _ => format!("{}; see 'nsrun --help'", one_line(first)),
    }
}

fn one_line(s: &str) -> String {
    s.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Writes one line to stderr; a closed or full stderr is not worth dying for (Rust's
/// `eprintln!` panics then, which would lose the command's exit status).
pub fn say(line: &str) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}
