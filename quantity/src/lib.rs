//! Kubernetes resource quantities (`100m`, `1.5Gi`, `1e3`) as `k8s.io/apimachinery/pkg/api/resource`
//! reads, rounds, compares and writes them.
//!
//! Start with [`Quantity::parse`]; compare quantities with `<`/`==` (by value, whatever their
//! notation), convert them with [`Quantity::value`] / [`Quantity::milli_value`] (rounded up, as
//! upstream's `Value()` / `MilliValue()`), and write them with `to_string()` (upstream's canonical
//! form) or [`canonicalize`] (what a kube-apiserver stores for a given input string).
//!
//! ```
//! use kube_quantity::Quantity;
//! let q = Quantity::parse("1.5Gi").unwrap();
//! assert_eq!(q.to_string(), "1536Mi");
//! assert!(q > Quantity::parse("1G").unwrap());
//! assert_eq!(Quantity::parse("0.1m").unwrap().milli_value(), 1);
//! ```
//!
//! Values are exact fixed-point numbers in nano-units (10⁻⁹), the finest scale upstream keeps:
//! finer input is rounded up (away from zero) to `1n`. One difference from upstream, which uses
//! arbitrary precision: a magnitude beyond about 1.7·10²⁹ saturates here (upstream keeps it
//! exactly). No resource or device capacity comes near that.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use thiserror::Error;

/// Nano-units per unit.
pub const NANOS_PER_UNIT: i128 = 1_000_000_000;

/// The largest magnitude of a `BinarySI` quantity: upstream caps those at 2⁶³-1
/// (`maxAllowed` in quantity.go).
const MAX_BINARY_NANOS: i128 = i64::MAX as i128 * NANOS_PER_UNIT;

/// Why a string is not a quantity; the messages are upstream's (`ErrFormatWrong`, `ErrNumeric`,
/// `ErrSuffix`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum QuantityError {
    /// The string is empty or not `<signedNumber><suffix>`.
    #[error(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    FormatWrong,
    /// The number part cannot be read.
    #[error("unable to parse numeric part of quantity")]
    Numeric,
    /// The suffix is not a binary SI, decimal SI or exponent suffix.
    #[error("unable to parse quantity's suffix")]
    Suffix,
}

/// The notation a quantity was written in; it is kept and used again when the quantity is
/// written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `12e6`
    DecimalExponent,
    /// `12Mi` (12 × 2²⁰)
    BinarySI,
    /// `12M` (12 × 10⁶)
    DecimalSI,
}

/// An exact quantity. Equality, ordering and hashing are by value: `1Gi == 1024Mi`.
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    nanos: i128,
    format: Format,
    /// Whether upstream keeps the parsed text as the serialized form (its `s` field).
    keeps_text: bool,
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}
impl Eq for Quantity {}
impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}
impl Hash for Quantity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.nanos.hash(state);
    }
}

impl Default for Quantity {
    fn default() -> Self {
        Quantity::ZERO
    }
}

/// The parts of a quantity string, as upstream's `parseQuantityString` splits them.
struct Parts<'a> {
    positive: bool,
    /// Integer digits without leading zeros; `"0"` when there are none.
    num: &'a str,
    /// Fraction digits.
    denom: &'a str,
    suffix: &'a str,
}

fn split(s: &str) -> Result<Parts<'_>, QuantityError> {
    let b = s.as_bytes();
    let end = b.len();
    let mut pos = 0;
    let mut positive = true;
    match b.first() {
        Some(b'-') => {
            positive = false;
            pos = 1;
        }
        Some(b'+') => pos = 1,
        _ => {}
    }
    while pos < end && b[pos] == b'0' {
        pos += 1;
    }
    if pos >= end {
        // Only a sign and zeros ("-", "000"): upstream reads that as zero.
        return Ok(Parts {
            positive,
            num: "0",
            denom: "",
            suffix: "",
        });
    }
    let digits = |from: usize| from + b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let num_end = digits(pos);
    let num = if num_end == pos {
        "0"
    } else {
        &s[pos..num_end]
    };
    pos = num_end;
    let mut denom = "";
    if pos < end && b[pos] == b'.' {
        let denom_end = digits(pos + 1);
        denom = &s[pos + 1..denom_end];
        pos = denom_end;
    }
    let suffix_start = pos;
    while pos < end && b"eEinumkKMGTP".contains(&b[pos]) {
        pos += 1;
    }
    if pos < end && matches!(b[pos], b'-' | b'+') {
        pos += 1;
    }
    if digits(pos) != end {
        return Err(QuantityError::FormatWrong);
    }
    Ok(Parts {
        positive,
        num,
        denom,
        suffix: &s[suffix_start..],
    })
}

