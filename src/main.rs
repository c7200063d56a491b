//! The nsrun binary: everything is in the library (lib.rs).

fn main() {
    std::process::exit(nsrun::run_cli());
}
