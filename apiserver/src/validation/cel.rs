//! Compile-time checks of DRA CEL selectors (`device.driver == "x"`), as the real server does them
//! when a DeviceClass or ResourceClaim is written (reference capture 27).
//!
//! Parsing uses the `cel` crate, whose error texts follow cel-go's. The `cel` crate has no type
//! checker, so a small one here covers what users get wrong most: unknown fields of `device`,
//! comparing values of different primitive types, and expressions that are not boolean. Anything
//! it cannot type is treated as dynamic and accepted, like an expression that only fails at
//! runtime.

use cel::IdedExpr;
use cel::common::ast::{Expr, LiteralValue};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Ty {
    Bool,
    Int,
    UInt,
    Double,
    String,
    Bytes,
    Null,
    Map,
    List,
    Device,
    Dyn,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::Bool => "bool",
            Ty::Int => "int",
            Ty::UInt => "uint",
            Ty::Double => "double",
            Ty::String => "string",
            Ty::Bytes => "bytes",
            Ty::Null => "null_type",
            Ty::Map => "map",
            Ty::List => "list",
            Ty::Device => "device",
            Ty::Dyn => "dyn",
        }
    }

    fn is_primitive(self) -> bool {
        matches!(
            self,
            Ty::Bool | Ty::Int | Ty::UInt | Ty::Double | Ty::String | Ty::Bytes
        )
    }
}

/// The fields of the `device` variable in the DRA CEL environment.
const DEVICE_FIELDS: &[(&str, Ty)] = &[
    ("driver", Ty::String),
    ("attributes", Ty::Map),
    ("capacity", Ty::Map),
    ("allowMultipleAllocations", Ty::Bool),
];

fn snippet(source: &str, col: usize) -> String {
    format!("\n | {source}\n | {:.>width$}", "^", width = col)
}

struct Checker<'a> {
    source: &'a str,
    error: Option<String>,
}

impl Checker<'_> {
    fn fail(&mut self, col: usize, msg: String) {
        if self.error.is_none() {
            self.error = Some(format!(
                "ERROR: <input>:1:{col}: {msg}{}",
                snippet(self.source, col)
            ));
        }
    }

    fn column_of(&self, needle: &str) -> usize {
        self.source.find(needle).map(|i| i + 1).unwrap_or(1)
    }

    fn ty(&mut self, e: &IdedExpr) -> Ty {
        match &e.expr {
            Expr::Literal(l) => match l {
                LiteralValue::Boolean(_) => Ty::Bool,
                LiteralValue::Int(_) => Ty::Int,
                LiteralValue::UInt(_) => Ty::UInt,
                LiteralValue::Double(_) => Ty::Double,
                LiteralValue::String(_) => Ty::String,
                LiteralValue::Bytes(_) => Ty::Bytes,
                LiteralValue::Null => Ty::Null,
            },
            Expr::Ident(name) if name == "device" => Ty::Device,
            Expr::Select(sel) => {
                let operand = self.ty(&sel.operand);
                if sel.test {
                    return Ty::Bool;
                }
                if operand == Ty::Device {
                    match DEVICE_FIELDS.iter().find(|(f, _)| *f == sel.field) {
                        Some((_, t)) => *t,
                        None => {
                            let col = self.column_of(&format!(".{}", sel.field));
                            self.fail(col, format!("undefined field '{}'", sel.field));
                            Ty::Dyn
                        }
                    }
                } else {
                    Ty::Dyn
                }
            }
            Expr::Call(call) => {
                if let Some(t) = &call.target {
                    self.ty(t);
                }
                let args: Vec<Ty> = call.args.iter().map(|a| self.ty(a)).collect();
                match call.func_name.as_str() {
                    op @ ("_==_" | "_!=_" | "_<_" | "_<=_" | "_>_" | "_>=_") => {
                        if let [a, b] = args[..]
                            && a.is_primitive()
                            && b.is_primitive()
                            && a != b
                        {
                            let sym = &op[1..op.len() - 1];
                            let col = self.column_of(&format!(" {sym}")) + 1;
                            self.fail(
                                col,
                                format!(
                                    "found no matching overload for '{op}' applied to '({}, {})'",
                                    a.name(),
                                    b.name()
                                ),
                            );
                        }
                        Ty::Bool
                    }
                    "_&&_" | "_||_" | "!_" | "@in" | "matches" | "startsWith" | "endsWith"
                    | "contains" | "isSemver" | "exists" | "all" | "exists_one" | "has" => Ty::Bool,
                    "size" => Ty::Int,
                    _ => Ty::Dyn,
                }
            }
            Expr::List(_) => Ty::List,
            Expr::Map(_) => Ty::Map,
            Expr::Comprehension(_) => Ty::Dyn,
            _ => Ty::Dyn,
        }
    }
}

/// Checks one selector expression; `Err` holds the detail that follows `Invalid value: "<expr>": `.
pub(crate) fn check_selector(expression: &str) -> Result<(), String> {
    let program =
        cel::Program::compile(expression).map_err(|e| format!("compilation failed: {e}"))?;
    let mut checker = Checker {
        source: expression,
        error: None,
    };
    let ty = checker.ty(program.expression());
    if let Some(e) = checker.error {
        return Err(format!("compilation failed: {e}"));
    }
    if ty != Ty::Bool && ty != Ty::Dyn {
        return Err(format!(
            "must evaluate to bool or the unknown type, not {}",
            ty.name()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_selectors_pass() {
        check_selector("device.driver == \"gpu.example.com\"").unwrap();
        check_selector("device.attributes[\"gpu.example.com\"].model == \"X\"").unwrap();
    }

    #[test]
    fn syntax_errors_are_compilation_failures() {
        let e = check_selector("device.driver == \"gpu.example.com").unwrap_err();
        assert!(
            e.starts_with("compilation failed: ERROR: <input>:1:"),
            "{e}"
        );
    }

    #[test]
    fn unknown_device_fields_are_rejected() {
        let e = check_selector("device.nosuchfield == \"x\"").unwrap_err();
        assert_eq!(
            e,
            "compilation failed: ERROR: <input>:1:7: undefined field 'nosuchfield'\n | device.nosuchfield == \"x\"\n | ......^"
        );
    }

    #[test]
    fn mismatched_comparisons_are_rejected() {
        let e = check_selector("device.driver == 1").unwrap_err();
        assert_eq!(
            e,
            "compilation failed: ERROR: <input>:1:15: found no matching overload for '_==_' applied to '(string, int)'\n | device.driver == 1\n | ..............^"
        );
    }

    #[test]
    fn non_boolean_results_are_rejected() {
        assert_eq!(
            check_selector("device.driver").unwrap_err(),
            "must evaluate to bool or the unknown type, not string"
        );
    }
}