/// `(base, exponent, format)` of a suffix, as upstream's `quantitySuffixer.interpret`.
fn interpret(suffix: &str) -> Option<(u32, i64, Format)> {
    let (base, exponent, format) = match suffix {
        "Ki" => (2, 10, Format::BinarySI),
        "Mi" => (2, 20, Format::BinarySI),
        "Gi" => (2, 30, Format::BinarySI),
        "Ti" => (2, 40, Format::BinarySI),
        "Pi" => (2, 50, Format::BinarySI),
        "Ei" => (2, 60, Format::BinarySI),
        "n" => (10, -9, Format::DecimalSI),
        "u" => (10, -6, Format::DecimalSI),
        "m" => (10, -3, Format::DecimalSI),
        "" => (10, 0, Format::DecimalSI),
        "k" => (10, 3, Format::DecimalSI),
        "M" => (10, 6, Format::DecimalSI),
        "G" => (10, 9, Format::DecimalSI),
        "T" => (10, 12, Format::DecimalSI),
        "P" => (10, 15, Format::DecimalSI),
        "E" => (10, 18, Format::DecimalSI),
        _ => {
            let rest = suffix.strip_prefix(['e', 'E'])?;
            let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
            if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            // Upstream stores the exponent in an int32 scale that is later negated.
            let exponent: i64 = rest.parse().ok()?;
            if exponent.abs() > i64::from(i32::MAX) {
                return None;
            }
            (10, exponent, Format::DecimalExponent)
        }
    };
    Some((base, exponent, format))
}

impl Quantity {
    /// Zero, in `DecimalSI`.
    pub const ZERO: Quantity = Quantity {
        nanos: 0,
        format: Format::DecimalSI,
        keeps_text: false,
    };

