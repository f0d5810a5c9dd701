//! The `writ` binary: parse arguments, call into the library.

// The request path allocates small, short-lived buffers on every call;
// mimalloc serves them measurably faster than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    writ::prefer_small_pages();
    writ::cli::main()
}
