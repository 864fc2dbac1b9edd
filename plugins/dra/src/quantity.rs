//! Kubernetes resource quantities (`80Gi`, `1000m`, `1e3`) as exact numbers, and as a CEL value
//! with the functions of the Kubernetes CEL quantity library
//! (k8s.io/apiserver/pkg/cel/library/quantity.go): `quantity()`, `isQuantity()`, `compareTo`,
//! `isLessThan`, `isGreaterThan`, `add`, `sub`, `sign`, `isInteger`, `asInteger`,
//! `asApproximateFloat`.

use std::any::Any;
use std::cmp::Ordering;

use cel::ExecutionError;
use cel::common::traits::Comparer;
use cel::common::types::Type;
use cel::common::value::{StaticVal, Val};
use thiserror::Error;

/// Units per 1 in the fixed-point representation: quantities are kept in nano-units, the
/// smallest scale Kubernetes keeps (`resource.Quantity` rounds finer values up to `1n`).
const NANO: i128 = 1_000_000_000;

/// Why a string is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuantityError {
    /// The string does not follow `<signedNumber><suffix>`.
    #[error(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    Format,
    /// The value is too large to represent.
    #[error("quantity is too large")]
    Overflow,
}

/// An exact quantity in nano-units (`1` is `1_000_000_000`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity {
    nanos: i128,
}

impl Quantity {
    /// Parses a Kubernetes quantity string.
    ///
    /// # Errors
    /// [`QuantityError::Format`] for a malformed string, [`QuantityError::Overflow`] when the
    /// value does not fit.
    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        let s = s.trim();
        let (negative, rest) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(num_end);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(QuantityError::Format);
        }
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        // value = digits * 10^(exp10) * 2^(exp2)
        let mut digits: i128 = 0;
        for c in int_part.chars().chain(frac_part.chars()) {
            digits = digits
                .checked_mul(10)
                .and_then(|d| d.checked_add(i128::from(c as u8 - b'0')))
                .ok_or(QuantityError::Overflow)?;
        }
        let mut exp10: i32 = -(frac_part.len() as i32);
        let mut exp2: u32 = 0;
        match suffix {
            "" => {}
            "n" => exp10 -= 9,
            "u" => exp10 -= 6,
            "m" => exp10 -= 3,
            "k" => exp10 += 3,
            "M" => exp10 += 6,
            "G" => exp10 += 9,
            "T" => exp10 += 12,
            "P" => exp10 += 15,
            "E" => exp10 += 18,
            "Ki" => exp2 = 10,
            "Mi" => exp2 = 20,
            "Gi" => exp2 = 30,
            "Ti" => exp2 = 40,
            "Pi" => exp2 = 50,
            "Ei" => exp2 = 60,
            s if s.starts_with(['e', 'E']) => {
                exp10 += s[1..].parse::<i32>().map_err(|_| QuantityError::Format)?;
            }
            _ => return Err(QuantityError::Format),
        }
        let mut nanos = digits
            .checked_mul(1 << exp2)
            .ok_or(QuantityError::Overflow)?;
        let shift = exp10 + 9;
        if shift >= 0 {
            let factor = 10i128
                .checked_pow(shift as u32)
                .ok_or(QuantityError::Overflow)?;
            nanos = nanos.checked_mul(factor).ok_or(QuantityError::Overflow)?;
        } else {
            // Finer than 1n: round up, as resource.Quantity does.
            let divisor = 10i128.checked_pow((-shift) as u32).unwrap_or(i128::MAX);
            nanos = (nanos + divisor - 1) / divisor;
        }
        Ok(Quantity {
            nanos: if negative { -nanos } else { nanos },
        })
    }

    /// A quantity from a whole number.
    pub fn from_int(value: i64) -> Quantity {
        Quantity {
            nanos: i128::from(value) * NANO,
        }
    }

    /// The value in nano-units.
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    /// True when the value has no fractional part.
    pub fn is_integer(&self) -> bool {
        self.nanos % NANO == 0
    }

    /// The value as an integer, if it is one and fits in an `i64`.
    pub fn as_integer(&self) -> Option<i64> {
        if self.is_integer() {
            i64::try_from(self.nanos / NANO).ok()
        } else {
            None
        }
    }

    /// The value as a float (may lose precision).
    pub fn as_approximate_float(&self) -> f64 {
        self.nanos as f64 / NANO as f64
    }

    /// -1, 0 or 1.
    pub fn sign(&self) -> i64 {
        self.nanos.signum() as i64
    }

    fn checked_add(self, other: Quantity) -> Option<Quantity> {
        self.nanos
            .checked_add(other.nanos)
            .map(|nanos| Quantity { nanos })
    }

    fn checked_sub(self, other: Quantity) -> Option<Quantity> {
        self.nanos
            .checked_sub(other.nanos)
            .map(|nanos| Quantity { nanos })
    }
}

/// The CEL type of quantities, named as in Kubernetes.
pub static QUANTITY_TYPE: Type = Type::new_unspecified_type("kubernetes.Quantity");

