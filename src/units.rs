//! libvirt scaled integers and virsh's human-readable sizes.
//!
//! Owns: parsing of `<capacity unit='G'>10</capacity>`-style values and of virsh's size
//! arguments (`10G`, `512M`, `1TB`), with libvirt's unit table and overflow rules, and
//! formatting of sizes the way `virsh vol-info` prints them (`1.00 GiB`).
//! Must not: touch files, know about volumes or XML documents.

use thiserror::Error;

/// A size that could not be parsed or scaled.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SizeError {
    /// The number part is empty, negative or has non-digit characters.
    #[error("invalid size '{0}': expected a non-negative integer")]
    NotANumber(String),
    /// The unit is not one of libvirt's units.
    #[error(
        "unknown unit '{0}' (expected b, bytes, KB, K, KiB, MB, M, MiB, GB, G, GiB, TB, T, TiB, PB, P, PiB, EB, E or EiB)"
    )]
    UnknownUnit(String),
    /// The scaled value does not fit in 64 bits.
    #[error("size {value} {unit} is too large (the limit is 18446744073709551615 bytes)")]
    Overflow {
        /// The number as written.
        value: String,
        /// The unit as written.
        unit: String,
    },
}

/// Multiplier for a libvirt unit name (case-insensitive, like libvirt's `virScaleInteger`).
///
/// An empty unit means bytes. `K`, `KiB` are powers of 1024; `KB` is a power of 1000.
pub fn unit_multiplier(unit: &str) -> Result<u64, SizeError> {
    let lower = unit.to_ascii_lowercase();
    if lower.is_empty() || lower == "b" || lower == "byte" || lower == "bytes" {
        return Ok(1);
    }
    let mut chars = lower.chars();
    let prefix = chars.next().unwrap_or('b');
    let rest = chars.as_str();
    let base: u64 = match rest {
        "" | "ib" => 1024,
        "b" => 1000,
        _ => return Err(SizeError::UnknownUnit(unit.to_string())),
    };
    let power = match prefix {
        'k' => 1,
        'm' => 2,
        'g' => 3,
        't' => 4,
        'p' => 5,
        'e' => 6,
        _ => return Err(SizeError::UnknownUnit(unit.to_string())),
    };
    Ok(base.pow(power))
}

/// Parses the digits of a scaled integer (surrounding whitespace allowed, no sign).
fn parse_digits(number: &str) -> Result<u64, SizeError> {
    let trimmed = number.trim();
    if trimmed.is_empty() || !trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SizeError::NotANumber(number.trim().to_string()));
    }
    trimmed.parse::<u64>().map_err(|_| SizeError::Overflow {
        value: trimmed.to_string(),
        unit: "bytes".to_string(),
    })
}

/// Parses a libvirt XML scaled integer: the element text and its optional `unit` attribute.
///
/// ```
/// assert_eq!(qpool::units::parse_scaled("10", Some("G")), Ok(10 << 30));
/// assert_eq!(qpool::units::parse_scaled("5", Some("KB")), Ok(5000));
/// ```
pub fn parse_scaled(number: &str, unit: Option<&str>) -> Result<u64, SizeError> {
    let value = parse_digits(number)?;
    let unit = unit.unwrap_or("");
    let multiplier = unit_multiplier(unit)?;
    value
        .checked_mul(multiplier)
        .ok_or_else(|| SizeError::Overflow {
            value: number.trim().to_string(),
            unit: if unit.is_empty() { "bytes" } else { unit }.to_string(),
        })
}

/// Parses a virsh size argument such as `10G`, `512`, `1TB` or `4KiB` (default bytes).
pub fn parse_virsh_size(arg: &str) -> Result<u64, SizeError> {
    let digits_end = arg
        .char_indices()
        .find(|&(_, c)| !c.is_ascii_digit())
        .map_or(arg.len(), |(i, _)| i);
    let (number, unit) = arg.split_at(digits_end);
    if number.is_empty() {
        return Err(SizeError::NotANumber(arg.to_string()));
    }
    parse_scaled(number, Some(unit))
}

/// Scales `bytes` into virsh's display unit: `(value, unit)` with binary units B … EiB.
///
/// This is virsh's `vshPrettyCapacity`: the largest unit whose next step up the value does
/// not reach.
pub fn pretty_capacity(bytes: u64) -> (f64, &'static str) {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut index = 0usize;
    let mut limit: u128 = 1024;
    while index + 1 < UNITS.len() && u128::from(bytes) >= limit {
        index += 1;
        limit *= 1024;
    }
    #[allow(clippy::cast_precision_loss)] // display only, like virsh's double arithmetic
    let value = bytes as f64 / (1u128 << (10 * index)) as f64;
    (value, UNITS[index])
}

/// Formats a size like virsh does in tables and `vol-info`: `"%.2f %s"`.
pub fn format_pretty(bytes: u64) -> String {
    let (value, unit) = pretty_capacity(bytes);
    format!("{value:.2} {unit}")
}

/// Rounds `value` up to a multiple of `align` (a power of two), or `None` on overflow.
pub fn round_up(value: u64, align: u64) -> Option<u64> {
    debug_assert!(align.is_power_of_two());
    value.checked_add(align - 1).map(|v| v & !(align - 1))
}

