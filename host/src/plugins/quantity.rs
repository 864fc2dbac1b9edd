//! Exact parsing of Kubernetes resource quantities (`"100m"`, `"1.5"`, `"2Gi"`, `"500M"`,
//! `"1e3"`), as `k8s.io/apimachinery/pkg/api/resource.Quantity` reads them.
//!
//! A quantity is `<sign>?<digits>[.<digits>]<suffix>` where the suffix is a binary SI unit
//! (`Ki` … `Ei`), a decimal SI unit (`n u m "" k M G T P E`) or a decimal exponent (`e3`,
//! `E-2`). Values are computed exactly and rounded up (away from zero) as upstream
//! `Quantity.MilliValue()` and `Value()` do: `"0.1m"` of CPU is 1 millicore, `"1.5"` bytes is 2.
//! Results that do not fit an `i64` saturate at its bounds.

use thiserror::Error;

/// A string that is not a Kubernetes quantity.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid quantity {input:?}: {reason}")]
pub struct QuantityError {
    /// The text that was parsed.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Nano-units (10⁻⁹ of the unit) per unit: sums are kept in nano-units so that adding
/// sub-unit quantities rounds once, at the end, as upstream's exact arithmetic does.
pub const NANOS_PER_UNIT: i128 = 1_000_000_000;

/// The quantity in whole units, rounded up: `"2Gi"` → 2147483648, `"100m"` → 1.
///
/// # Errors
/// [`QuantityError`] if `s` is not a quantity.
pub fn parse_value(s: &str) -> Result<i64, QuantityError> {
    parse_nanos(s).map(nanos_to_value)
}

/// The quantity in thousandths of its unit, rounded up: `"1.5"` → 1500, `"100m"` → 100.
///
/// # Errors
/// [`QuantityError`] if `s` is not a quantity.
pub fn parse_milli(s: &str) -> Result<i64, QuantityError> {
    parse_nanos(s).map(nanos_to_milli)
}

/// Converts nano-units to whole units, rounding away from zero and saturating.
pub fn nanos_to_value(nanos: i128) -> i64 {
    saturate(div_away(nanos, NANOS_PER_UNIT))
}

/// Converts nano-units to milli-units, rounding away from zero and saturating.
pub fn nanos_to_milli(nanos: i128) -> i64 {
    saturate(div_away(nanos, 1_000_000))
}

fn div_away(n: i128, d: i128) -> i128 {
    let q = n / d;
    if n % d == 0 {
        q
    } else if n > 0 {
        q + 1
    } else {
        q - 1
    }
}

fn saturate(v: i128) -> i64 {
    v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// The quantity in nano-units, rounded away from zero, saturating at the `i128` bounds.
///
/// # Errors
/// [`QuantityError`] if `s` is not a quantity.
pub fn parse_nanos(s: &str) -> Result<i128, QuantityError> {
    let err = |reason| QuantityError {
        input: s.to_string(),
        reason,
    };
    // Surrounding spaces are dropped, as upstream's JSON decoding of a Quantity does.
    let s = s.trim();
    let (negative, rest) = match s.as_bytes().first() {
        None => return Err(err("empty string")),
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        Some(_) => (false, s),
    };
    let number_len = rest
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (number, suffix) = rest.split_at(number_len);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty() {
        return Err(err("no digits"));
    }
    if frac.contains('.') {
        return Err(err("more than one decimal point"));
    }
    let (exp10, exp2) = suffix_exponents(suffix).ok_or_else(|| err("unknown suffix"))?;
    // The value is digits × 10^(exp10 - frac.len()) × 2^exp2; in nanos add 9 to the exponent.
    let exp = exp10 - frac.len() as i64 + 9;
    let magnitude = fast_magnitude(int, frac, exp, exp2)
        .unwrap_or_else(|| exact_magnitude(int, frac, exp, exp2));
    Ok(if negative { -magnitude } else { magnitude })
}

/// `(decimal exponent, binary exponent)` of a suffix.
fn suffix_exponents(suffix: &str) -> Option<(i64, u32)> {
    Some(match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        _ => {
            let exponent = suffix.strip_prefix(['e', 'E'])?;
            let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // Exponents this large saturate anyway; clamping keeps the arithmetic in range.
            (
                exponent
                    .parse::<i64>()
                    .unwrap_or(if exponent.starts_with('-') {
                        -1000
                    } else {
                        1000
                    })
                    .clamp(-1000, 1000),
                0,
            )
        }
    })
}

/// The common case in `i128` arithmetic; `None` when it could overflow.
fn fast_magnitude(int: &str, frac: &str, exp: i64, exp2: u32) -> Option<i128> {
    if int.len() + frac.len() > 30 {
        return None;
    }
    let mut digits: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        digits = digits * 10 + i128::from(b - b'0');
    }
    let scaled = digits.checked_mul(1i128 << exp2)?;
    if exp >= 0 {
        scaled.checked_mul(10i128.checked_pow(u32::try_from(exp).ok()?)?)
    } else {
        let den = 10i128.checked_pow(u32::try_from(-exp).ok()?)?;
        Some(div_away(scaled, den))
    }
}

