//! The `writ` binary: parse arguments, call into the library.

fn main() -> std::process::ExitCode {
    writ::cli::main()
}
