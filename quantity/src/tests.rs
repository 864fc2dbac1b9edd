//! The cases of upstream's quantity_test.go (k8s.io/apimachinery/pkg/api/resource) that a
//! nano-unit fixed-point value can express, plus the conversions the scheduler relies on.

use super::*;

use Format::{BinarySI, DecimalExponent, DecimalSI};

/// `mantissa × 10^exponent` as a quantity, like upstream's `decQuantity` test helper.
fn dec(mantissa: i128, exponent: i32, format: Format) -> Quantity {
    let e = exponent + 9;
    let nanos = if e >= 0 {
        mantissa * 10i128.pow(e as u32)
    } else {
        let d = 10i128.pow((-e) as u32);
        assert_eq!(mantissa % d, 0, "test value finer than 1n");
        mantissa / d
    };
    Quantity::from_nanos(nanos, format)
}

fn q(s: &str) -> Quantity {
    Quantity::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

/// upstream TestQuantityParse: value and notation, and the same with `-` and `+` prefixes.
#[test]
fn parses_upstream_table_with_value_and_format() {
    let max_binary = Quantity::from_nanos(MAX_BINARY_NANOS, BinarySI);
    let table: Vec<(&str, Quantity)> = vec![
        ("0", dec(0, 0, DecimalSI)),
        ("0n", dec(0, 0, DecimalSI)),
        ("0u", dec(0, 0, DecimalSI)),
        ("0m", dec(0, 0, DecimalSI)),
        ("0Ki", dec(0, 0, BinarySI)),
        ("0k", dec(0, 0, DecimalSI)),
        ("0Mi", dec(0, 0, BinarySI)),
        ("0M", dec(0, 0, DecimalSI)),
        ("0Gi", dec(0, 0, BinarySI)),
        ("0G", dec(0, 0, DecimalSI)),
        ("0Ti", dec(0, 0, BinarySI)),
        ("0T", dec(0, 0, DecimalSI)),
        ("1", dec(1, 0, DecimalSI)),
        ("1Ki", dec(1024, 0, BinarySI)),
        ("8Ki", dec(8 * 1024, 0, BinarySI)),
        ("7Mi", dec(7 << 20, 0, BinarySI)),
        ("6Gi", dec(6 << 30, 0, BinarySI)),
        ("5Ti", dec(5 << 40, 0, BinarySI)),
        ("4Pi", dec(4 << 50, 0, BinarySI)),
        ("3Ei", dec(3 << 60, 0, BinarySI)),
        ("10Ti", dec(10 << 40, 0, BinarySI)),
        ("100Ti", dec(100 << 40, 0, BinarySI)),
        ("5n", dec(5, -9, DecimalSI)),
        ("4u", dec(4, -6, DecimalSI)),
        ("3m", dec(3, -3, DecimalSI)),
        ("9", dec(9, 0, DecimalSI)),
        ("8k", dec(8, 3, DecimalSI)),
        ("50k", dec(5, 4, DecimalSI)),
        ("7M", dec(7, 6, DecimalSI)),
        ("6G", dec(6, 9, DecimalSI)),
        ("5T", dec(5, 12, DecimalSI)),
        ("40T", dec(4, 13, DecimalSI)),
        ("300T", dec(3, 14, DecimalSI)),
        ("2P", dec(2, 15, DecimalSI)),
        ("1E", dec(1, 18, DecimalSI)),
        ("1E-3", dec(1, -3, DecimalExponent)),
        ("1e3", dec(1, 3, DecimalExponent)),
        ("1E6", dec(1, 6, DecimalExponent)),
        ("1e9", dec(1, 9, DecimalExponent)),
        ("1E12", dec(1, 12, DecimalExponent)),
        ("1e15", dec(1, 15, DecimalExponent)),
        ("1E18", dec(1, 18, DecimalExponent)),
        ("1e14", dec(1, 14, DecimalExponent)),
        ("1e13", dec(1, 13, DecimalExponent)),
        ("100.035k", dec(100035, 0, DecimalSI)),
        ("0.001", dec(1, -3, DecimalSI)),
        ("0.0005k", dec(5, -1, DecimalSI)),
        ("0.005", dec(5, -3, DecimalSI)),
        ("0.05", dec(5, -2, DecimalSI)),
        ("0.5", dec(5, -1, DecimalSI)),
        ("0.00050k", dec(5, -1, DecimalSI)),
        ("0.00500", dec(5, -3, DecimalSI)),
        ("0.05000", dec(5, -2, DecimalSI)),
        ("0.50000", dec(5, -1, DecimalSI)),
        ("0.5e0", dec(5, -1, DecimalExponent)),
        ("0.5e-1", dec(5, -2, DecimalExponent)),
        ("0.5e-2", dec(5, -3, DecimalExponent)),
        ("10.035M", dec(10035, 3, DecimalSI)),
        ("1.2e3", dec(12, 2, DecimalExponent)),
        ("1.3E+6", dec(13, 5, DecimalExponent)),
        ("1.40e9", dec(14, 8, DecimalExponent)),
        ("1.53E12", dec(153, 10, DecimalExponent)),
        ("1.6e15", dec(16, 14, DecimalExponent)),
        ("1.7E18", dec(17, 17, DecimalExponent)),
        ("9.01", dec(901, -2, DecimalSI)),
        ("8.1k", dec(81, 2, DecimalSI)),
        ("7.123456M", dec(7123456, 0, DecimalSI)),
        ("6.987654321G", dec(6987654321, 0, DecimalSI)),
        ("5.444T", dec(5444, 9, DecimalSI)),
        ("40.1T", dec(401, 11, DecimalSI)),
        ("300.2T", dec(3002, 11, DecimalSI)),
        ("2.5P", dec(25, 14, DecimalSI)),
        ("1.01E", dec(101, 16, DecimalSI)),
        // Things that saturate/round
        ("3.001n", dec(4, -9, DecimalSI)),
        ("1.1E-9", dec(2, -9, DecimalExponent)),
        ("0.0000000001", dec(1, -9, DecimalSI)),
        ("0.0000000005", dec(1, -9, DecimalSI)),
        ("0.00000000050", dec(1, -9, DecimalSI)),
        ("0.5e-9", dec(1, -9, DecimalExponent)),
        ("0.9n", dec(1, -9, DecimalSI)),
        ("0.00000012345", dec(124, -9, DecimalSI)),
        ("0.00000012354", dec(124, -9, DecimalSI)),
        ("9Ei", max_binary),
        ("9223372036854775807Ki", max_binary),
        ("12E", dec(12, 18, DecimalSI)),
        // Fractional binary values
        ("100.035Ki", dec(10243584, -2, BinarySI)),
        ("0.5Mi", dec(512 * 1024, 0, BinarySI)),
        ("0.05Gi", dec(536870912, -1, BinarySI)),
        ("0.025Ti", dec(274877906944, -1, BinarySI)),
        // "Things written by trolls"
        ("0.000000000001Ki", dec(2, -9, DecimalSI)), // rounds up, changes format
        (".001", dec(1, -3, DecimalSI)),
        (".0001k", dec(100, -3, DecimalSI)),
        ("1.", dec(1, 0, DecimalSI)),
        ("1.G", dec(1, 9, DecimalSI)),
    ];
    for (input, want) in &table {
        let got = q(input);
        assert_eq!(got, *want, "{input}: value");
        assert_eq!(got.format(), want.format(), "{input}: format");
        let negative = q(&format!("-{input}"));
        assert_eq!(negative.nanos(), -want.nanos(), "-{input}: value");
        assert_eq!(negative.format(), want.format(), "-{input}: format");
        let plus = q(&format!("+{input}"));
        assert_eq!(plus, *want, "+{input}: value");
        assert_eq!(plus.format(), want.format(), "+{input}: format");
    }
}

/// upstream TestParseQuantityString: a bare point or sign reads as zero.
#[test]
fn reads_a_bare_point_or_sign_as_zero() {
    for s in [".", "-.", "+", "-", "000"] {
        assert!(q(s).is_zero(), "{s}");
    }
    assert_eq!(q("-1.025Ti"), dec(-1025 << 40, -3, BinarySI));
}

/// upstream TestQuantityParse's invalid list, with upstream's errors.
#[test]
fn errors_like_upstream_on_invalid_quantities() {
    for (s, want) in [
        ("", QuantityError::FormatWrong),
        ("1.1.M", QuantityError::FormatWrong),
        ("1+1.0M", QuantityError::FormatWrong),
        ("0.1mi", QuantityError::Suffix),
        ("0.1am", QuantityError::FormatWrong),
        ("aoeu", QuantityError::FormatWrong),
        (".5i", QuantityError::Suffix),
        ("1i", QuantityError::Suffix),
        ("-3.01i", QuantityError::Suffix),
        ("-3.01e-", QuantityError::Suffix),
        ("1e4294967297", QuantityError::Suffix),
        ("E2147483648", QuantityError::Suffix),
        (" 1", QuantityError::FormatWrong),
        ("1 ", QuantityError::FormatWrong),
        ("1Gb", QuantityError::FormatWrong),
        ("1ki", QuantityError::Suffix),
        ("1e", QuantityError::Suffix),
        ("1e1.5", QuantityError::FormatWrong),
    ] {
        assert_eq!(Quantity::parse(s), Err(want), "{s:?}");
    }
    assert_eq!(
        QuantityError::FormatWrong.to_string(),
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    );
    assert_eq!(
        QuantityError::Suffix.to_string(),
        "unable to parse quantity's suffix"
    );
}

/// upstream TestInterpretExponentInt32Bounds: exponents up to ±MaxInt32 are accepted.
#[test]
fn accepts_exponents_within_int32() {
    assert!(Quantity::parse("1E2147483647").is_ok());
    assert!(q("1E-2147483647").nanos() == 1, "rounds up to 1n");
    assert_eq!(Quantity::parse("1E2147483648"), Err(QuantityError::Suffix));
    assert_eq!(Quantity::parse("1E-2147483648"), Err(QuantityError::Suffix));
}

/// upstream TestQuantityString: canonical form of computed quantities, and of their negation.
#[test]
fn writes_upstream_canonical_form() {
    let table: Vec<(Quantity, &str, &str)> = vec![
        (dec(1 << 30, 0, BinarySI), "1Gi", "1024Mi"),
        (dec(300 << 20, 0, BinarySI), "300Mi", "307200Ki"),
        (dec(6 * 1024, 0, BinarySI), "6Ki", ""),
        (dec(1001 << 30, 0, BinarySI), "1001Gi", "1025024Mi"),
        (dec(1 << 40, 0, BinarySI), "1Ti", "1024Gi"),
        (dec(5, 0, BinarySI), "5", "5000m"),
        (dec(500, -3, BinarySI), "500m", "0.5"),
        (dec(1, 9, DecimalSI), "1G", "1000M"),
        (dec(1000, 6, DecimalSI), "1G", "0.001T"),
        (dec(1000000, 3, DecimalSI), "1G", ""),
        (dec(1000000000, 0, DecimalSI), "1G", ""),
        (dec(1, -3, DecimalSI), "1m", "1000u"),
        (dec(80, -3, DecimalSI), "80m", ""),
        (dec(1080, -3, DecimalSI), "1080m", "1.08"),
        (dec(108, -2, DecimalSI), "1080m", "1080000000n"),
        (dec(10800, -4, DecimalSI), "1080m", ""),
        (dec(300, 6, DecimalSI), "300M", ""),
        (dec(1, 12, DecimalSI), "1T", ""),
        (dec(1, 18, DecimalSI), "1E", ""),
        (dec(1, 21, DecimalSI), "1e21", "1000E"),
        (dec(5, 21, DecimalSI), "5e21", "5000E"),
        (dec(1, 24, DecimalSI), "1e24", "1000000E"),
        (dec(1234567, 6, DecimalSI), "1234567M", ""),
        (dec(1234567, -3, BinarySI), "1234567m", ""),
        (dec(3, 3, DecimalSI), "3k", ""),
        (dec(1025, 0, BinarySI), "1025", ""),
        (dec(0, 0, DecimalSI), "0", ""),
        (dec(0, 0, BinarySI), "0", ""),
        (dec(1, 9, DecimalExponent), "1e9", ".001e12"),
        (dec(1, -3, DecimalExponent), "1e-3", "0.001e0"),
        (dec(1, -9, DecimalExponent), "1e-9", "1000e-12"),
        (dec(80, -3, DecimalExponent), "80e-3", ""),
        (dec(300, 6, DecimalExponent), "300e6", ""),
        (dec(1, 12, DecimalExponent), "1e12", ""),
        (dec(1, 3, DecimalExponent), "1e3", ""),
        (dec(3, 3, DecimalExponent), "3e3", ""),
        (dec(0, 0, DecimalExponent), "0", "00"),
        (dec(1, -9, DecimalSI), "1n", ""),
        (dec(80, -9, DecimalSI), "80n", ""),
        (dec(1080, -9, DecimalSI), "1080n", ""),
        (dec(108, -8, DecimalSI), "1080n", ""),
        (dec(10800, -10, DecimalSI), "1080n", ""),
        (dec(1, -6, DecimalSI), "1u", ""),
        (dec(80, -6, DecimalSI), "80u", ""),
        (dec(1080, -6, DecimalSI), "1080u", ""),
    ];
    for (quantity, want, alternate) in &table {
        assert_eq!(quantity.to_string(), *want, "{quantity:?}");
        // The canonical form parses back to itself and is kept as written.
        assert_eq!(q(want), *quantity, "{want} round trip");
        assert_eq!(canonicalize(want).unwrap(), *want, "{want} kept");
        if !alternate.is_empty() {
            assert_eq!(q(alternate), *quantity, "{alternate}");
            assert_eq!(canonicalize(alternate).unwrap(), *want, "{alternate}");
        }
        if !quantity.is_zero() {
            let negated = Quantity::from_nanos(-quantity.nanos(), quantity.format());
            assert_eq!(negated.to_string(), format!("-{want}"));
        }
    }
}

/// upstream TestBinarySIPastEiArithmeticRoundTrip and the past-Ei rows of TestQuantityString.
#[test]
fn writes_binary_values_past_ei_as_exact_decimals() {
    let two_pow_70 = Quantity::from_nanos((1i128 << 70) * NANOS_PER_UNIT, BinarySI);
    assert_eq!(two_pow_70.to_string(), "1180591620717411303424");
    assert_eq!(q(&two_pow_70.to_string()), two_pow_70);
}

/// upstream TestBinarySIZeroExponentString.
#[test]
fn writes_binary_values_without_factors_of_1024_plainly() {
    assert_eq!(dec(2000, 0, BinarySI).to_string(), "2000");
    assert_eq!(dec(-2000, 0, BinarySI).to_string(), "-2000");
}

/// upstream TestQuantityParseEmit.
#[test]
fn parses_and_emits_like_upstream() {
    for (input, want) in [
        ("1Ki", "1Ki"),
        ("1Mi", "1Mi"),
        ("1Gi", "1Gi"),
        ("1024Mi", "1Gi"),
        ("1000M", "1G"),
        (".001Ki", "1024m"),
        (".000001Ki", "1024u"),
        (".000000001Ki", "1024n"),
        (".000000000001Ki", "2n"),
    ] {
        assert_eq!(q(input).to_string(), want, "{input}");
        assert_eq!(q(&format!("-{input}")).to_string(), format!("-{want}"));
    }
}

/// What the API server stores: upstream keeps fast-path canonical-looking input verbatim.
#[test]
fn canonicalize_keeps_text_exactly_where_upstream_does() {
    for (input, stored) in [
        ("1000m", "1"),
        ("1500m", "1500m"),
        ("0.5", "500m"),
        ("100m", "100m"),
        ("80Gi", "80Gi"),
        ("1024Mi", "1Gi"),
        ("1536Mi", "1536Mi"),
        ("2000", "2k"),
        ("1200", "1200"),
        ("110", "110"),
        ("0", "0"),
        ("-0", "0"),
        ("+1", "+1"),
        ("1E3", "1E3"),
        ("007", "007"),
        ("1.5Gi", "1536Mi"),
        ("8Ki", "8Ki"),
        (" 2 ", "2"),
    ] {
        assert_eq!(canonicalize(input).unwrap(), stored, "{input:?}");
    }
}

/// upstream TestQuantityCmp and TestQuantityCmpInt64AndDec.
#[test]
fn compares_by_value_across_notations() {
    for (x, y, want) in [
        ("0", "0", Ordering::Equal),
        ("100m", "50m", Ordering::Greater),
        ("50m", "100m", Ordering::Less),
        ("10000T", "100Gi", Ordering::Greater),
        ("9.01", "9.01", Ordering::Equal),
        ("9.0", "9.01", Ordering::Less),
        ("800m", "1", Ordering::Less),
        ("800m", "0.79", Ordering::Greater),
        ("9223372036854775807", "0.1", Ordering::Greater),
        ("1Gi", "1G", Ordering::Greater),
        ("1", "1000m", Ordering::Equal),
        ("1Gi", "1024Mi", Ordering::Equal),
        ("-9223372036854775808", "0", Ordering::Less),
    ] {
        assert_eq!(q(x).cmp(&q(y)), want, "{x} vs {y}");
        assert_eq!(q(y).cmp(&q(x)), want.reverse(), "{y} vs {x}");
    }
}

/// upstream TestQuantityAddZeroPreservesSuffix / TestQuantitySubZeroPreservesSuffix.
#[test]
fn adding_zero_preserves_the_notation() {
    for s in ["100m", "1Gi"] {
        let v = q(s);
        assert_eq!(v.checked_add(Quantity::ZERO).unwrap().to_string(), s);
        assert_eq!(Quantity::ZERO.checked_add(v).unwrap().to_string(), s);
        assert_eq!(v.checked_sub(Quantity::ZERO).unwrap().to_string(), s);
        assert_eq!(
            Quantity::ZERO.checked_sub(v).unwrap().to_string(),
            format!("-{s}")
        );
    }
}

/// upstream Value() / MilliValue(): rounded up, away from zero.
#[test]
fn value_and_milli_value_round_away_from_zero() {
    assert_eq!(q("100m").milli_value(), 100);
    assert_eq!(q("1.5").milli_value(), 1500);
    assert_eq!(q("250000u").milli_value(), 250);
    assert_eq!(q("1n").milli_value(), 1);
    assert_eq!(q("0.0001").milli_value(), 1);
    assert_eq!(q("100m").value(), 1);
    assert_eq!(q("1.5").value(), 2);
    assert_eq!(q("-1.5").value(), -2);
    assert_eq!(q("0.1Ki").value(), 103);
    assert_eq!(q("2Gi").value(), 2 << 30);
    assert_eq!(q("1.5Ki").value(), 1536);
    assert_eq!(
        q("1.000000000000000000000000000000000000000001").value(),
        2,
        "long fractions round up exactly"
    );
}

#[test]
fn huge_values_saturate_conversions() {
    assert_eq!(q("100Ei").value(), i64::MAX, "BinarySI capped at 2^63-1");
    assert_eq!(q("10E").milli_value(), i64::MAX);
    assert_eq!(q("1e400").value(), i64::MAX);
    assert_eq!(
        q("99999999999999999999999999999999999999999999Ki").value(),
        i64::MAX
    );
    assert_eq!(
        q("0.10000000000000000000000000000000000Ki").nanos(),
        102_400_000_000
    );
}

#[test]
fn integers_and_floats() {
    assert_eq!(q("1.5").as_integer(), None);
    assert_eq!(q("2k").as_integer(), Some(2000));
    assert!(q("1000m").is_integer());
    assert_eq!(q("-2").sign(), -1);
    assert_eq!(q("1.5").as_approximate_float(), 1.5);
    assert_eq!(Quantity::parse_json(" 2 ").unwrap().value(), 2);
}