    /// Parses a quantity as upstream's `resource.ParseQuantity`: no surrounding spaces, finer
    /// than `1n` rounds up (away from zero), `BinarySI` capped at 2⁶³-1.
    ///
    /// # Errors
    /// [`QuantityError`] with upstream's message when `s` is not a quantity.
    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        if s.is_empty() {
            return Err(QuantityError::FormatWrong);
        }
        if s == "0" {
            return Ok(Quantity {
                keeps_text: true,
                ..Quantity::ZERO
            });
        }
        let parts = split(s)?;
        let (base, exponent, mut format) = interpret(parts.suffix).ok_or(QuantityError::Suffix)?;
        let (exp10, exp2) = if base == 2 {
            (0, exponent as u32)
        } else {
            (exponent, 0)
        };
        // value = digits × 10^(exp10 - denom.len()) × 2^exp2, in nanos: 9 more powers of ten.
        let exp = exp10 - parts.denom.len() as i64 + 9;
        let magnitude = fast_magnitude(parts.num, parts.denom, exp, exp2)
            .unwrap_or_else(|| exact_magnitude(parts.num, parts.denom, exp, exp2));
        let mut magnitude = magnitude;
        if format == Format::BinarySI {
            magnitude = magnitude.min(MAX_BINARY_NANOS);
            if magnitude > 0 && magnitude < NANOS_PER_UNIT {
                format = Format::DecimalSI;
            }
        }
        Ok(Quantity {
            nanos: if parts.positive {
                magnitude
            } else {
                -magnitude
            },
            format,
            keeps_text: keeps_text(&parts, exponent, format),
        })
    }

    /// Parses a quantity as it arrives in JSON: upstream's `UnmarshalJSON` trims surrounding
    /// spaces first.
    ///
    /// # Errors
    /// As [`Quantity::parse`].
    pub fn parse_json(s: &str) -> Result<Quantity, QuantityError> {
        Quantity::parse(s.trim())
    }

    /// A whole number, in `DecimalSI`.
    pub fn from_int(value: i64) -> Quantity {
        Quantity::from_nanos(i128::from(value) * NANOS_PER_UNIT, Format::DecimalSI)
    }

    /// A value in nano-units, with the notation it will be written in.
    pub fn from_nanos(nanos: i128, format: Format) -> Quantity {
        Quantity {
            nanos,
            format,
            keeps_text: false,
        }
    }

    /// The exact value in nano-units (`1` is `1_000_000_000`).
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    /// The notation this quantity is written in.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The value in whole units, rounded away from zero and saturating, as upstream's `Value()`:
    /// `100m` → 1, `2Gi` → 2147483648.
    pub fn value(&self) -> i64 {
        nanos_to_value(self.nanos)
    }

    /// The value in thousandths, rounded away from zero and saturating, as upstream's
    /// `MilliValue()`: `1.5` → 1500, `0.1m` → 1.
    pub fn milli_value(&self) -> i64 {
        nanos_to_milli(self.nanos)
    }

    /// True when the value is zero.
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// -1, 0 or 1.
    pub fn sign(&self) -> i64 {
        self.nanos.signum() as i64
    }

    /// True when the value has no fractional part.
    pub fn is_integer(&self) -> bool {
        self.nanos % NANOS_PER_UNIT == 0
    }

    /// The value as an integer, if it is one and fits an `i64`.
    pub fn as_integer(&self) -> Option<i64> {
        if self.is_integer() {
            i64::try_from(self.nanos / NANOS_PER_UNIT).ok()
        } else {
            None
        }
    }

    /// The value as a float (may lose precision), as upstream's `AsApproximateFloat64()`.
    pub fn as_approximate_float(&self) -> f64 {
        self.nanos as f64 / NANOS_PER_UNIT as f64
    }

    /// The sum; it takes `other`'s notation when `self` is zero, as upstream's `Add`.
    /// `None` on overflow.
    pub fn checked_add(self, other: Quantity) -> Option<Quantity> {
        let format = if self.is_zero() {
            other.format
        } else {
            self.format
        };
        Some(Quantity::from_nanos(
            self.nanos.checked_add(other.nanos)?,
            format,
        ))
    }

    /// The difference; it takes `other`'s notation when `self` is zero, as upstream's `Sub`.
    /// `None` on overflow.
    pub fn checked_sub(self, other: Quantity) -> Option<Quantity> {
        let format = if self.is_zero() {
            other.format
        } else {
            self.format
        };
        Some(Quantity::from_nanos(
            self.nanos.checked_sub(other.nanos)?,
            format,
        ))
    }

    /// The sum, saturating at the representable range.
    pub fn saturating_add(self, other: Quantity) -> Quantity {
        let format = if self.is_zero() {
            other.format
        } else {
            self.format
        };
        Quantity::from_nanos(self.nanos.saturating_add(other.nanos), format)
    }

    /// The difference, saturating at the representable range.
    pub fn saturating_sub(self, other: Quantity) -> Quantity {
        let format = if self.is_zero() {
            other.format
        } else {
            self.format
        };
        Quantity::from_nanos(self.nanos.saturating_sub(other.nanos), format)
    }
}

/// Whether upstream's fast path applies and keeps the input as the serialized text
/// (`ParseQuantity` sets `s`): `"100m"` is kept, `"1000m"` and `"1.5"` are rewritten.
fn keeps_text(parts: &Parts<'_>, exponent: i64, format: Format) -> bool {
    let (num, denom) = (parts.num, parts.denom);
    match format {
        Format::DecimalSI | Format::DecimalExponent => {
            let scale = exponent - denom.len() as i64;
            let shifted = || num.bytes().chain(denom.bytes());
            let ends_in_000 = shifted().rev().take(3).filter(|&c| c == b'0').count() == 3;
            // maxInt64Factors (18) digits fit the int64 fast path; `num` has no leading zeros,
            // so it starts with '0' only when it is "0".
            num.len() + denom.len() <= 18
                && scale >= -9
                && scale % 3 == 0
                && !ends_in_000
                && num != "0"
        }
        Format::BinarySI => {
            if !denom.is_empty() {
                return false;
            }
            // Upstream's precision estimate for the int64 fast path.
            let precision = 15 - num.len() as i64 - (exponent as f32 * 3.0 / 10.0) as i64 - 1;
            if precision < 0 {
                return false;
            }
            let Ok(value) = num.parse::<i64>() else {
                return false;
            };
            value.checked_mul(1i64 << exponent).is_some() && value & 0x07 != 0
        }
    }
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
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
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
    let scaled = digits.checked_mul(1i128.checked_shl(exp2)?)?;
    if exp >= 0 {
        scaled.checked_mul(10i128.checked_pow(u32::try_from(exp).ok()?)?)
    } else {
        let den = 10i128.checked_pow(u32::try_from(-exp).ok()?)?;
        Some(div_away(scaled, den))
    }
}

