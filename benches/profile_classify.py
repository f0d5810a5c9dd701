"""Classes the samples of `perf script -F comm,tid,ip,sym` (stacks from
`perf record --call-graph dwarf` on writ) by where the CPU went, for
benches/profile_https.sh. A sample belongs to the first class that claims
it: the grant pipeline by any frame, then the kernel's work by its syscall,
then the innermost frame of a known library.

    python3 benches/profile_classify.py stacks.txt [--show CLASS]
"""

import collections
import sys

# (frame prefixes, class), tried on each frame from the innermost out.
LIBRARIES = [
    (("rustls::", "<rustls::", "tokio_rustls", "<tokio_rustls", "ring_core", "ring::aead"),
     "TLS records (rustls, AES-GCM)"),
    (("hyper::", "<hyper::", "httparse"), "HTTP/1 (hyper)"),
    (("writ::server::form", "serde_urlencoded", "<serde_urlencoded", "form_urlencoded",
      "<form_urlencoded", "percent_encoding"), "handler: form parse"),
    (("writ::audit", "<writ::audit"), "handler: audit record"),
    (("writ::server::token::render", "serde_json::ser", "<&mut serde_json::ser", "format_escaped"),
     "handler: JSON reply"),
    (("axum::", "<axum::", "tower::", "<tower::", "matchit", "<T as tower", "<F as axum"),
     "axum routing, tower middleware"),
    (("tokio::runtime", "<tokio::runtime"), "tokio scheduler"),
    (("writ::server", "<writ::server", "writ::attest::peer"), "handler: other"),
]


def read_stacks(path):
    """Yields each sample's frames, innermost first, as bare symbol names."""
    frames = []
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            line = line.rstrip("\n")
            if not line:
                if frames:
                    yield frames
                frames = []
            elif line[0] in " \t":
                parts = line.strip().split(None, 1)
                frames.append((parts[1] if len(parts) > 1 else "").split("+0x")[0])
    if frames:
        yield frames


def classify(frames):
    """The class of one sample."""
    stack = " | ".join(frames)
    if ("asm_sysvec_reschedule_ipi" in stack or frames[0] == "irqentry_exit_to_user_mode"
            or ("exit_to_user_mode_loop" in stack and "schedule" in stack)):
        return "kernel: preempted (the load generator runs)"
    if "writ::grant::pipeline::run" in stack:
        if "Minter::" in stack:
            return "grant: mint (ES256 signature, claims)"
        if "policy::decide" in stack or "PolicySnapshot" in stack:
            return "grant: decide (Cedar)"
        if "attest" in stack:
            return "grant: attest"
        return "grant: other"
    if "writev" in stack:
        return "kernel: send the response (loopback TCP, wakes the client)"
    if "__libc_recv" in stack or "recvfrom" in stack:
        return "kernel: receive"
    if "epoll_wait" in stack or "futex" in stack:
        return "kernel: park and wake (epoll, futex)"
    if "audit::write_loop" in stack:
        return "audit writer (file append)"
    if "cedar_policy" in stack:
        # Cedar's recursion is deeper than the 16 KiB of stack perf copies.
        return "grant: decide (Cedar; stack cut short)"
    for frame in frames:
        for prefixes, name in LIBRARIES:
            if frame.startswith(prefixes):
                return name
    return "other"


def main():
    samples = list(read_stacks(sys.argv[1]))
    if not samples:
        sys.exit("no samples")
    counts = collections.Counter(classify(s) for s in samples)
    for name, n in counts.most_common():
        print(f"{100 * n / len(samples):5.1f} %  {name}")
    print(f"{len(samples)} samples")
    if "--show" in sys.argv:
        wanted = sys.argv[sys.argv.index("--show") + 1]
        shown = collections.Counter(
            " < ".join(f[:70] for f in s[:4]) for s in samples if classify(s) == wanted)
        for stack, n in shown.most_common(25):
            print(f"{100 * n / len(samples):5.2f} %  {stack}")


if __name__ == "__main__":
    main()
