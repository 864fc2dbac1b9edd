//! Resource quantities (`100m`, `64Mi`, `1e3`): parsing for comparisons, and the canonical form the
//! real server stores (`1000m` becomes `1`, `1024Mi` becomes `1Gi`).

/// A parsed quantity: its value in nano-units and the notation it was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Quantity {
    pub nanos: i128,
    format: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    DecimalSi,
    BinarySi,
    DecimalExponent,
}

const NANO: i128 = 1_000_000_000;

impl Quantity {
    pub(crate) fn parse(s: &str) -> Option<Quantity> {
        let s = s.trim();
        let (neg, body) = match s.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let num_end = body
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(body.len());
        let (num, suffix) = body.split_at(num_end);
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return None;
        }
        let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
        let digits: String = format!("{int_part}{frac_part}");
        let mantissa: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().ok()?
        };
        let frac_len = frac_part.len() as i32;
        // value = mantissa * 10^-frac_len * multiplier
        let (format, pow10, pow2) = match suffix {
            "" => (Format::DecimalSi, 0, 0),
            "n" => (Format::DecimalSi, -9, 0),
            "u" => (Format::DecimalSi, -6, 0),
            "m" => (Format::DecimalSi, -3, 0),
            "k" => (Format::DecimalSi, 3, 0),
            "M" => (Format::DecimalSi, 6, 0),
            "G" => (Format::DecimalSi, 9, 0),
            "T" => (Format::DecimalSi, 12, 0),
            "P" => (Format::DecimalSi, 15, 0),
            "E" => (Format::DecimalSi, 18, 0),
            "Ki" => (Format::BinarySi, 0, 10),
            "Mi" => (Format::BinarySi, 0, 20),
            "Gi" => (Format::BinarySi, 0, 30),
            "Ti" => (Format::BinarySi, 0, 40),
            "Pi" => (Format::BinarySi, 0, 50),
            "Ei" => (Format::BinarySi, 0, 60),
            e if e.starts_with(['e', 'E']) => {
                (Format::DecimalExponent, e[1..].parse::<i32>().ok()?, 0)
            }
            _ => return None,
        };
        let exp = pow10 - frac_len + 9;
        let mut v = mantissa.checked_mul(1i128.checked_shl(pow2)?)?;
        if exp >= 0 {
            v = v.checked_mul(10i128.checked_pow(exp as u32)?)?;
        } else {
            let d = 10i128.checked_pow((-exp) as u32)?;
            // Round up to the nearest nano, like the real server.
            v = (v + d - 1) / d;
        }
        Some(Quantity {
            nanos: if neg { -v } else { v },
            format,
        })
    }

    /// The canonical string.
    pub(crate) fn canonical(&self) -> String {
        let (neg, v) = (self.nanos < 0, self.nanos.abs());
        let sign = if neg { "-" } else { "" };
        if v == 0 {
            return "0".into();
        }
        if self.format == Format::BinarySi && v % NANO == 0 {
            let mut n = v / NANO;
            let mut i = 0;
            while i < 6 && n % 1024 == 0 && n >= 1024 {
                n /= 1024;
                i += 1;
            }
            const SUFFIX: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
            return format!("{sign}{n}{}", SUFFIX[i]);
        }
        // Decimal: strip trailing zeros, then pick the largest exponent (multiple of 3) that keeps
        // the mantissa an integer.
        let mut m = v;
        let mut scale = -9i32;
        while m % 10 == 0 {
            m /= 10;
            scale += 1;
        }
        let mut e = scale.div_euclid(3) * 3;
        if self.format == Format::DecimalExponent {
            e = scale;
            let mant = m;
            return if e == 0 {
                format!("{sign}{mant}")
            } else {
                format!("{sign}{mant}e{e}")
            };
        }
        e = e.min(18);
        let mant = m * 10i128.pow((scale - e) as u32);
        let suffix = match e {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            0 => "",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            _ => "E",
        };
        format!("{sign}{mant}{suffix}")
    }
}

/// Canonicalizes a quantity string, leaving unparsable strings as they are (validation reports them).
pub(crate) fn canonicalize(s: &str) -> String {
    Quantity::parse(s)
        .map(|q| q.canonical())
        .unwrap_or_else(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms_match_the_real_server() {
        for (input, want) in [
            ("1000m", "1"),
            ("1500m", "1500m"),
            ("0.5", "500m"),
            ("100m", "100m"),
            ("80Gi", "80Gi"),
            ("1024Mi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("64Mi", "64Mi"),
            ("2000", "2k"),
            ("1200", "1200"),
            ("8", "8"),
            ("32Gi", "32Gi"),
            ("110", "110"),
            ("0", "0"),
        ] {
            assert_eq!(canonicalize(input), want, "{input}");
        }
    }

    #[test]
    fn equal_quantities_compare_equal_across_notations() {
        assert_eq!(
            Quantity::parse("1").unwrap().nanos,
            Quantity::parse("1000m").unwrap().nanos
        );
        assert_eq!(
            Quantity::parse("1Gi").unwrap().nanos,
            Quantity::parse("1024Mi").unwrap().nanos
        );
    }
}