/// Any size: multiplies the decimal digits by `2^exp2` digit by digit, then moves the decimal
/// point by `exp`; the integer part is the result, plus one if any fraction digit is non-zero.
/// Saturates at `i128::MAX`.
fn exact_magnitude(int: &str, frac: &str, exp: i64, exp2: u32) -> i128 {
    let mut digits: Vec<u8> = int.bytes().chain(frac.bytes()).map(|b| b - b'0').collect();
    let Some(first_nonzero) = digits.iter().position(|&d| d != 0) else {
        return 0;
    };
    // `exp` applies to the digits read as an integer, so the point sits after all of them.
    let mut point = digits.len() as i64 - first_nonzero as i64;
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
    value.saturating_add(i128::from(fraction_nonzero))
}

const DECIMAL_SUFFIXES: [(i32, &str); 10] = [
    (-9, "n"),
    (-6, "u"),
    (-3, "m"),
    (0, ""),
    (3, "k"),
    (6, "M"),
    (9, "G"),
    (12, "T"),
    (15, "P"),
    (18, "E"),
];
const BINARY_SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];

/// The canonical form, as upstream's `Quantity.String()` for a computed quantity: no fraction
/// digits, the largest suffix that loses nothing, the quantity's own notation.
impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        let sign = if self.nanos < 0 { "-" } else { "" };
        let magnitude = self.nanos.unsigned_abs();
        let mut format = self.format;
        if format == Format::BinarySI
            && (magnitude < 1024 * NANOS_PER_UNIT as u128
                || !magnitude.is_multiple_of(NANOS_PER_UNIT as u128))
        {
            // Small or fractional binary values are written in DecimalSI, as upstream.
            format = Format::DecimalSI;
        }
        if format == Format::BinarySI {
            let mut n = magnitude / NANOS_PER_UNIT as u128;
            let mut e = 0;
            while n.is_multiple_of(1024) {
                n /= 1024;
                e += 1;
            }
            if let Some(suffix) = BINARY_SUFFIXES.get(e) {
                return write!(f, "{sign}{n}{suffix}");
            }
            // No binary suffix past Ei: an exact decimal in exponent notation instead.
            format = Format::DecimalExponent;
        }
        // Strip factors of ten, then lower the exponent to a multiple of three.
        let mut mantissa = magnitude;
        let mut exponent: i32 = -9;
        while mantissa.is_multiple_of(10) {
            mantissa /= 10;
            exponent += 1;
        }
        let down = exponent.rem_euclid(3);
        mantissa *= 10u128.pow(down as u32);
        exponent -= down;
        let suffix = DECIMAL_SUFFIXES
            .iter()
            .find(|(e, _)| *e == exponent)
            .map(|(_, s)| *s);
        match (format, suffix) {
            (Format::DecimalSI, Some(suffix)) => write!(f, "{sign}{mantissa}{suffix}"),
            (_, _) if exponent == 0 => write!(f, "{sign}{mantissa}"),
            // DecimalExponent, and DecimalSI past E, use exponent notation.
            _ => write!(f, "{sign}{mantissa}e{exponent}"),
        }
    }
}

/// The string a kube-apiserver stores for a quantity sent as `s`: the canonical form, except
/// that upstream keeps input already written in a canonical-looking fast-path form as it is
/// (`"100m"`, `"+1"`, `"5Ki"`).
///
/// # Errors
/// As [`Quantity::parse_json`].
pub fn canonicalize(s: &str) -> Result<String, QuantityError> {
    let trimmed = s.trim();
    let q = Quantity::parse(trimmed)?;
    Ok(if q.keeps_text {
        trimmed.to_string()
    } else {
        q.to_string()
    })
}

#[cfg(test)]
mod tests;