/// Any size: multiplies the decimal digits by `2^exp2` digit by digit, then moves the decimal
/// point by `exp`; the integer part is the result, plus one if any fraction digit is non-zero.
fn exact_magnitude(int: &str, frac: &str, exp: i64, exp2: u32) -> i128 {
    let mut digits: Vec<u8> = int.bytes().chain(frac.bytes()).map(|b| b - b'0').collect();
    let first_nonzero = digits.iter().position(|&d| d != 0);
    let Some(first_nonzero) = first_nonzero else {
        return 0;
    };
    // Digits before the decimal point, counting from the first non-zero digit. `exp` applies
    // to the digits read as an integer, so the point moves by `exp + frac.len()`.
    let mut point = int.len() as i64 - first_nonzero as i64 + frac.len() as i64;
    digits.drain(..first_nonzero);
    for _ in 0..exp2 {
        let mut carry = 0u8;
        for d in digits.iter_mut().rev() {
            let v = *d * 2 + carry;
            *d = v % 10;
            carry = v / 10;
        }
        if carry > 0 {
            digits.insert(0, carry);
            point += 1;
        }
    }
    point += exp;
    if point > 39 {
        return i128::MAX;
    }
    if point <= 0 {
        return 1; // a non-zero value below one nano-unit rounds up to one
    }
    let point = point as usize;
    let mut value: i128 = 0;
    for i in 0..point {
        let d = digits.get(i).copied().unwrap_or(0);
        value = match value
            .checked_mul(10)
            .and_then(|v| v.checked_add(i128::from(d)))
        {
            Some(v) => v,
            None => return i128::MAX,
        };
    }
    let fraction_nonzero = digits.iter().skip(point).any(|&d| d != 0);
    value + i128::from(fraction_nonzero)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities_convert_to_millicores() {
        assert_eq!(parse_milli("100m"), Ok(100));
        assert_eq!(parse_milli("1"), Ok(1000));
        assert_eq!(parse_milli("1.5"), Ok(1500));
        assert_eq!(parse_milli(".5"), Ok(500));
        assert_eq!(parse_milli("2."), Ok(2000));
        assert_eq!(parse_milli("250000u"), Ok(250));
        assert_eq!(parse_milli("1000000n"), Ok(1));
        assert_eq!(parse_milli("+3"), Ok(3000));
        assert_eq!(parse_milli(" 2 "), Ok(2000));
    }

    #[test]
    fn sub_unit_remainders_round_up() {
        assert_eq!(parse_milli("0.0001"), Ok(1));
        assert_eq!(parse_milli("1n"), Ok(1));
        assert_eq!(parse_value("100m"), Ok(1));
        assert_eq!(parse_value("1.5"), Ok(2));
        assert_eq!(
            parse_value("1.000000000000000000000000000000000000000001"),
            Ok(2)
        );
        assert_eq!(parse_value("0"), Ok(0));
        assert_eq!(parse_value("0.000"), Ok(0));
    }

    #[test]
    fn memory_quantities_convert_to_bytes() {
        assert_eq!(parse_value("2Gi"), Ok(2 << 30));
        assert_eq!(parse_value("500Mi"), Ok(500 << 20));
        assert_eq!(parse_value("500M"), Ok(500_000_000));
        assert_eq!(parse_value("1k"), Ok(1000));
        assert_eq!(parse_value("1.5Ki"), Ok(1536));
        assert_eq!(parse_value("0.5Ki"), Ok(512));
        assert_eq!(parse_value("1Ei"), Ok(1 << 60));
        assert_eq!(parse_value("1E"), Ok(1_000_000_000_000_000_000));
    }

    #[test]
    fn decimal_exponents_scale_by_powers_of_ten() {
        assert_eq!(parse_value("1e3"), Ok(1000));
        assert_eq!(parse_value("1E3"), Ok(1000));
        assert_eq!(parse_value("1e+3"), Ok(1000));
        assert_eq!(parse_milli("15e-1"), Ok(1500));
        assert_eq!(parse_value("1.2e2"), Ok(120));
    }

    #[test]
    fn huge_values_saturate_at_i64_max() {
        assert_eq!(parse_value("100Ei"), Ok(i64::MAX));
        assert_eq!(parse_milli("10E"), Ok(i64::MAX));
        assert_eq!(parse_value("1e400"), Ok(i64::MAX));
        assert_eq!(
            parse_value("99999999999999999999999999999999999999999999Ki"),
            Ok(i64::MAX)
        );
    }

    #[test]
    fn long_fractions_with_binary_suffixes_are_exact() {
        // 0.1Ki = 102.4 bytes, exact path and fast path agree.
        assert_eq!(
            parse_value("0.10000000000000000000000000000000000Ki"),
            Ok(103)
        );
        assert_eq!(parse_value("0.1Ki"), Ok(103));
        assert_eq!(parse_nanos("0.1Ki"), Ok(102_400_000_000));
    }

    #[test]
    fn negative_values_round_away_from_zero() {
        assert_eq!(parse_value("-1.5"), Ok(-2));
        assert_eq!(parse_milli("-100m"), Ok(-100));
    }

    #[test]
    fn errors_when_the_text_is_not_a_quantity() {
        for bad in [
            "", "abc", "1Xi", "1.2.3", ".", "-", "1e", "1e1.5", "1 Gi", "Gi", "1ki", "1e+",
        ] {
            assert!(parse_value(bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(
            parse_value("1Xi").unwrap_err().to_string(),
            "invalid quantity \"1Xi\": unknown suffix"
        );
    }
}