/// Integer division rounding up.
pub fn div_ceil(value: u64, divisor: u64) -> u64 {
    value.div_ceil(divisor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_libvirt_unit_scales_as_documented() {
        let table: &[(&str, u64)] = &[
            ("", 1),
            ("b", 1),
            ("B", 1),
            ("bytes", 1),
            ("byte", 1),
            ("KB", 1000),
            ("K", 1024),
            ("KiB", 1024),
            ("k", 1024),
            ("kib", 1024),
            ("MB", 1_000_000),
            ("M", 1 << 20),
            ("MiB", 1 << 20),
            ("GB", 1_000_000_000),
            ("G", 1 << 30),
            ("GiB", 1 << 30),
            ("TB", 1_000_000_000_000),
            ("T", 1 << 40),
            ("TiB", 1 << 40),
            ("PB", 1_000_000_000_000_000),
            ("P", 1 << 50),
            ("PiB", 1 << 50),
            ("EB", 1_000_000_000_000_000_000),
            ("E", 1 << 60),
            ("EiB", 1 << 60),
        ];
        for &(unit, multiplier) in table {
            assert_eq!(
                parse_scaled("3", Some(unit)),
                Ok(3 * multiplier),
                "unit {unit:?}"
            );
        }
    }

    #[test]
    fn absent_unit_means_bytes() {
        assert_eq!(parse_scaled("1073741824", None), Ok(1 << 30));
    }

    #[test]
    fn surrounding_whitespace_is_accepted() {
        assert_eq!(parse_scaled("\n  42\n", Some("K")), Ok(42 * 1024));
    }

    #[test]
    fn negative_numbers_are_refused() {
        assert_eq!(
            parse_scaled("-1", None),
            Err(SizeError::NotANumber("-1".into()))
        );
    }

    #[test]
    fn garbage_is_refused() {
        for bad in ["", "abc", "1.5", "0x10", "1e3", "+5", "10 G"] {
            assert!(
                matches!(parse_scaled(bad, None), Err(SizeError::NotANumber(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn unknown_units_are_refused() {
        for bad in ["Z", "ZiB", "KIBB", "kilo", " K", "iB", "KBi"] {
            assert_eq!(
                parse_scaled("1", Some(bad)),
                Err(SizeError::UnknownUnit(bad.into())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn overflow_is_refused() {
        assert!(matches!(
            parse_scaled("16", Some("EiB")),
            Err(SizeError::Overflow { .. })
        ));
        assert!(matches!(
            parse_scaled("18446744073709551616", None),
            Err(SizeError::Overflow { .. })
        ));
        assert_eq!(parse_scaled("18446744073709551615", None), Ok(u64::MAX));
        assert_eq!(parse_scaled("15", Some("E")), Ok(15 << 60));
    }

    #[test]
    fn virsh_sizes_take_suffixes() {
        assert_eq!(parse_virsh_size("10G"), Ok(10 << 30));
        assert_eq!(parse_virsh_size("512"), Ok(512));
        assert_eq!(parse_virsh_size("1TB"), Ok(1_000_000_000_000));
        assert_eq!(parse_virsh_size("4KiB"), Ok(4096));
        assert!(parse_virsh_size("G").is_err());
        assert!(parse_virsh_size("-1G").is_err());
        assert!(parse_virsh_size("1.5G").is_err());
    }

    #[test]
    fn pretty_capacity_matches_virsh() {
        assert_eq!(format_pretty(0), "0.00 B");
        assert_eq!(format_pretty(1023), "1023.00 B");
        assert_eq!(format_pretty(1024), "1.00 KiB");
        assert_eq!(format_pretty(200_704), "196.00 KiB");
        assert_eq!(format_pretty(196_616), "192.01 KiB");
        assert_eq!(format_pretty(5 << 30), "5.00 GiB");
        assert_eq!(format_pretty(u64::MAX), "16.00 EiB");
        // glibc printf rounds exact ties to even; so does Rust's formatter.
        assert_eq!(format_pretty(128), "128.00 B");
        assert_eq!(format_pretty(1024 + 128), "1.12 KiB");
    }

    proptest::proptest! {
        #[test]
        fn scaled_values_round_trip(value in 0u64..(1 << 30), unit in proptest::sample::select(vec!["", "b", "K", "KiB", "KB", "M", "MB", "G", "GiB"])) {
            let multiplier = unit_multiplier(unit).unwrap();
            let parsed = parse_scaled(&value.to_string(), Some(unit));
            proptest::prop_assert_eq!(parsed, Ok(value * multiplier));
        }

        #[test]
        fn any_text_parses_or_errors_without_panicking(text in ".{0,24}", unit in ".{0,6}") {
            let _ = parse_scaled(&text, Some(&unit));
            let _ = parse_virsh_size(&text);
        }

        #[test]
        fn scaling_never_wraps(value: u64, unit in proptest::sample::select(vec!["K", "M", "G", "T", "P", "E", "KB", "EB"])) {
            let multiplier = unit_multiplier(unit).unwrap();
            match parse_scaled(&value.to_string(), Some(unit)) {
                Ok(v) => proptest::prop_assert_eq!(Some(v), value.checked_mul(multiplier)),
                Err(SizeError::Overflow { .. }) => proptest::prop_assert!(value.checked_mul(multiplier).is_none()),
                Err(e) => proptest::prop_assert!(false, "unexpected {e}"),
            }
        }
    }

    #[test]
    fn round_up_handles_overflow() {
        assert_eq!(round_up(1, 512), Some(512));
        assert_eq!(round_up(512, 512), Some(512));
        assert_eq!(round_up(u64::MAX, 512), None);
    }
}