impl Val for Quantity {
    fn get_type(&self) -> &Type {
        &QUANTITY_TYPE
    }
    fn cel_type() -> &'static Type {
        &QUANTITY_TYPE
    }
    fn as_comparer(&self) -> Option<&dyn Comparer> {
        Some(self)
    }
    fn equals(&self, other: &dyn Val) -> bool {
        other.downcast_ref::<Quantity>().is_some_and(|o| o == self)
    }
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v> {
        Box::new(*self)
    }
    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}

impl StaticVal for Quantity {}

impl Comparer for Quantity {
    fn compare(&self, rhs: &dyn Val) -> Result<Ordering, ExecutionError> {
        match rhs.downcast_ref::<Quantity>() {
            Some(other) => Ok(self.cmp(other)),
            None => Err(ExecutionError::UnexpectedType {
                got: rhs.get_type().name().to_owned(),
                want: QUANTITY_TYPE.name().to_owned(),
            }),
        }
    }
}

/// The functions of the Kubernetes CEL quantity library, for [`crate::cel_env`].
pub(crate) mod functions {
    use cel::ExecutionError;
    use cel::common::types::{CelBool, CelDouble, CelInt, CelString};

    use super::Quantity;

    pub fn quantity(s: &CelString<'_>) -> Result<Quantity, ExecutionError> {
        Quantity::parse(s.inner()).map_err(|e| ExecutionError::function_error("quantity", e))
    }
    pub fn is_quantity(s: &CelString<'_>) -> CelBool {
        CelBool::from(Quantity::parse(s.inner()).is_ok())
    }
    pub fn compare_to(a: &Quantity, b: &Quantity) -> CelInt {
        CelInt::from(a.cmp(b) as i64)
    }
    pub fn is_less_than(a: &Quantity, b: &Quantity) -> CelBool {
        CelBool::from(a < b)
    }
    pub fn is_greater_than(a: &Quantity, b: &Quantity) -> CelBool {
        CelBool::from(a > b)
    }
    pub fn add(a: &Quantity, b: &Quantity) -> Result<Quantity, ExecutionError> {
        a.checked_add(*b)
            .ok_or_else(|| ExecutionError::function_error("add", "overflow"))
    }
    pub fn add_int(a: &Quantity, b: &CelInt) -> Result<Quantity, ExecutionError> {
        add(a, &Quantity::from_int(*b.inner()))
    }
    pub fn sub(a: &Quantity, b: &Quantity) -> Result<Quantity, ExecutionError> {
        a.checked_sub(*b)
            .ok_or_else(|| ExecutionError::function_error("sub", "overflow"))
    }
    pub fn sub_int(a: &Quantity, b: &CelInt) -> Result<Quantity, ExecutionError> {
        sub(a, &Quantity::from_int(*b.inner()))
    }
    pub fn sign(a: &Quantity) -> CelInt {
        CelInt::from(a.sign())
    }
    pub fn is_integer(a: &Quantity) -> CelBool {
        CelBool::from(a.is_integer())
    }
    pub fn as_integer(a: &Quantity) -> Result<CelInt, ExecutionError> {
        a.as_integer().map(CelInt::from).ok_or_else(|| {
            ExecutionError::function_error("asInteger", "cannot convert value to integer")
        })
    }
    pub fn as_approximate_float(a: &Quantity) -> CelDouble {
        CelDouble::from(a.as_approximate_float())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> i128 {
        Quantity::parse(s).unwrap().nanos()
    }

    #[test]
    fn parses_binary_decimal_and_exponent_suffixes() {
        assert_eq!(q("80Gi"), 80 * (1 << 30) * NANO);
        assert_eq!(q("1000m"), NANO);
        assert_eq!(q("1"), NANO);
        assert_eq!(q("1.5k"), 1500 * NANO);
        assert_eq!(q("1e3"), 1000 * NANO);
        assert_eq!(q("2E-3"), 2_000_000);
        assert_eq!(q("-2Mi"), -2 * (1 << 20) * NANO);
        assert_eq!(q("+7"), 7 * NANO);
        assert_eq!(q("0.1n"), 1, "rounded up to 1n");
    }

    #[test]
    fn errors_on_malformed_quantities() {
        for s in ["", "Gi", "1.2.3", "1Gb", "abc", "1 Gi", "."] {
            assert_eq!(Quantity::parse(s), Err(QuantityError::Format), "{s}");
        }
    }

    #[test]
    fn compares_across_units() {
        let a = Quantity::parse("1Gi").unwrap();
        let b = Quantity::parse("1G").unwrap();
        assert!(a > b);
        assert_eq!(
            Quantity::parse("1000m").unwrap(),
            Quantity::parse("1").unwrap()
        );
        assert_eq!(Quantity::parse("1.5").unwrap().as_integer(), None);
        assert_eq!(Quantity::parse("2k").unwrap().as_integer(), Some(2000));
    }
}
