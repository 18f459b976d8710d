//! Build steps: the status page's Content-Security-Policy hashes, and link
//! flags that make the short commands start faster.

fn main() {
    page_hashes();
    link_flags();
}

/// The SHA-256 of the status page's one inline `<script>` and one inline
/// `<style>`, so its Content-Security-Policy allows exactly those (no
/// `'unsafe-inline'`): `PAGE_SCRIPT_SHA256`, `PAGE_STYLE_SHA256`.
fn page_hashes() {
    use base64::Engine;
    use sha2::Digest;
    const PAGE: &str = "src/http/page.html";
    println!("cargo:rerun-if-changed={PAGE}");
    let html = std::fs::read_to_string(PAGE).expect("the status page");
    for (tag, var) in [
        ("script", "PAGE_SCRIPT_SHA256"),
        ("style", "PAGE_STYLE_SHA256"),
    ] {
        let open = format!("<{tag}>");
        let close = format!("</{tag}>");
        let start = html.find(&open).expect("one inline element") + open.len();
        let end = start + html[start..].find(&close).expect("closed");
        assert!(
            !html[end..].contains(&open),
            "the page has one inline <{tag}>: the policy hashes one"
        );
        let digest = sha2::Sha256::digest(&html.as_bytes()[start..end]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(digest);
        println!("cargo:rustc-env={var}={b64}");
    }
}

/// Link flags for the `stigmer` binary (docs/benchmark.md, "Start and
/// status"). The glibc build only: the musl build is static and non-PIE
/// through `.cargo/config.toml`.
fn link_flags() {
    // The static build's linker (scripts/link-hot-first.sh) orders the
    // functions by this list: a new list is a new link.
    println!("cargo:rerun-if-changed=scripts/hot-text.txt");
    if std::env::var("CARGO_CFG_TARGET_ENV").as_deref() != Ok("gnu") {
        return;
    }
    // Non-PIE: no relocation of the binary's own pointers at each start.
    println!("cargo:rustc-link-arg-bins=-no-pie");
    // The unwinder linked in (libgcc_eh), so `--as-needed` drops
    // libgcc_s.so: one shared library less to map and relocate, and no run
    // of its constructor, which probes the CPU with `cpuid` (a trap to the
    // hypervisor in a VM). Panics still unwind, run destructors and print
    // backtraces.
    println!("cargo:rustc-link-arg-bins=-Wl,--push-state,--whole-archive,-lgcc_eh,--pop-state");
}
