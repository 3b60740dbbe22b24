//! Makes `shardcast-keygen`'s flags reachable from this crate.
//!
//! Its `Flags` are private to its bin file (`publisher/src/bin/keygen.rs`),
//! so `bins::keygen` compiles that file with `include!`, next to a function
//! that hands out the `Command`: the man page and completions then come from
//! the real definition and cannot drift from it. `include!` takes items
//! only, so the file's inner doc comments (`//!`) are turned into plain
//! comments in the copy this script writes. If `Flags` ever moves into the
//! publisher library (as `shardcast-pub`'s did, `publisher::cli`), this
//! script goes.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let src = manifest.join("../publisher/src/bin/keygen.rs");
    println!("cargo:rerun-if-changed={}", src.display());
    let text =
        std::fs::read_to_string(&src).unwrap_or_else(|e| panic!("reading {}: {e}", src.display()));
    let mut copy = String::with_capacity(text.len());
    for line in text.lines() {
        match line.strip_prefix("//!") {
            Some(rest) => copy.push_str(&format!("//{rest}\n")),
            None => {
                copy.push_str(line);
                copy.push('\n');
            }
        }
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("keygen.rs");
    std::fs::write(&out, copy).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
}
