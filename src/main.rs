//! The `writ` binary: parse arguments, call into the library.

// The request path allocates small, short-lived buffers on every call;
// mimalloc serves them measurably faster than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // mimalloc asks for transparent huge pages on its arenas, so touching a
    // few kilobytes made the kernel back 2 MiB: half of the broker's
    // resident memory was such pages, mostly empty. Small pages it is; a
    // kernel without the switch (or a sandbox refusing it) changes nothing.
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    writ::cli::main()
}
