//! The names a destination uses are its own. A client's container name is
//! at most a label in serve's messages, and only when it is a plain name;
//! the container, its bundle and its Docker or Podman object are named
//! after serve's own run.

use anyhow::{bail, Result};

use crate::run::RunId;

/// The longest label serve accepts.
const MAX_LABEL: usize = 64;

/// Refuses, with the reason, a name that is not plain: letters, digits,
/// `_`, `.` and `-`, no leading dot, at most 64 characters.
pub(crate) fn check_label(name: &str) -> Result<()> {
    if name.is_empty() {
        bail!("the client sent an empty container name");
    }
    if name.len() > MAX_LABEL {
        bail!(
            "the client's container name is {} characters long: at most {MAX_LABEL}",
            name.len()
        );
    }
    if name.starts_with('.') {
        bail!("the client's container name {name:?} starts with a dot");
    }
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if let Some(c) = name.chars().find(|c| !plain(*c)) {
        bail!(
            "the client's container name {name:?} holds {c:?}: only letters, digits, '_', '.' and '-' are accepted"
        );
    }
    Ok(())
}

/// The destination's container, named after serve's own run (the `-dest`
/// ending marks a destination's bundle).
pub(crate) fn own_container(run: &RunId) -> String {
    format!("ckpt-{}-dest", run.as_str())
}

/// Refuses an image reference that is not a plain one (Docker's and
/// Podman's references: name, tag, digest).
pub(crate) fn check_image_reference(reference: &str) -> Result<()> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_.-:/@".contains(c);
    if reference.is_empty() || reference.len() > 255 || !reference.chars().all(plain) {
        bail!("the client sent an image reference that is not a plain one: {reference:?}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_are_labels() {
        for good in [
            "ckpt-20261204-1200-ab12-t0-n0",
            "a",
            "A_b.c-9",
            &"x".repeat(64),
        ] {
            check_label(good).unwrap();
        }
        for (bad, why) in [
            ("/etc/cron.d/x", "'/'"),
            ("../../tmp/x", "dot"),
            ("a/../b", "'/'"),
            ("..", "dot"),
            (".hidden", "dot"),
            ("", "empty"),
            ("a b", "' '"),
            ("a\0b", "'\\0'"),
            (&"x".repeat(65), "65 characters"),
        ] {
            let e = check_label(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn serve_names_its_own_container() {
        let run = RunId::new();
        let name = own_container(&run);
        check_label(&name).unwrap();
        assert!(name.ends_with("-dest") && name.contains(run.as_str()));
    }

    #[test]
    fn image_references_are_plain() {
        check_image_reference("ckpt-workload:20261204-f0").unwrap();
        check_image_reference("localhost/ckpt@sha256:abc").unwrap();
        assert!(check_image_reference("a b").is_err());
        assert!(check_image_reference("").is_err());
    }
}
