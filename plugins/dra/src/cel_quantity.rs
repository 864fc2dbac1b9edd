//! Kubernetes quantities as a CEL value, with the functions of the Kubernetes CEL quantity
//! library (k8s.io/apiserver/pkg/cel/library/quantity.go): `quantity()`, `isQuantity()`,
//! `compareTo`, `isLessThan`, `isGreaterThan`, `add`, `sub`, `sign`, `isInteger`, `asInteger`,
//! `asApproximateFloat`. The arithmetic is `kube-quantity`'s, shared with the API server and host.

use std::any::Any;
use std::cmp::Ordering;

use cel::ExecutionError;
use cel::common::traits::Comparer;
use cel::common::types::Type;
use cel::common::value::{StaticVal, Val};
use kube_quantity::Quantity;

/// A quantity as a CEL value (a newtype: CEL's traits and the quantity type live in other crates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CelQuantity(pub Quantity);

/// The CEL type of quantities, named as in Kubernetes.
pub static QUANTITY_TYPE: Type = Type::new_unspecified_type("kubernetes.Quantity");

impl Val for CelQuantity {
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
        other
            .downcast_ref::<CelQuantity>()
            .is_some_and(|o| o == self)
    }
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v> {
        Box::new(*self)
    }
    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}

impl StaticVal for CelQuantity {}

impl Comparer for CelQuantity {
    fn compare(&self, rhs: &dyn Val) -> Result<Ordering, ExecutionError> {
        match rhs.downcast_ref::<CelQuantity>() {
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
    use kube_quantity::Quantity;

    use super::CelQuantity;

    pub fn quantity(s: &CelString<'_>) -> Result<CelQuantity, ExecutionError> {
        Quantity::parse(s.inner())
            .map(CelQuantity)
            .map_err(|e| ExecutionError::function_error("quantity", e))
    }
    pub fn is_quantity(s: &CelString<'_>) -> CelBool {
        CelBool::from(Quantity::parse(s.inner()).is_ok())
    }
    pub fn compare_to(a: &CelQuantity, b: &CelQuantity) -> CelInt {
        CelInt::from(a.cmp(b) as i64)
    }
    pub fn is_less_than(a: &CelQuantity, b: &CelQuantity) -> CelBool {
        CelBool::from(a < b)
    }
    pub fn is_greater_than(a: &CelQuantity, b: &CelQuantity) -> CelBool {
        CelBool::from(a > b)
    }
    pub fn add(a: &CelQuantity, b: &CelQuantity) -> Result<CelQuantity, ExecutionError> {
        a.0.checked_add(b.0)
            .map(CelQuantity)
            .ok_or_else(|| ExecutionError::function_error("add", "overflow"))
    }
    pub fn add_int(a: &CelQuantity, b: &CelInt) -> Result<CelQuantity, ExecutionError> {
        add(a, &CelQuantity(Quantity::from_int(*b.inner())))
    }
    pub fn sub(a: &CelQuantity, b: &CelQuantity) -> Result<CelQuantity, ExecutionError> {
        a.0.checked_sub(b.0)
            .map(CelQuantity)
            .ok_or_else(|| ExecutionError::function_error("sub", "overflow"))
    }
    pub fn sub_int(a: &CelQuantity, b: &CelInt) -> Result<CelQuantity, ExecutionError> {
        sub(a, &CelQuantity(Quantity::from_int(*b.inner())))
    }
    pub fn sign(a: &CelQuantity) -> CelInt {
        CelInt::from(a.0.sign())
    }
    pub fn is_integer(a: &CelQuantity) -> CelBool {
        CelBool::from(a.0.is_integer())
    }
    pub fn as_integer(a: &CelQuantity) -> Result<CelInt, ExecutionError> {
        a.0.as_integer().map(CelInt::from).ok_or_else(|| {
            ExecutionError::function_error("asInteger", "cannot convert value to integer")
        })
    }
    pub fn as_approximate_float(a: &CelQuantity) -> CelDouble {
        CelDouble::from(a.0.as_approximate_float())
    }
}
