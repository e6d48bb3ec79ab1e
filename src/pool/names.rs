//! Volume names: single path components that are safe to use inside a pool directory.
//!
//! Owns: the naming rule of design.md — no `/`, not `.` or `..`, no NUL, no leading `.`
//! (hidden names are qpool's own temporary files), at most 255 bytes — plus no control
//! characters, which no tool prints or quotes reliably.
//! Must not: touch the filesystem.

/// Longest name a Linux filesystem takes (NAME_MAX).
pub const MAX_NAME_BYTES: usize = 255;

/// Prefix of qpool's temporary files; such names are never volumes.
pub const TEMP_PREFIX: &str = ".qpool-tmp-";

/// Prefix of the journal an in-place resize keeps while it runs; never a volume either.
pub const JOURNAL_PREFIX: &str = ".qpool-resize-";

/// Checks a volume name; the error says what is wrong with it.
pub fn check(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("the name is empty");
    }
    if name.len() > MAX_NAME_BYTES {
        return Err("the name is longer than 255 bytes");
    }
    if name == "." || name == ".." {
        return Err("'.' and '..' are not volume names");
    }
    if name.contains('/') {
        return Err("the name contains '/' (a volume name is a single path component)");
    }
    if name.contains('\0') {
        return Err("the name contains a NUL byte");
    }
    if name.starts_with('.') {
        return Err("the name starts with '.' (hidden names are reserved)");
    }
    if name.chars().any(char::is_control) {
        return Err("the name contains a control character");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_pass() {
        for ok in [
            "disk1.qcow2",
            "a",
            "with space.img",
            "ünïcode.raw",
            &"x".repeat(255),
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in [
            "",
            ".",
            "..",
            "../etc/passwd",
            "a/b",
            "/abs",
            "nul\0byte",
            ".hidden",
            ".qpool-tmp-x",
            "new\nline",
            &"x".repeat(256),
        ] {
            assert!(check(bad).is_err(), "{bad:?}");
        }
    }
}
