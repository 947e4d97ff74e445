//! Formatting helpers shared by subcommands.

use clap::ValueEnum;

/// How a subcommand prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum OutputFormat {
    /// Readable text.
    #[default]
    Human,
    /// One JSON document on standard output.
    Json,
}

/// Formats a byte count the way people read it: "2 GiB (2147483648 bytes)".
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = 0;
    let mut value = bytes as f64;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.3} {} ({bytes} bytes)", UNITS[unit]).replace(".000 ", " ")
    }
}

/// Parses a size with an optional binary suffix: 512, 64K, 10M, 2G, 1T.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'B' => 1,
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                'P' => 1 << 50,
                _ => return Err(format!("unknown size suffix '{c}' in '{s}'")),
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{s}' is not a size (examples: 512, 64K, 10M, 2G, 1T)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("size '{s}' does not fit in 64 bits"))
}

/// An error followed by its causes, "error: cause: cause", so the operating
/// system's reason (permission denied, no space left) reaches the user.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("10M"), Ok(10 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert!(parse_size("12X").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999P").is_err());
    }

    #[test]
    fn sizes_print_readably() {
        assert_eq!(human_size(512), "512 bytes");
        assert_eq!(human_size(2 << 30), "2 GiB (2147483648 bytes)");
        assert_eq!(human_size(1536), "1.500 KiB (1536 bytes)");
    }
}
