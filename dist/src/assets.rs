//! Man pages and shell completions, generated from the clap definitions.
//!
//! Each file is produced at the path it has in the Debian package (relative
//! to `/`), so `shardcast-dist assets --out DIR` writes exactly the tree the
//! package installs and the package build writes the same files into its
//! staging root.

use crate::bins::{Binary, SHIPPED};
use clap_complete::Shell;
use flate2::{Compression, GzBuilder};
use std::io::Write;
use std::path::PathBuf;

/// One generated file: where it goes (relative to the root of the installed
/// system) and its bytes.
#[derive(Debug)]
pub struct Asset {
    /// Path relative to `/`, e.g. `usr/share/man/man1/shardcast-pub.1.gz`.
    pub path: PathBuf,
    /// The file's contents.
    pub bytes: Vec<u8>,
}

/// The shells we generate completions for, with the directory each looks in
/// on Debian and Ubuntu and the file name it expects there.
///
/// bash-completion loads `completions/NAME` when NAME is first completed;
/// Debian's zsh has `vendor-completions` on its `fpath` (files `_NAME`);
/// fish reads `vendor_completions.d/NAME.fish`.
pub const SHELLS: [(Shell, &str); 3] = [
    (Shell::Bash, "usr/share/bash-completion/completions"),
    (Shell::Zsh, "usr/share/zsh/vendor-completions"),
    (Shell::Fish, "usr/share/fish/vendor_completions.d"),
];

/// Where man pages go: section 1, gzipped (Debian policy 12.1).
pub const MAN_DIR: &str = "usr/share/man/man1";

/// The completion file's name for `bin` in `shell`'s directory.
pub fn completion_file(shell: Shell, bin: &str) -> String {
    match shell {
        Shell::Zsh => format!("_{bin}"),
        Shell::Fish => format!("{bin}.fish"),
        _ => bin.to_string(),
    }
}

/// `bin`'s man page, roff source, as `clap_mangen` renders it (name,
/// synopsis, description, every option with its default, possible values
/// and environment twin, version).
pub fn man_page(bin: &Binary) -> Vec<u8> {
    let mut roff = Vec::new();
    clap_mangen::Man::new(bin.command())
        .render(&mut roff)
        .expect("writing to a Vec cannot fail");
    roff
}

/// `bin`'s completion script for `shell`.
pub fn completion(bin: &Binary, shell: Shell) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut bin.command(), bin.name, &mut script);
    script
}

/// gzip as `gzip -9n` does: best compression, no file name, no time stamp,
/// so the same page always gives the same bytes (reproducible packages).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut z = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::best());
    z.write_all(bytes).expect("writing to a Vec cannot fail");
    z.finish().expect("writing to a Vec cannot fail")
}

/// Every man page and completion file of every shipped binary.
pub fn all() -> Vec<Asset> {
    let mut assets = Vec::new();
    for bin in SHIPPED {
        assets.push(Asset {
            path: PathBuf::from(MAN_DIR).join(format!("{}.1.gz", bin.name)),
            bytes: gzip(&man_page(bin)),
        });
        for (shell, dir) in SHELLS {
            assets.push(Asset {
                path: PathBuf::from(dir).join(completion_file(shell, bin.name)),
                bytes: completion(bin, shell),
            });
        }
    }
    assets
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn pub_bin() -> &'static Binary {
        SHIPPED.iter().find(|b| b.name == "shardcast-pub").unwrap()
    }

    #[test]
    fn the_man_page_names_the_binary_and_documents_flags_with_their_env_twins() {
        let page = String::from_utf8(man_page(pub_bin())).unwrap();
        assert!(page.contains(".TH shardcast-pub 1"), "{page}");
        assert!(page.contains(".SH NAME"));
        assert!(page.contains("\\-\\-bind"), "every flag is listed");
        assert!(page.contains("SHARDCAST_PUB_RATE"), "with its env twin");
    }

    #[test]
    fn completions_register_for_the_binary_in_each_shell() {
        let bash = String::from_utf8(completion(pub_bin(), Shell::Bash)).unwrap();
        // clap_complete names the function `_shardcast__pub`.
        assert!(bash.contains("complete -F _shardcast__pub"), "{bash}");
        assert!(
            bash.contains(" shardcast-pub\n"),
            "registered for the command"
        );
        assert!(bash.contains("--wait-subscribers"));
        let zsh = String::from_utf8(completion(pub_bin(), Shell::Zsh)).unwrap();
        assert!(zsh.starts_with("#compdef shardcast-pub"), "{zsh}");
        let fish = String::from_utf8(completion(pub_bin(), Shell::Fish)).unwrap();
        assert!(fish.contains("complete -c shardcast-pub"), "{fish}");
    }

    #[test]
    fn gzip_is_reproducible_and_round_trips() {
        let page = man_page(pub_bin());
        let z = gzip(&page);
        assert_eq!(z, gzip(&page), "no time stamp or name in the header");
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&z[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, page);
    }

    #[test]
    fn every_binary_gets_a_man_page_and_three_completions() {
        let paths: Vec<String> = all()
            .iter()
            .map(|a| a.path.to_str().unwrap().to_string())
            .collect();
        for b in SHIPPED {
            let n = b.name;
            for want in [
                format!("usr/share/man/man1/{n}.1.gz"),
                format!("usr/share/bash-completion/completions/{n}"),
                format!("usr/share/zsh/vendor-completions/_{n}"),
                format!("usr/share/fish/vendor_completions.d/{n}.fish"),
            ] {
                assert!(paths.contains(&want), "{want} missing from {paths:?}");
            }
        }
        assert_eq!(paths.len(), SHIPPED.len() * 4);
    }
}
